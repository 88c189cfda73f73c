"""The digit-experiment protocol end to end on a tiny configuration: selection on ID-val only, records, resumption."""
import copy
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from lpft import finetune, protocol
from lpft.records import archive, load_archive

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
    assert load_archive(tmp_path / "x") == []
    archive(records[::-1], tmp_path / "x", protocol.archive_name)
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["seed0.json", "seed1.json"]
    assert load_archive(tmp_path / "x") == records  # seed order, identical content


# ---- the selected models, trained once (protocol.select_models with a models folder) ----

@pytest.fixture(scope="module")
def cached_models(tmp_path_factory):
    """TINY's seed-0 models selected once into a models folder: (models folder, pretrained, the first selection)."""
    cache, models = tmp_path_factory.mktemp("cache"), tmp_path_factory.mktemp("models")
    pretrained = protocol.pretrained_model(TINY, cache)
    return models, pretrained, protocol.select_models(TINY, 0, pretrained, models)


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_cache_hit_does_not_retrain(cached_models, monkeypatch):
    models, pretrained, (_, _, chosen, hps, tables) = cached_models
    assert len(list(models.glob("*.pt"))) == len(finetune.METHODS) == len(list(models.glob("*.json")))

    def refuse(*args, **kwargs):
        raise AssertionError("a cached model was retrained")

    monkeypatch.setattr(finetune, "select", refuse)
    monkeypatch.setattr(protocol, "select_wise", refuse)
    _, _, again, hps2, tables2 = protocol.select_models(TINY, 0, pretrained, models)
    assert hps2 == hps and set(again) == set(chosen)
    for m in chosen:
        assert _same(again[m], chosen[m]), m
        pd.testing.assert_frame_equal(tables2[m], tables[m])
    # the subset the robustness chapter trains hits the same files
    _, _, trio, _, _ = protocol.select_models({**TINY, "methods": ["LP", "FT", "LP-FT"]}, 0, pretrained, models)
    assert set(trio) == {"LP", "FT", "LP-FT"}


def test_the_cached_models_equal_retrained_ones(cached_models):
    models, pretrained, (_, _, chosen, hps, _) = cached_models
    _, _, fresh, fresh_hps, _ = protocol.select_models(TINY, 0, pretrained)  # no folder: trained again
    assert fresh_hps == hps and all(_same(fresh[m], chosen[m]) for m in chosen)


@pytest.mark.parametrize("change", [{"seed": 1}, {"n_train_per_class": 4}, {"lp_C": [1.0]}, {"epochs": 2},
                                    {"backbone": "contrastive"}, {"shift": "rotate"}])
def test_a_different_setup_or_seed_misses(cached_models, change):
    models, pretrained, _ = cached_models
    setup, seed = {**TINY, **{k: v for k, v in change.items() if k not in ("seed", "backbone")}}, change.get("seed", 0)
    other = pretrained
    if "backbone" in change:  # another backbone (e.g. contrastive pretraining): other weights, another key
        other = copy.deepcopy(pretrained)
        with torch.no_grad():
            next(other.parameters()).add_(1e-3)
    keys = {m: protocol.model_key(TINY, 0, m, pretrained) for m in finetune.METHODS}
    changed = {m: protocol.model_key(setup, seed, m, other) != keys[m] for m in finetune.METHODS}
    if "lp_C" in change:  # LP's grid: LP, LP-FT (LP's chosen C) and WiSE-FT; not FT, L2-SP, surgical
        assert changed == {"LP": True, "FT": False, "LP-FT": True, "WiSE-FT": True, "L2-SP": False,
                           "surgical": False}
    elif "epochs" in change:  # every trained method but LP (logistic regression has no epochs)
        assert changed == {m: m != "LP" for m in finetune.METHODS}
    else:
        assert all(changed.values()), changed


def test_evaluation_only_fields_share_the_models(cached_models):
    _, pretrained, _ = cached_models
    for extra in ({"strengths": [0.5]}, {"methods": ["LP"]}, {"label": "x", "eval_shifts": [["blur", 1.0]]}):
        assert protocol.model_key({**TINY, **extra}, 0, "FT", pretrained) == protocol.model_key(TINY, 0, "FT",
                                                                                               pretrained)


def test_a_corrupt_model_file_raises_naming_the_fix(cached_models, tmp_path):
    models, pretrained, _ = cached_models
    broken = tmp_path / "models"
    shutil.copytree(models, broken)
    pt = next(broken.glob("FT-seed0-*.pt"))
    pt.write_bytes(pt.read_bytes()[:100])
    with pytest.raises(RuntimeError, match=f"corrupt.*delete {pt}"):
        protocol.select_models(TINY, 0, pretrained, broken)
    pt.unlink()
    js = next(broken.glob("LP-seed0-*.json"))
    js.write_text("{")
    with pytest.raises(RuntimeError, match="delete .* to retrain it"):
        protocol.select_models(TINY, 0, pretrained, broken)


def _select_into(cache, models) -> dict:
    pretrained = protocol.pretrained_model(TINY, cache)
    _, _, _, hps, _ = protocol.select_models({**TINY, "methods": ["LP", "FT", "LP-FT"]}, 0, pretrained, models)
    return hps


def test_parallel_workers_writing_the_same_models(tmp_path):
    """Two spawned workers that train the same models into one folder at once: both get the same selection, the
    folder ends with one complete file of each and no temporary file, and it reads back."""
    from lpft.records import parallel_map

    cache = tmp_path / "cache"
    protocol.pretrained_model(TINY, cache)
    models = tmp_path / "models"
    a, b = parallel_map(_select_into, [(cache, models), (cache, models)], jobs=2)
    assert a == b
    assert sorted(p.suffix for p in models.iterdir()) == [".json"] * 3 + [".pt"] * 3
    assert _select_into(cache, models) == a
