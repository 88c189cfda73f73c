"""Tests of lpft.robustness: the study set-ups, one seed end to end on a tiny grid, and the summary tables."""
import pytest
import torch

from lpft import finetune, paper, protocol, robustness
from lpft.book import profiles
from lpft.digits import DigitNet
from lpft.records import archive, load_archive


def test_variant_setups():
    base = robustness.base_setup(profiles.settings("experiments-digits", "quick"))
    assert base["methods"] == list(paper.METHODS) and base["shift"] == "invert" and base["norm"] == "group"
    sup = robustness.variant(base, "s")
    assert sup["pretraining"] == "supervised" and sup["contrastive"] is None and sup["n_train_per_class"] is None
    con = robustness.variant(base, "c", pretraining="contrastive", contrastive_options={"epochs": 3})
    assert con["contrastive"] == {"epochs": 3}
    assert robustness.variant(base, "f", n_train_per_class=10)["n_train_per_class"] == 10
    with pytest.raises(ValueError, match="pretraining"):
        robustness.variant(base, "x", pretraining="moco")
    with pytest.raises(ValueError, match="contrastive_options"):
        robustness.variant(base, "x", contrastive_options={"epochs": 3})


def test_run_seed_on_a_tiny_grid(monkeypatch):
    """One seed with a random backbone and one setting per method: the record's numbers are the models' accuracies
    on the right data (checked by recomputing the plain-UCI OOD set), and the train set has the requested size."""
    torch.manual_seed(0)
    net = DigitNet(10, "group").eval()
    monkeypatch.setattr(robustness, "backbone", lambda setup, cache: net)
    base = robustness.base_setup(profiles.settings("experiments-digits", "quick"))
    setup = {**robustness.variant(base, "tiny", n_train_per_class=3, eval_shifts=(("none", 0.0), ("rotate", 1.0))),
             "epochs": 1, "lp_C": [1.0], "ft_lr": [1e-3], "lpft_lr": [1e-4]}
    out = robustness.run_seed(setup, seed=0, cache=None)
    assert out["n_train"] == 30
    for m in paper.METHODS:
        assert set(out[m]["ood"]) == {"none@0", "rotate@1"}
        assert all(0.0 <= v <= 1.0 for v in (out[m]["val"], out[m]["id"], *out[m]["ood"].values()))
    assert out["FT"]["feature_change"] > 0 and "feature_change" not in out["LP"]
    # LP is deterministic: refit it and evaluate on the plain UCI half B
    task = protocol.make_task({**setup, "shift": "none"}, 0, strength=0.0)
    lp = finetune.fit("LP", net, task, {"C": 1.0}, 0)
    assert out["LP"]["ood"]["none@0"] == pytest.approx(finetune.accuracy(lp, task.test_ood))


def test_the_supervised_variant_reads_the_digit_chapters_models(monkeypatch, tmp_path):
    """The digit chapter's models of a seed, once in a models folder, serve the supervised variant without training
    (the trainer fails if called) and give the same selection; a variant with fewer labels does not hit them."""
    torch.manual_seed(0)
    net = DigitNet(10, "group").eval()
    monkeypatch.setattr(robustness, "backbone", lambda setup, cache: net)
    base = robustness.base_setup(profiles.settings("experiments-digits", "quick"))
    small = {"epochs": 1, "lp_C": [1.0], "ft_lr": [1e-3], "lpft_lr": [1e-4], "wise_alpha": [0.5],
             "l2sp_weight": [0.01], "surgical": ["last"]}
    digit_setup = {**protocol.paper_conditions(profiles.settings("experiments-digits", "quick")), **small}
    _, _, _, hps, _ = protocol.select_models(digit_setup, 0, net, tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("the supervised variant retrained a model of the digit chapter")

    monkeypatch.setattr(finetune, "select", refuse)
    out = robustness.run_seed({**robustness.variant(base, "supervised", eval_shifts=(("none", 0.0),)), **small},
                              seed=0, cache=None, models=tmp_path)
    assert {m: out[m]["hp"] for m in paper.METHODS} == {m: hps[m] for m in paper.METHODS}
    with pytest.raises(AssertionError, match="retrained"):
        robustness.run_seed({**robustness.variant(base, "few", n_train_per_class=3), **small}, seed=0, cache=None,
                            models=tmp_path)


def _record(label, seed, lp, ft, n_train=1500):
    res = {m: {"hp": {}, "val": 0.9, "id": idacc, "ood": {"invert@1": ood, "none@0": 0.8}}
           for m, (idacc, ood) in {"LP": lp, "FT": ft, "LP-FT": lp}.items()}
    return {"config": {"label": label, "pretraining": "supervised", "seed": seed},
            "results": {**res, "n_train": n_train}}


def test_tables():
    records = [_record("a", 0, (0.90, 0.60), (0.95, 0.40)), _record("a", 1, (0.92, 0.50), (0.96, 0.55)),
               _record("b", 0, (0.80, 0.30), (0.85, 0.20), n_train=100)]
    long = robustness.long_table(records)
    assert len(long) == 3 * 3 * 2
    assert set(long[long["variant"] == "b"]["labels per class"]) == {10}
    table = robustness.gap_summary(long[long["shift"] == "invert@1"], "variant")
    assert table.loc["a", "FT − LP OOD"] == pytest.approx(((40 - 60) + (55 - 50)) / 2)
    assert table.loc["a", "LP > FT OOD (seeds)"] == "1/2"
    assert table.loc["b", "LP > FT OOD (seeds)"] == "1/1"
    assert table.loc["a", "FT ID"] == pytest.approx(95.5)


def test_archive_round_trip(tmp_path):
    records = [_record("contrastive, p_invert = 0.5", 1, (0.9, 0.6), (0.95, 0.4)),
               _record("contrastive, p_invert = 0.5", 0, (0.9, 0.6), (0.95, 0.4)),
               _record("supervised", 0, (0.9, 0.6), (0.95, 0.4))]
    archive(records, tmp_path / "x", robustness.archive_name)
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [
        "contrastive-p-invert-0-5-seed0.json", "contrastive-p-invert-0-5-seed1.json", "supervised-seed0.json"]
    back = load_archive(tmp_path / "x")
    assert [(r["config"]["label"], r["config"]["seed"]) for r in back] == sorted(
        (r["config"]["label"], r["config"]["seed"]) for r in records)
    assert load_archive(tmp_path / "missing") == []
