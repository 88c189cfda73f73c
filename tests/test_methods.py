"""Unit tests of lpft.pretrain and lpft.finetune: LP, FT, LP-FT (as the paper, Sections 4.1-4.2 of its ICLR 2022
submission, and its official code run them) and the later methods.

The tasks here are synthetic (class-dependent blobs on 8×8 images in an lpft.task.Task), so they run in seconds.
"""
import copy
import time

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch.utils.data import TensorDataset

from lpft import finetune, pretrain
from lpft.task import Task
from lpft.finetune import fit

torch.set_num_threads(1)
N_CLASSES = 4


def blobs(n: int, seed: int, invert: bool = False) -> TensorDataset:
    """Class c = a bright 3×3 blob near corner c (±1 px jitter) on noise; ``invert`` gives the OOD contrast."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % N_CLASSES
    x = 0.5 * torch.rand(n, 1, 8, 8, generator=g)
    corners = torch.tensor([[1, 1], [1, 4], [4, 1], [4, 4]])
    jitter = torch.randint(-1, 2, (n, 2), generator=g)
    for i in range(n):
        r, c = (corners[y[i]] + jitter[i]).clamp(0, 5).tolist()
        x[i, 0, r:r + 3, c:c + 3] += 0.6
    x = x.clamp(0, 1)
    return TensorDataset(1 - x if invert else x, y)


@pytest.fixture(scope="module")
def task():
    return Task("blobs", train=blobs(240, 1), val=blobs(80, 2), test_id=blobs(80, 3),
                ood={"inverted": blobs(80, 4, invert=True)}, n_classes=N_CLASSES)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    pool = TensorDataset(*[torch.cat(t) for t in zip(blobs(384, 10).tensors, blobs(384, 11, invert=True).tensors)])
    return pretrain.supervised(pool, epochs=2, lr=1e-3, seed=0, norm="group", cache_dir=tmp_path_factory.mktemp("cache"))


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a: dict, b: dict, prefix: str = "") -> bool:
    keys = [k for k in a if k.startswith(prefix)]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in keys)


def changed_prefixes(before: dict, after: dict) -> set[str]:
    """The top-level parts ('backbone.first', ..., 'head') with at least one changed parameter."""
    return {".".join(k.split(".")[:2]) if k.startswith("backbone") else k.split(".")[0]
            for k in before if not torch.equal(before[k], after[k])}


FT = {"lr": 0.05, "epochs": 2}


# ---- LP ------------------------------------------------------------------------------------------------------------

def test_lp_keeps_backbone_and_reproduces_sklearn(pretrained, task):
    lp = fit("LP", pretrained, task, {"C": 0.5}, seed=0)
    assert same(state(pretrained), state(lp), prefix="backbone.")
    assert all(torch.equal(a, b) for a, b in zip(pretrained.backbone.buffers(), lp.backbone.buffers()))
    # the same probe fitted independently, on scalar-normalised eval-mode features
    f = lambda d: pretrained.eval().features(d.tensors[0]).detach().double().numpy()  # noqa: E731
    f_train = f(task.train)
    mu, sigma = f_train.mean(), f_train.std()
    clf = LogisticRegression(C=0.5, max_iter=1000).fit((f_train - mu) / sigma, task.train.tensors[1].numpy())
    for data in (task.test_id, task.test_ood):
        logits = lp(data.tensors[0]).detach().double().numpy()
        np.testing.assert_allclose(logits, clf.decision_function((f(data) - mu) / sigma), atol=1e-3)
        assert np.array_equal(logits.argmax(1), clf.predict((f(data) - mu) / sigma))
    assert finetune.accuracy(lp, task.test_id) > 0.9
    assert finetune.feature_change(pretrained, lp, task.test_id) == 0.0


# ---- FT, LP-FT -----------------------------------------------------------------------------------------------------

def test_ft_changes_the_backbone(pretrained, task):
    ft = fit("FT", pretrained, task, FT, seed=0)
    assert {"backbone.first", "backbone.middle", "backbone.last", "head"} <= changed_prefixes(state(pretrained),
                                                                                             state(ft))
    assert finetune.feature_change(pretrained, ft, task.test_id) > 0


def test_lp_ft_starts_from_the_lp_head(pretrained, task):
    lp = state(fit("LP", pretrained, task, {"C": 0.5}, seed=0))
    start = fit("LP-FT", pretrained, task, {"C": 0.5, "lr": 0.01, "epochs": 0}, seed=0)
    assert same(lp, state(start))
    frozen = fit("LP-FT", pretrained, task, {"C": 0.5, "lr": 0.0, "epochs": 2}, seed=0)
    assert same(lp, state(frozen))
    moved = fit("LP-FT", pretrained, task, {"C": 0.5, "lr": 0.01, "epochs": 2}, seed=0)
    assert not same(lp, state(moved), prefix="backbone.")


def test_training_keeps_the_best_val_epoch(pretrained, task, monkeypatch):
    seen = []  # (val accuracy, weights) after every epoch, as the loop measured them
    accuracy = finetune.accuracy

    def spy(model, data, feed=finetune.PLAIN):
        acc = accuracy(model, data, feed)
        if data is task.val:
            seen.append((acc, state(model)))
        return acc

    monkeypatch.setattr(finetune, "accuracy", spy)
    model, info = finetune.train(finetune.with_fresh_head(pretrained, task.n_classes, seed=0), task, lr=0.2, epochs=4,
                                 seed=0)
    accs = [a for a, _ in seen]
    assert len(accs) == 4 and int(np.argmax(accs)) != 3  # the last epoch is not the best: the test can tell
    assert same(seen[int(np.argmax(accs))][1], state(model))
    assert info["best_epoch"] == int(np.argmax(accs)) + 1 and info["best_val"] == max(accs)


# ---- WiSE-FT, L2-SP, surgical --------------------------------------------------------------------------------------

def test_wise_ft_interpolates_between_lp_and_ft(pretrained, task):
    lp = state(fit("LP", pretrained, task, {"C": 0.5}, seed=0))
    ft = state(fit("FT", pretrained, task, FT, seed=0))
    assert not same(lp, ft)
    hp = {"C": 0.5, **FT}
    assert same(lp, state(fit("WiSE-FT", pretrained, task, {"alpha": 0.0, **hp}, seed=0)))
    assert same(ft, state(fit("WiSE-FT", pretrained, task, {"alpha": 1.0, **hp}, seed=0)))
    mid = state(fit("WiSE-FT", pretrained, task, {"alpha": 0.5, **hp}, seed=0))
    assert all(torch.allclose(mid[k], (lp[k] + ft[k]) / 2, atol=1e-6) for k in mid)


def backbone_distance(a, b) -> float:
    return sum(((p - q) ** 2).sum().item() for p, q in zip(a.backbone.parameters(), b.backbone.parameters()))


def test_l2_sp_keeps_the_backbone_near_pretrained(pretrained, task):
    d_ft = backbone_distance(pretrained, fit("FT", pretrained, task, FT, seed=0))
    d_sp = backbone_distance(pretrained, fit("L2-SP", pretrained, task, {**FT, "weight": 10.0}, seed=0))
    d_weak = backbone_distance(pretrained, fit("L2-SP", pretrained, task, {**FT, "weight": 1e-6}, seed=0))
    assert 0 < d_sp < 0.05 * d_ft
    assert d_weak == pytest.approx(d_ft, rel=0.05)


@pytest.mark.parametrize("blocks", ["first", "last"])
def test_surgical_trains_only_its_block_and_the_head(pretrained, task, blocks):
    model = fit("surgical", pretrained, task, {**FT, "blocks": blocks}, seed=0)
    assert changed_prefixes(state(pretrained), state(model)) == {f"backbone.{blocks}", "head"}
    assert all(p.requires_grad for p in model.parameters())


# ---- the interface -------------------------------------------------------------------------------------------------

ALL = {"LP": {"C": 0.5}, "FT": FT, "LP-FT": {"C": 0.5, "lr": 0.005, "epochs": 2},
       "WiSE-FT": {"alpha": 0.5, "C": 0.5, **FT}, "L2-SP": {**FT, "weight": 0.01},
       "surgical": {**FT, "blocks": "first"}}


def test_all_methods_are_covered():
    assert set(ALL) == set(finetune.METHODS) == set(finetune.HPARAMS)


@pytest.mark.parametrize("method", finetune.METHODS)
def test_fit_never_mutates_pretrained(pretrained, task, method):
    before, flags = state(pretrained), [p.requires_grad for p in pretrained.parameters()]
    pretrained.eval()
    model = fit(method, pretrained, task, ALL[method], seed=0)
    assert model is not pretrained and same(before, state(pretrained))
    assert flags == [p.requires_grad for p in pretrained.parameters()] and not pretrained.training
    assert model.head.out_features == N_CLASSES and finetune.accuracy(model, task.val) > 0.5


@pytest.mark.parametrize("method", ["FT", "LP-FT", "surgical"])
def test_same_seed_same_weights(pretrained, task, method):
    a, b = (state(fit(method, pretrained, task, ALL[method], seed=3)) for _ in range(2))
    assert same(a, b)
    assert not same(a, state(fit(method, pretrained, task, ALL[method], seed=4)))


def test_bad_method_or_hyperparameters(pretrained, task):
    with pytest.raises(ValueError, match="LP-FT"):
        fit("LPFT", pretrained, task, {}, seed=0)
    with pytest.raises(ValueError, match=r"missing \['epochs'\]"):
        fit("FT", pretrained, task, {"lr": 0.1}, seed=0)
    with pytest.raises(ValueError, match=r"unknown \['lr'\]"):
        fit("LP", pretrained, task, {"C": 1.0, "lr": 0.1}, seed=0)
    with pytest.raises(ValueError, match="first"):
        fit("surgical", pretrained, task, {**FT, "blocks": "second"}, seed=0)


def test_select_chooses_by_val_accuracy(pretrained, task):
    grid = [{"C": c} for c in (1e-4, 1.0, 1e-2)]
    model, hp, table = finetune.select("LP", pretrained, task, grid, seed=0)
    assert list(table.columns) == ["C", "val_acc", "id_acc", "ood_acc"] and len(table) == 3
    best = int(table.val_acc.to_numpy().argmax())
    assert best not in (0, len(grid) - 1)  # the grid separates the settings, and not in grid order
    assert hp == grid[best] and finetune.accuracy(model, task.val) == table.val_acc.max()


def test_feature_change_is_the_papers_metric(pretrained, task):
    model = copy.deepcopy(pretrained)
    with torch.no_grad():
        model.backbone.last[0].bias += 1.0  # conv bias +1 before GroupNorm: no change; so perturb the GN shift
        model.backbone.last[1].bias += 0.5  # features = GAP(relu(...)): the change is measurable and positive
    f0, f1 = finetune.features(pretrained, task.val), finetune.features(model, task.val)
    expected = 100 * ((f1 - f0) ** 2).mean().item()
    assert expected > 0 and finetune.feature_change(pretrained, model, task.val) == pytest.approx(expected)


# ---- pretraining ---------------------------------------------------------------------------------------------------

def test_random_shift_moves_each_image_by_at_most_one_pixel():
    x = torch.zeros(64, 1, 8, 8)
    x[:, 0, 4, 4] = 1.0
    out = pretrain.random_shift(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.all(out.sum((1, 2, 3)) == 1)
    rows, cols = out[:, 0].nonzero()[:, 1], out[:, 0].nonzero()[:, 2]
    assert set(rows.tolist()) == {3, 4, 5} and set(cols.tolist()) == {3, 4, 5}


def test_pretrain_cache(tmp_path, monkeypatch):
    pool = blobs(128, 20)
    kw = dict(epochs=1, lr=1e-3, seed=0, norm="none", cache_dir=tmp_path)
    first = pretrain.supervised(pool, **kw)
    assert len(list(tmp_path.glob("*.pt"))) == 1 and len(list(tmp_path.glob("*.json"))) == 1

    def no_training(*args):
        raise AssertionError("pretrain trained although the checkpoint was cached")

    monkeypatch.setattr(pretrain, "_train_supervised", no_training)
    t = time.perf_counter()
    second = pretrain.supervised(pool, **kw)
    assert time.perf_counter() - t < 0.5 and same(state(first), state(second))
    with pytest.raises(AssertionError, match="trained although"):  # another pool's content is another key
        pretrain.supervised(blobs(128, 21), **kw)

    (pt,) = tmp_path.glob("*.pt")
    good = pt.read_bytes()
    pt.write_bytes(good[: len(good) // 2])  # an interrupted copy
    with pytest.raises(RuntimeError, match="corrupt or incomplete"):
        pretrain.supervised(pool, **kw)
    partial = state(first)
    partial.pop("head.bias")
    torch.save(partial, pt)  # readable, but not all of DigitNet
    with pytest.raises(RuntimeError, match="corrupt or incomplete"):
        pretrain.supervised(pool, **kw)
