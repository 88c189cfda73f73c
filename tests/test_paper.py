"""lpft.paper: the checked cells agree with Tables 1-2 of the paper's ICLR 2022 submission (its printed cells and
"Ave" columns), the ImageNet cells are marked unchecked, and all ten OOD columns agree with the final abstract."""
import pytest

from lpft import paper

# The submission's Tables 1-2, transcribed again here so that an edit to lpft.paper shows up as a failure.
TABLE_1 = {"CIFAR-10": {"FT": (97.3, 0.2), "LP": (91.8, 0.0), "LP-FT": (97.5, 0.1)},
           "Entity-30": {"FT": (93.6, 0.2), "LP": (90.6, 0.2), "LP-FT": (93.7, 0.1)},
           "Living-17": {"FT": (97.1, 0.2), "LP": (96.5, 0.2), "LP-FT": (97.8, 0.2)},
           "DomainNet": {"FT": (84.5, 0.6), "LP": (89.4, 0.1), "LP-FT": (91.6, 0.0)},
           "FMoW": {"FT": (56.5, 0.3), "LP": (49.1, 0.0), "LP-FT": (51.8, 0.2)}}
TABLE_2 = {"STL-10": {"FT": (82.4, 0.4), "LP": (85.1, 0.2), "LP-FT": (90.7, 0.3)},
           "CIFAR-10.1": {"FT": (92.3, 0.4), "LP": (82.7, 0.2), "LP-FT": (93.5, 0.1)},
           "Entity-30": {"FT": (60.7, 0.2), "LP": (63.2, 1.3), "LP-FT": (62.3, 0.9)},
           "Living-17": {"FT": (77.8, 0.7), "LP": (82.2, 0.2), "LP-FT": (82.6, 0.3)},
           "DomainNet": {"FT": (55.5, 2.2), "LP": (79.7, 0.6), "LP-FT": (80.7, 0.9)},
           "FMoW": {"FT": (32.0, 3.5), "LP": (36.6, 0.0), "LP-FT": (36.8, 1.3)}}
IMAGENET = {("ImageNet", "ID"), ("ImageNetV2", "OOD"), ("ImageNet-R", "OOD"), ("ImageNet-Sketch", "OOD"),
            ("ImageNet-A", "OOD")}


def test_checked_cells_are_the_submissions_tables():
    for name, cells in TABLE_1.items():
        assert paper.ID_ACCURACY[name] == cells, name
        assert paper.checked(name, "ID") == "submission, Table 1"
    for name, cells in TABLE_2.items():
        assert paper.OOD_ACCURACY[name] == cells, name
        assert paper.checked(name, "OOD") == "submission, Table 2"
    assert set(paper.CHECKED) == {(k, "ID") for k in TABLE_1} | {(k, "OOD") for k in TABLE_2}
    assert paper.OOD_ACCURACY["DomainNet"]["LP"] == (79.7, 0.6)  # the submission prints (0.6), not (0.0)


def test_checked_averages_are_the_submissions_ave_columns():
    avg = paper.averages(checked_only=True)
    # the submission's "Ave": ID over its 5 ID sets 85.8 / 83.5 / 86.5, OOD over its 6 OOD sets 66.8 / 71.6 / 74.4
    for split in ("ID", "OOD"):
        for m in paper.METHODS:
            assert avg.loc[m, split] == pytest.approx(paper.SUBMISSION_AVERAGES[split][m], abs=0.05), (split, m)
    assert avg.loc[["FT", "LP", "LP-FT"], "ID"].tolist() == pytest.approx([85.8, 83.5, 86.5], abs=0.05)
    assert avg.loc[["FT", "LP", "LP-FT"], "OOD"].tolist() == pytest.approx([66.8, 71.6, 74.4], abs=0.05)


def test_imagenet_cells_are_marked_unchecked():
    unchecked = {(k, "ID") for k in paper.ID_ACCURACY} | {(k, "OOD") for k in paper.OOD_ACCURACY}
    assert unchecked - set(paper.CHECKED) == IMAGENET
    t = paper.table()
    marked = t[t["checked"] == paper.UNCHECKED_LABEL]
    assert set(zip(marked["set"], marked["split"])) == IMAGENET
    assert paper.UNCHECKED_LABEL == "not checked against any text"
    assert paper.UNCHECKED_LABEL in paper.SOURCE and "reference notes" not in paper.SOURCE


def test_all_ten_ood_columns_agree_with_the_final_abstract():
    # "2% higher accuracy ID but 7% lower accuracy OOD than linear probing", "(1% better ID, 10% better OOD than full
    # fine-tuning)": a consistency check of the unchecked ImageNet cells, to the abstract's rounding
    avg = paper.averages()
    assert round(avg.loc["FT", "ID"] - avg.loc["LP", "ID"]) == 2
    assert round(avg.loc["LP", "OOD"] - avg.loc["FT", "OOD"]) == 7
    assert round(avg.loc["LP-FT", "ID"] - avg.loc["FT", "ID"]) == 1
    assert round(avg.loc["LP-FT", "OOD"] - avg.loc["FT", "OOD"]) == 10
    assert "7% lower accuracy OOD" in paper.ABSTRACT_FT_VS_LP and "10% better OOD" in paper.ABSTRACT_LPFT_VS_FT


def test_feature_change_sources_are_kept_apart():
    assert "(0.019)" in paper.FEATURE_DISTANCE_QUOTE and "(0.017)" in paper.FEATURE_DISTANCE_QUOTE
    assert paper.FEATURE_DISTANCE_LIVING17 == {"FT": {"ID": 0.019, "OOD": 0.017}}
    assert "Section 4.3" in paper.FEATURE_DISTANCE_SOURCE
    assert "lpft_change_in_reps_and_weights.ipynb" in paper.OFFICIAL_NOTEBOOK
    assert paper.OFFICIAL_NOTEBOOK_CHANGE_LIVING17["FT (lr 1e-3)"]["ID"] == (1.88, 0.01)
    assert list(paper.feature_change_official_notebook().columns) == ["ID", "OOD"]


def test_table_selects_sets_and_refuses_unknown_ones():
    t = paper.table({"CIFAR-10": "ID", "STL-10": "OOD"})
    assert len(t) == 6 and set(t["split"]) == {"ID", "OOD"}
    row = t[(t["set"] == "STL-10") & (t["method"] == "FT")].iloc[0]
    assert (row["paper"], row["paper ±"], row["checked"]) == (82.4, 0.4, "submission, Table 2")
    assert set(paper.ID_OF_OOD) == set(paper.OOD_ACCURACY) and set(paper.ID_OF_OOD.values()) == set(paper.ID_ACCURACY)
    with pytest.raises(KeyError, match="STL-10"):
        paper.table({"STL-10": "ID"})
