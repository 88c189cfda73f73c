"""Tests of lpft.pretrain's contrastive half: the NT-Xent loss, the digit augmentations and the cached contrastive pretraining."""
import math

import pytest
import torch

from lpft import digits, pretrain
from lpft.digits import DigitNet
from lpft.pretrain import augment, nt_xent


# ---- NT-Xent --------------------------------------------------------------------------------------------------------

def _loss_by_hand(z1, z2, tau):
    """The NT-Xent definition written out anchor by anchor, with plain Python floats."""
    z = [[float(v) for v in row] for row in torch.cat([z1, z2])]
    z = [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in z]
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        sims = [sum(a * b for a, b in zip(z[i], z[k])) / tau for k in range(n2)]
        positive = (i + n2 // 2) % n2
        total += -sims[positive] + math.log(sum(math.exp(sims[k]) for k in range(n2) if k != i))
    return total / n2


def test_nt_xent_closed_form():
    """Identical views, orthogonal images, τ = 1: each anchor has similarity 1 to its positive and 0 to the two
    negatives, so the loss is −log(e / (e + 2)) = log(1 + 2/e)."""
    z = torch.eye(2)
    assert nt_xent(z, z.clone(), 1.0).item() == pytest.approx(math.log(1 + 2 / math.e), rel=1e-6)


def test_nt_xent_matches_the_definition_on_a_small_batch():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    for tau in (0.1, 0.5, 2.0):
        assert nt_xent(z1, z2, tau).item() == pytest.approx(_loss_by_hand(z1, z2, tau), rel=1e-5)
    # scale invariance (the embeddings are normalised) and symmetry in the two views
    assert nt_xent(3 * z1, z2, 0.5).item() == pytest.approx(nt_xent(z1, z2, 0.5).item(), rel=1e-5)
    assert nt_xent(z2, z1, 0.5).item() == pytest.approx(nt_xent(z1, z2, 0.5).item(), rel=1e-5)


def test_nt_xent_is_lower_when_views_agree():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 16, generator=g)
    assert nt_xent(z, z + 0.01 * torch.randn(8, 16, generator=g), 0.2) < nt_xent(z, torch.randn(8, 16, generator=g), 0.2)


def test_nt_xent_rejects_bad_inputs():
    with pytest.raises(ValueError, match="N >= 2"):
        nt_xent(torch.ones(1, 3), torch.ones(1, 3), 0.5)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.eye(2), torch.eye(2), 0.0)


# ---- augmentations --------------------------------------------------------------------------------------------------

def test_augment_shape_range_and_determinism():
    x = digits.load_domain("uci")[0][:64]
    a = augment(x, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert torch.equal(a, augment(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, augment(x, torch.Generator().manual_seed(4)))
    assert not torch.equal(a, x)


def test_augment_shift_only_and_inversion():
    """No rotation and no stroke change: the single lit pixel moves by at most one pixel; p_invert = 1 inverts."""
    x = torch.zeros(50, 1, 8, 8)
    x[:, 0, 4, 3] = 1.0
    kw = dict(max_degrees=0.0, max_stroke=0.0)
    a = augment(x, torch.Generator().manual_seed(0), p_invert=0.0, **kw)
    assert torch.all(a.flatten(1).sum(1) == 1.0)
    rows, cols = (a[:, 0] == 1.0).nonzero()[:, 1], (a[:, 0] == 1.0).nonzero()[:, 2]
    assert rows.sub(4).abs().max() <= 1 and cols.sub(3).abs().max() <= 1
    assert len({(r, c) for r, c in zip(rows.tolist(), cols.tolist())}) > 1  # the shifts differ between images
    b = augment(x, torch.Generator().manual_seed(0), p_invert=1.0, **kw)
    assert torch.equal(b, 1.0 - a)


def test_rotation_matches_the_digit_shift():
    x = digits.load_domain("mnist")[0][:10]
    for s in (0.5, 1.0):
        expected = digits.apply_shift(x, "rotate", s)
        assert torch.allclose(pretrain._rotate_each(x, torch.full((10,), 90.0 * s)), expected, atol=1e-5)


def test_stroke_change_stays_between_erosion_and_dilation():
    x = digits.load_domain("uci")[0][:32]
    a = augment(x, torch.Generator().manual_seed(0), max_degrees=0.0, p_invert=0.0, max_stroke=1.0)
    # same generator draws: the ±1 px shift is the one random_shift makes after the (unused) rotation draw
    g = torch.Generator().manual_seed(0)
    torch.rand(32, generator=g)
    shifted = pretrain.random_shift(x, g)
    lo = -torch.nn.functional.max_pool2d(-shifted, 3, stride=1, padding=1)
    hi = torch.nn.functional.max_pool2d(shifted, 3, stride=1, padding=1)
    assert torch.all(a >= lo - 1e-6) and torch.all(a <= hi + 1e-6)


# ---- cached pretraining ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pool():
    full = digits.pretraining_pool()
    idx = torch.arange(0, len(full), len(full) // 96)[:96]
    return torch.utils.data.TensorDataset(full.tensors[0][idx], full.tensors[1][idx])


KW = dict(epochs=1, batch_size=32, seed=0)


def test_pretrain_trains_caches_and_reloads(pool, tmp_path):
    first = pretrain.contrastive(pool, cache_dir=tmp_path, **KW)
    assert first.state_dict().keys() == DigitNet(10, "group").state_dict().keys()  # no projection head
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".pt")
    again = pretrain.contrastive(pool, cache_dir=tmp_path, **KW)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in first.state_dict().items())
    # deterministic on CPU: retraining from scratch elsewhere gives the same weights
    other = pretrain.contrastive(pool, cache_dir=tmp_path / "other", **KW)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in first.state_dict().items())


def test_pretrain_changes_the_backbone(pool, tmp_path):
    model = pretrain.contrastive(pool, cache_dir=tmp_path, **KW)
    torch.manual_seed(0)
    init = DigitNet(10, "group")
    assert any(not torch.equal(a, b) for a, b in zip(model.backbone.parameters(), init.backbone.parameters()))


def test_pretrain_refuses_corrupt_or_mismatched_checkpoints(pool, tmp_path):
    pretrain.contrastive(pool, cache_dir=tmp_path, **KW)
    pt = next(tmp_path.glob("*.pt"))
    js = pt.with_suffix(".json")
    good = pt.read_bytes()
    pt.write_bytes(good[: len(good) // 2])  # a partial write
    with pytest.raises(RuntimeError, match="corrupt or incomplete"):
        pretrain.contrastive(pool, cache_dir=tmp_path, **KW)
    pt.write_bytes(good)
    js.write_text(js.read_text().replace('"epochs": 1', '"epochs": 2'))
    with pytest.raises(RuntimeError, match="differs"):
        pretrain.contrastive(pool, cache_dir=tmp_path, **KW)


def test_config_keys_the_cache(pool):
    a = pretrain.contrastive_config(pool, **KW)
    assert a == pretrain.contrastive_config(pool, **KW)
    assert a != pretrain.contrastive_config(pool, **{**KW, "p_invert": 0.0})
    smaller = torch.utils.data.TensorDataset(pool.tensors[0][:-1], pool.tensors[1][:-1])
    assert a["pool"] != pretrain.contrastive_config(smaller, **KW)["pool"]
    with pytest.raises(ValueError, match="unknown contrastive pretraining options"):
        pretrain.contrastive_config(pool, epoch=3)
    with pytest.raises(ValueError, match="norm"):
        pretrain.contrastive_config(pool, norm="batch")
