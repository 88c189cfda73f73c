"""The paper's tables as transcribed in lpft.paper agree with the paper's own row averages and headline numbers."""
import pytest

from lpft import paper


def test_row_averages_match_the_papers_avg_column_and_abstract():
    avg = paper.averages()
    # the tables' "Avg" columns (reference Section 4), which the paper computed from unrounded cells: within 0.05
    assert avg.loc[["FT", "LP", "LP-FT"], "ID"].tolist() == pytest.approx([85.1, 82.9, 85.7], abs=0.051)
    assert avg.loc[["FT", "LP", "LP-FT"], "OOD"].tolist() == pytest.approx([59.3, 66.2, 68.9], abs=0.051)
    # the abstract: FT vs LP about +2 ID / -7 OOD; LP-FT vs FT about +1 ID / +10 OOD
    assert avg.loc["FT", "ID"] - avg.loc["LP", "ID"] == pytest.approx(2.3, abs=0.05)
    assert avg.loc["FT", "OOD"] - avg.loc["LP", "OOD"] == pytest.approx(-6.9, abs=0.05)
    assert avg.loc["LP-FT", "ID"] - avg.loc["FT", "ID"] == pytest.approx(0.6, abs=0.05)
    assert avg.loc["LP-FT", "OOD"] - avg.loc["FT", "OOD"] == pytest.approx(9.6, abs=0.05)


def test_table_selects_sets_and_refuses_unknown_ones():
    t = paper.table({"CIFAR-10": "ID", "STL-10": "OOD"})
    assert len(t) == 6 and set(t["split"]) == {"ID", "OOD"}
    row = t[(t["set"] == "STL-10") & (t["method"] == "FT")].iloc[0]
    assert (row["paper"], row["paper ±"]) == (82.4, 0.4)
    assert set(paper.ID_OF_OOD) == set(paper.OOD_ACCURACY) and set(paper.ID_OF_OOD.values()) == set(paper.ID_ACCURACY)
    with pytest.raises(KeyError, match="STL-10"):
        paper.table({"STL-10": "ID"})
