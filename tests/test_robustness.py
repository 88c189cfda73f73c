"""Tests of lpft.robustness: the study set-ups, the fixed number of steps, a tiny run end to end, the tables."""
import math

import pytest
import torch

from lpft import digits, finetune, paper, protocol, robustness
from lpft.book import profiles
from lpft.records import archive, load_archive
from lpft.task import BATCH_SIZE


@pytest.fixture(scope="module")
def base():
    return protocol.primary_conditions(profiles.settings("experiments-digits", "quick"))


def test_variant_setups(base):
    same = robustness.variant(base, "s")
    assert same["methods"] == list(paper.METHODS) and same["pretraining"] == "contrastive"
    assert same["contrastive"] == base["contrastive"] and same["n_train_per_class"] is None
    assert same["epochs"] == base["epochs"]
    off = robustness.variant(base, "c", contrastive_options={"p_invert": 0.0})
    assert off["contrastive"] == {**base["contrastive"], "p_invert": 0.0}
    sup = robustness.variant(base, "l", pretraining="supervised")
    assert sup["pretraining"] == "supervised" and sup["contrastive"] is None
    few = robustness.variant(base, "f", n_train_per_class=10)
    assert few["n_train_per_class"] == 10 and few["epochs"] == robustness.fixed_steps(base, 10)
    with pytest.raises(ValueError, match="pretraining"):
        robustness.variant(base, "x", pretraining="moco")
    with pytest.raises(ValueError, match="contrastive_options"):
        robustness.variant(base, "x", pretraining="supervised", contrastive_options={"epochs": 3})


@pytest.mark.parametrize("n", [3, 10, 30])
def test_fewer_labels_take_as_many_steps(base, n):
    """The number of SGD steps of a variant with n labels per class matches the whole training set's, to within one
    epoch of the smaller set (steps = epochs × ⌈train size / batch⌉)."""
    full = len(protocol.make_task(base, 0).train)
    steps = base["epochs"] * math.ceil(full / BATCH_SIZE)
    per_epoch = math.ceil(n * digits.N_CLASSES / BATCH_SIZE)
    few = robustness.variant(base, "f", n_train_per_class=n)
    assert len(protocol.make_task(few, 0).train) == n * digits.N_CLASSES
    assert steps <= few["epochs"] * per_epoch < steps + per_epoch


def test_a_tiny_run_end_to_end(base, tmp_path, monkeypatch):
    """Two variants with a random backbone and one setting per method: the numbers are the models' accuracies on
    the right data (LP refitted and evaluated on plain UCI), the train set has the requested size, and a variant
    that differs from another only in what it evaluates reuses its fitted models."""
    torch.manual_seed(0)
    net = digits.DigitNet(10, "group").eval()
    monkeypatch.setattr(protocol, "pretrained_model", lambda setup, cache: net)
    small = {"epochs": 1, "lp_C": [1.0], "ft_lr": [1e-3], "lpft_lr": [1e-4]}
    shifts = (("none", 0.0), ("rotate", 1.0))
    setups = [{**robustness.variant(base, "all", eval_shifts=shifts), **small},
              {**robustness.variant({**base, **small}, "few", n_train_per_class=3, eval_shifts=shifts)}]
    records = robustness.run_all(setups, [0], tmp_path / "r", cache=tmp_path / "c", models=tmp_path / "m", jobs=1)
    long = robustness.long_table(records)
    assert set(long["variant"]) == {"all", "few"} and set(long["shift"]) == {"none@0", "rotate@1", "invert@1"}
    assert set(long[long["variant"] == "few"]["labels per class"]) == {3}
    task = protocol.make_task({**setups[0], "shift": "none"}, 0, strength=0.0)
    lp = finetune.fit("LP", net, task, {"C": 1.0}, 0)
    got = long.query("variant == 'all' and method == 'LP' and shift == 'none@0'")["OOD"].item()
    assert got == pytest.approx(100 * finetune.accuracy(lp, task.test_ood))

    def refuse(*args, **kwargs):
        raise AssertionError("a kept model was retrained")

    monkeypatch.setattr(finetune, "fit", refuse)
    monkeypatch.setattr(finetune, "lp_ft", refuse)
    other = {**setups[0], "label": "all, blur only", "eval_shifts": [["blur", 1.0]]}
    (again,) = robustness.run_all([other], [0], tmp_path / "r", cache=tmp_path / "c", models=tmp_path / "m", jobs=1)
    assert {row["method"] for row in again["results"]["rows"]} == set(paper.METHODS)


def _record(label, seed, lp, ft, n_train=1500):
    rows = [{"method": m, "hp": hp, "val": 0.9, "id": acc[0], "ood": {"invert@1": acc[1], "none@0": 0.8}}
            for m, hp, acc in (("LP", {"C": 1.0}, lp), ("FT", {"lr": 0.01, "epochs": 1}, ft),
                               ("LP-FT", {"C": 1.0, "lr": 1e-4, "epochs": 1}, lp))]
    config = {"label": label, "pretraining": "contrastive", "seed": seed, "stage": 0, "shift": "invert",
              "strength": 1.0, "eval_shifts": [["none", 0.0], ["invert", 1.0]]}
    return {"config": config, "results": {"lp_C": 1.0, "rows": rows, "n_train": n_train}}


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
        "contrastive-p-invert-0-5-seed0-stage1.json", "contrastive-p-invert-0-5-seed1-stage1.json",
        "supervised-seed0-stage1.json"]
    back = load_archive(tmp_path / "x")
    assert [(r["config"]["label"], r["config"]["seed"]) for r in back] == sorted(
        (r["config"]["label"], r["config"]["seed"]) for r in records)
    assert load_archive(tmp_path / "missing") == []
