"""The digit-experiment protocol end to end on a tiny configuration: every grid fitted, hyperparameters chosen on
ID-val (LP's C per seed, the rest by the mean over seeds), records, resumption, the fitted models kept once."""
import json
import math
import shutil

import numpy as np
import pytest
import torch

from lpft import finetune, protocol, verdict
from lpft.records import archive, load_archive

TINY = dict(id_domain="mnist", ood_domain="uci", shift="invert", strength=1.0, n_train_per_class=8,
            pool_shifts=[["invert", 1.0]], norm="group", pretraining="supervised", contrastive=None,
            pretrain_epochs=1, pretrain_lr=1e-3, pretrain_seed=0, epochs=1, lp_C=[0.1, 1.0], ft_lr=[1e-2, 3e-2],
            lpft_lr=[1e-3, 3e-3], wise_alpha=[0.5], l2sp_weight=[0.01], surgical=["last"],
            eval_shifts=[["none", 0.0], ["invert", 1.0]])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache, folder, models = (tmp_path_factory.mktemp(n) for n in ("cache", "results", "models"))
    records = protocol.run_all(TINY, [0, 1], folder, cache=cache, models=models, jobs=1)
    return records, folder, cache, models


def test_every_setting_is_recorded_with_provenance(tiny):
    records, folder, _, _ = tiny
    assert [(r["config"]["seed"], r["config"]["stage"]) for r in records] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert len(list(folder.glob("*.json"))) == 4
    for r in records:
        ran = [(row["method"], row["hp"]) for row in r["results"]["rows"]]
        if r["config"]["stage"] == 0:
            lp_C = r["results"]["lp_C"]
            assert ran == [("LP", {"C": 0.1}), ("LP", {"C": 1.0}), ("FT", {"lr": 1e-2, "epochs": 1}),
                           ("FT", {"lr": 3e-2, "epochs": 1}), ("LP-FT", {"C": lp_C, "lr": 1e-3, "epochs": 1}),
                           ("LP-FT", {"C": lp_C, "lr": 3e-3, "epochs": 1})]
        else:
            assert [m for m, _ in ran] == ["WiSE-FT", "L2-SP", "surgical"]
            assert r["config"]["chosen"]["FT"] == protocol.choose(records, "FT")
        assert r["git_revision"] and r["code_fingerprint"] and r["results"]["seconds"] > 0
        for row in r["results"]["rows"]:
            assert set(row["ood"]) == {"none@0", "invert@1"}
            assert ("feature_change" in row) == (row["method"] != "LP")


def test_lp_is_chosen_per_seed_and_lpft_starts_from_it(tiny):
    records, _, _, _ = tiny
    for r in records[:2]:
        lp = [row for row in r["results"]["rows"] if row["method"] == "LP"]
        assert r["results"]["lp_C"] == max(lp, key=lambda row: row["val"])["hp"]["C"]  # first maximum


def test_the_rest_is_chosen_by_mean_id_val_over_seeds(tiny):
    """An independent computation of the paper's rule: for each method, the mean over seeds of each setting's ID-val
    accuracy, the first best in grid order; every seed reports that setting."""
    records, _, _, _ = tiny
    field = {"FT": "lr", "LP-FT": "lr", "WiSE-FT": "alpha", "L2-SP": "weight", "surgical": "blocks"}
    reported = protocol.selected_rows(records)
    for method, f in field.items():
        by_value = {}
        for r in records:
            for row in r["results"]["rows"]:
                if row["method"] == method:
                    by_value.setdefault(row["hp"][f], []).append(row["val"])
        best = max(by_value, key=lambda v: (np.mean(by_value[v]), -list(by_value).index(v)))
        assert protocol.choose(records, method)[f] == best
        assert sorted(r["seed"] for r in reported if r["method"] == method) == [0, 1]
        assert all(r["hp"][f] == best for r in reported if r["method"] == method)
    assert protocol.choose(records, "LP") == {}


def test_choose_refuses_records_from_different_grids(tiny):
    records, _, _, _ = tiny
    other = json.loads(json.dumps(records))
    other[1]["results"]["rows"] = [row for row in other[1]["results"]["rows"]
                                   if not (row["method"] == "FT" and row["hp"]["lr"] == 3e-2)]
    with pytest.raises(ValueError, match="every seed"):
        protocol.choose(other, "FT")


def test_finished_records_are_read_back_not_rerun(tiny, monkeypatch):
    records, folder, cache, models = tiny
    monkeypatch.setattr(protocol, "fit_seed", lambda *a: pytest.fail("a finished record was re-run"))
    again = protocol.run_all(TINY, [0, 1], folder, cache=cache, models=models, jobs=1)
    assert [a["results"] for a in again] == [r["results"] for r in records]


def test_tables(tiny):
    records, _, _, _ = tiny
    long = verdict.long_table(records)
    assert len(long) == 2 * 6 * 2  # seeds × methods × OOD sets
    assert list(dict.fromkeys(long["method"])) == list(finetune.METHODS)
    assert long["ID"].between(0, 100).all() and long["OOD"].between(0, 100).all()
    summary = verdict.summary(long[long["shift"] == "invert@1"])
    assert list(summary.index) == list(finetune.METHODS)
    grids = verdict.grid_table(records)
    assert len(grids) == 2 * (2 + 2 + 2 + 3) and grids["reported"].sum() == 2 * 6


def test_interval90():
    x = [1.0, 2.0, 3.0, 4.0]
    assert math.isclose(verdict.interval90(x), 1.645 * np.std(x, ddof=1) / 2)
    assert math.isnan(verdict.interval90([1.0]))


def test_a_subset_of_methods_runs_one_stage(tmp_path):
    subset = {**TINY, "methods": ["LP", "FT", "LP-FT"]}
    records = protocol.run_all(subset, [0], tmp_path / "results", cache=tmp_path / "cache", jobs=1)
    assert [r["config"]["stage"] for r in records] == [0]
    assert set(verdict.long_table(records)["method"]) == {"LP", "FT", "LP-FT"}


def test_claims_table_follows_the_records(tiny):
    records, _, _, _ = tiny
    table, found = verdict.claims(records)
    assert len(table) == 7 and set(table["holds"]) <= {"yes", "no"}
    large = verdict.long_table(records).query("shift == 'invert@1'").pivot(index="seed", columns="method",
                                                                             values="OOD")
    assert found["lp_wins"] == int((large["LP"] > large["FT"]).sum())
    expected = "yes" if found["lp_wins"] >= 0.8 * 2 else "no"
    assert table.loc[1, "holds"] == expected and table.loc[1, "measured"] == f"{found['lp_wins']}/2 seeds"


def test_archive_round_trip(tiny, tmp_path):
    records, _, _, _ = tiny
    archive(records[::-1], tmp_path / "x", protocol.archive_name)
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [
        "seed0-stage1.json", "seed0-stage2.json", "seed1-stage1.json", "seed1-stage2.json"]
    back, here = verdict.long_table(load_archive(tmp_path / "x")), verdict.long_table(records)
    assert back.drop(columns="hp").equals(here.drop(columns="hp")) and list(back["hp"]) == list(here["hp"])


# ---- the fitted models, trained once ----

def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_every_fitted_model_is_kept_once(tiny):
    _, _, _, models = tiny
    # per seed: 2 LP, 2 FT, 2 LP-FT, L2-SP, surgical (WiSE-FT is an average of two kept models, not kept)
    assert len(list(models.glob("*.pt"))) == 2 * 8 == len(list(models.glob("*.json")))


def test_selected_models_are_read_back_and_equal_retrained_ones(tiny, monkeypatch):
    records, _, cache, models = tiny
    kept = {m: protocol.selected_model(TINY, 1, m, records, cache, models) for m in finetune.METHODS}
    fresh = {m: protocol.selected_model(TINY, 1, m, records, cache, None) for m in finetune.METHODS}  # retrained
    assert all(_same(kept[m], fresh[m]) for m in finetune.METHODS)
    row = next(r for r in protocol.selected_rows(records) if r["seed"] == 1 and r["method"] == "LP-FT")
    task = protocol.make_task(TINY, 1)
    assert finetune.accuracy(kept["LP-FT"], task.val) == row["val"]  # the reported run, not another one

    def refuse(*args, **kwargs):
        raise AssertionError("a kept model was retrained")

    monkeypatch.setattr(finetune, "fit", refuse)
    monkeypatch.setattr(finetune, "lp_ft", refuse)
    assert _same(protocol.selected_model(TINY, 1, "L2-SP", records, cache, models), kept["L2-SP"])


@pytest.mark.parametrize("change", [{"seed": 1}, {"n_train_per_class": 4}, {"hp": {"lr": 0.5, "epochs": 1}},
                                    {"backbone": "other"}, {"shift": "rotate"}])
def test_a_different_task_hp_seed_or_backbone_misses(tiny, change):
    records, _, cache, _ = tiny
    pretrained = protocol.pretrained_model(TINY, cache)
    hp = {"lr": 1e-2, "epochs": 1}
    key = protocol.model_key(TINY, 0, "FT", hp, pretrained)
    other = pretrained
    if "backbone" in change:
        other = protocol.pretrained_model({**TINY, "pretrain_lr": 3e-3}, cache)
    setup = {**TINY, **{k: v for k, v in change.items() if k in TINY}}
    assert protocol.model_key(setup, change.get("seed", 0), "FT", change.get("hp", hp), other) != key


def test_evaluation_only_fields_share_the_models(tiny):
    _, _, cache, _ = tiny
    pretrained = protocol.pretrained_model(TINY, cache)
    hp = {"lr": 1e-2, "epochs": 1}
    for extra in ({"eval_shifts": [["blur", 1.0]]}, {"methods": ["LP"]}, {"label": "x"}):
        assert protocol.model_key({**TINY, **extra}, 0, "FT", hp, pretrained) == protocol.model_key(
            TINY, 0, "FT", hp, pretrained)


def test_a_corrupt_model_file_raises_naming_the_fix(tiny, tmp_path):
    records, _, cache, models = tiny
    broken = tmp_path / "models"
    shutil.copytree(models, broken)
    pt = next(broken.glob("FT-seed0-*.pt"))
    pt.write_bytes(pt.read_bytes()[:100])
    with pytest.raises(RuntimeError, match=f"corrupt.*delete {pt}"):
        protocol.run_all(TINY, [0], tmp_path / "again", cache=cache, models=broken, jobs=1)


def test_setups():
    from lpft.book import profiles

    cfg = profiles.settings("experiments-digits", "quick")
    primary, labelled = protocol.primary_conditions(cfg), protocol.labelled_pool_conditions(cfg)
    assert primary["pretraining"] == "contrastive" and labelled["pretraining"] == "supervised"
    assert ["invert", 1.0] in primary["eval_shifts"] and ["none", 0.0] in primary["eval_shifts"]
    assert not any(k == "invert" and s == 0.5 for k, s in primary["eval_shifts"])
    with pytest.raises(ValueError, match="pretraining"):
        protocol.pretrained_model({**labelled, "pretraining": "moco"}, "/nonexistent")


def test_lp_measured_on_frozen_features_equals_the_whole_model(tiny):
    """fit_seed measures LP from the frozen backbone's features through the head: the same bits as the whole model."""
    _, _, cache, _ = tiny
    pretrained = protocol.pretrained_model(TINY, cache)
    task = protocol.make_task(TINY, 0)
    frozen = {name: finetune.features(pretrained, data) for name, data in
              (("train", task.train), ("id", task.test_id), ("ood", task.test_ood))}
    lp = finetune.linear_probe(pretrained, task, 1.0, train_features=frozen["train"])
    assert torch.equal(lp.head.weight, finetune.linear_probe(pretrained, task, 1.0).head.weight)
    for name, data in (("id", task.test_id), ("ood", task.test_ood)):
        assert finetune.head_accuracy(lp.head, frozen[name], data) == finetune.accuracy(lp, data)

