"""The digit-experiment protocol end to end on a tiny configuration: selection on ID-val only, records, resumption."""
import math

import numpy as np
import pytest

from lpft import protocol

TINY = dict(id_domain="mnist", ood_domain="uci", shift="invert", strength=1.0, n_train_per_class=8,
            pool_shifts=[["invert", 1.0]], norm="group", pretrain_epochs=1, pretrain_lr=1e-3, pretrain_seed=0,
            epochs=1, lp_C=[0.1, 1.0], ft_lr=[1e-2], lpft_lr=[1e-3], wise_alpha=[0.5], l2sp_weight=[0.01],
            surgical=["last"], strengths=[0.0, 1.0])


@pytest.fixture(scope="module")
def tiny_records(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    folder = tmp_path_factory.mktemp("results")
    records = protocol.run_all(TINY, [0, 1], folder, cache=cache, jobs=1)
    return records, folder, cache


def test_every_method_is_recorded_with_provenance(tiny_records):
    records, folder, _ = tiny_records
    assert [r["config"]["seed"] for r in records] == [0, 1]
    assert len(list(folder.glob("seed*.json"))) == 2
    for r in records:
        assert set(r["results"]) == {"LP", "FT", "LP-FT", "WiSE-FT", "L2-SP", "surgical", "grids", "seconds"}
        assert r["results"]["seconds"] > 0
        assert r["config"]["lp_C"] == [0.1, 1.0] and r["git_revision"] and r["code_fingerprint"]
        assert {"python", "torch", "numpy"} <= set(r["environment"])
        for m in ("FT", "LP-FT"):
            assert set(r["results"][m]["feature_change"]) == {"id", "ood"}


def test_hyperparameters_are_selected_on_id_validation(tiny_records):
    records, _, _ = tiny_records
    for r in records:
        grid = r["results"]["grids"]["LP"]
        best = max(grid, key=lambda row: row["val_acc"])  # first maximum, as finetune.select
        assert r["results"]["LP"]["hp"]["C"] == best["C"]
        assert r["results"]["LP-FT"]["hp"]["C"] == r["results"]["LP"]["hp"]["C"]  # LP-FT starts from the chosen LP


def test_finished_seeds_are_read_back_not_rerun(tiny_records, monkeypatch):
    records, folder, cache = tiny_records
    monkeypatch.setattr(protocol, "run_seed", lambda *a: pytest.fail("a finished seed was re-run"))
    again = protocol.run_all(TINY, [0, 1], folder, cache=cache, jobs=1)
    assert [a["results"] for a in again] == [r["results"] for r in records]


def test_tables(tiny_records):
    records, _, _ = tiny_records
    long = protocol.long_table(records)
    assert len(long) == 2 * 6 * 2  # seeds × methods × strengths
    assert long["ID"].between(0, 100).all() and long["OOD"].between(0, 100).all()
    summary = protocol.summary(long[long["strength"] == 1.0])
    assert list(summary.index) == ["LP", "FT", "LP-FT", "WiSE-FT", "L2-SP", "surgical"]
    grids = protocol.grid_table(records)
    assert set(grids["method"]) == {"LP", "FT", "LP-FT", "WiSE-FT", "L2-SP", "surgical"}


def test_interval90():
    x = [1.0, 2.0, 3.0, 4.0]
    assert math.isclose(protocol.interval90(x), 1.645 * np.std(x, ddof=1) / 2)
    assert math.isnan(protocol.interval90([1.0]))


def test_a_subset_of_methods(tmp_path):
    subset = {**TINY, "methods": ["LP", "FT", "LP-FT"]}
    (record,) = protocol.run_all(subset, [0], tmp_path / "results", cache=tmp_path / "cache", jobs=1)
    assert set(record["results"]) == {"LP", "FT", "LP-FT", "grids", "seconds"}
    assert set(protocol.long_table([record])["method"]) == {"LP", "FT", "LP-FT"}


def test_claims_table_follows_the_records(tiny_records):
    records, _, _ = tiny_records
    table, found = protocol.claims(records)
    assert len(table) == 7 and set(table["holds"]) <= {"yes", "no"}
    long = protocol.long_table(records)
    large = long[long["strength"] == 1.0].pivot(index="seed", columns="method", values="OOD")
    assert found["lp_wins"] == int((large["LP"] > large["FT"]).sum())
    expected = "yes" if found["lp_wins"] >= 0.8 * len(records) else "no"
    assert table.loc[1, "holds"] == expected and table.loc[1, "measured"] == f"{found['lp_wins']}/{len(records)} seeds"


def test_archive_round_trip(tiny_records, tmp_path):
    records, _, _ = tiny_records
    assert protocol.load_archive(tmp_path / "x") == []
    protocol.archive(records[::-1], tmp_path / "x")
    assert protocol.load_archive(tmp_path / "x") == records  # seed order, identical content
