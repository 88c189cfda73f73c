"""Tests of lpft.beyond: the LP / FT / LP-FT experiment with logistic loss, ReLU networks and SGD."""
import numpy as np
import pytest
import torch

from lpft import beyond, dynamics, theory

torch.set_num_threads(1)


def _instance(variant: beyond.Variant, eps: float = 0.1, seed: int = 0) -> theory.Instance:
    (_, _, inst), = beyond.variant_instances(variant, (eps,), 1, seed)
    return inst


@pytest.mark.parametrize("loss,activation", [("squared", "relu"), ("logistic", "linear"), ("logistic", "relu")])
def test_gradients_match_autograd(loss, activation):
    variant = beyond.Variant("x", loss=loss, activation=activation, k=8)
    inst = _instance(variant)
    X, Y = torch.from_numpy(inst.X), torch.from_numpy(inst.Y)
    v = torch.tensor(np.random.default_rng(1).standard_normal(8), requires_grad=True)
    B = torch.from_numpy(inst.B0).clone().requires_grad_(True)
    gv, gB, value = beyond.gradients(X, Y, v.detach(), B.detach(), loss=loss, activation=activation)
    f = beyond.forward(X, v, B, activation)
    L = ((f - Y) ** 2).mean() if loss == "squared" else torch.nn.functional.softplus(-Y * f).mean()
    L.backward()
    assert abs(value.item() - L.item()) < 1e-14
    assert torch.allclose(gv, v.grad, rtol=0, atol=1e-13)
    assert torch.allclose(gB, B.grad, rtol=0, atol=1e-13)


@pytest.mark.parametrize("loss,activation,batch_size", [
    ("squared", "relu", None), ("logistic", "linear", None), ("logistic", "relu", None), ("squared", "relu", 8),
    ("squared", "linear", 8)])
def test_features_unchanged_on_S_perp(loss, activation, batch_size):
    """Invariant 1 for any activation, loss and minibatch: B(t) P_S⊥ = B0 P_S⊥, while B moves on S."""
    variant = beyond.Variant("x", loss=loss, activation=activation, batch_size=batch_size,
                             k=20 if activation == "relu" else 5, steps=2000)
    inst = _instance(variant)
    v, B = beyond.train_two_layer(inst.X, inst.Y, inst.B0, inst.v0, **variant.train_options())
    assert theory.feature_change(B, inst.B0, inst.Q_S_perp) < 1e-10
    assert theory.feature_change(B, inst.B0, inst.Q_S) > 0.05


def test_linear_squared_full_batch_matches_numpy_gd():
    inst = theory.make_instance(theory.Setting(eps=0.1), seed=3)
    steps, lr = 400, 0.05
    ref = dynamics.numpy_gd(inst.X, inst.Y, inst.B0, inst.v0, lr, steps, record_every=1)
    seen = {}
    beyond.train_two_layer(inst.X, inst.Y, inst.B0, inst.v0, lr=lr, steps=steps, record_at=range(steps + 1),
                           observe=lambda i, v, B: seen.__setitem__(i, (v[0].numpy().copy(), B[0].numpy().copy())))
    assert sorted(seen) == list(range(steps + 1))
    for i in range(steps + 1):
        assert np.abs(seen[i][0] - ref.v[i]).max() < 1e-10
        assert np.abs(seen[i][1] - ref.B[i]).max() < 1e-10
    assert np.abs(ref.B[-1] - inst.B0).max() > 1e-3  # the comparison is not trivial: the features moved


def test_full_minibatch_equals_full_batch():
    """batch_size = n: every step sees all examples (in a permuted order), so it is full-batch GD up to round-off."""
    inst = _instance(beyond.Variant("x", activation="relu", k=20))
    opts = dict(activation="relu", lr=0.2, steps=300)
    v1, B1 = beyond.train_two_layer(inst.X, inst.Y, inst.B0, inst.v0, **opts)
    v2, B2 = beyond.train_two_layer(inst.X, inst.Y, inst.B0, inst.v0, **opts, batch_size=inst.X.shape[0])
    assert np.abs(v1 - v2).max() < 1e-10 and np.abs(B1 - B2).max() < 1e-10


def test_one_step_neuron_balancedness_change_is_second_order():
    """For ReLU the first-order terms cancel: one step changes c_j by exactly η²(g_vj² − ‖g_bj‖²), for any loss."""
    for loss in ("squared", "logistic"):
        inst = _instance(beyond.Variant("x", loss=loss, activation="relu", k=20))
        X, Y, B0 = (torch.from_numpy(a) for a in (inst.X, inst.Y, inst.B0))
        v0 = torch.from_numpy(np.random.default_rng(0).standard_normal(20))
        gv, gB, _ = beyond.gradients(X, Y, v0, B0, loss=loss, activation="relu")
        lr = 0.3
        v1, B1 = beyond.train_two_layer(X, Y, B0, v0, loss=loss, activation="relu", lr=lr, steps=1)
        change = beyond.neuron_balancedness(v1, B1) - beyond.neuron_balancedness(v0, B0)
        predicted = lr**2 * (gv**2 - (gB**2).sum(-1))
        assert torch.abs(change - predicted).max() < 1e-12
        assert torch.abs(predicted).max() > 1e-6


def test_relu_neuron_balancedness_drift_linear_in_step_size():
    variant = beyond.Variant("x", activation="relu", k=20)
    runs = beyond.variant_instances(variant, (0.1,), 3, 0)
    X, Y, B0, v0 = (torch.from_numpy(np.stack([getattr(inst, key) for *_, inst in runs])) for key in ("X", "Y", "B0", "v0"))
    c0, C0 = beyond.neuron_balancedness(v0, B0), theory.balancedness(v0, B0)
    lrs, drifts, full = (0.2, 0.1, 0.05, 0.025), [], []
    for lr in lrs:
        v, B = beyond.train_two_layer(X, Y, B0, v0, activation="relu", lr=lr, steps=round(10.0 / lr))
        drifts.append(torch.linalg.vector_norm(beyond.neuron_balancedness(v, B) - c0, dim=-1).median().item())
        full.append(torch.linalg.matrix_norm(theory.balancedness(v, B) - C0).median().item())
    slope = np.polyfit(np.log(lrs), np.log(drifts), 1)[0]
    assert 0.9 < slope < 1.15, slope
    ratios = np.array(drifts[:-1]) / np.array(drifts[1:])
    assert np.all((ratios > 1.8) & (ratios < 2.4)), ratios
    assert min(full) > 10 * max(drifts), "ReLU should not conserve the off-diagonal of vvᵀ − BBᵀ"


def test_sgd_orderings_at_perfect_features():
    """What the chapter reports for (c) minibatch SGD at ε = 0: FT OOD > LP OOD, LP-FT OOD ≤ LP OOD (both exact),
    and no ID advantage for FT (LP is exact on S)."""
    variant = beyond.Variant("sgd", batch_size=8, lr=0.05, steps=3000)
    df = beyond.run_variant(variant, (0.0,), n_seeds=3, n_test=2000, seed=0)
    o = beyond.orderings(df).loc[0.0]
    assert bool(o["FT OOD > LP OOD"]) and o["frac FT OOD > LP OOD"] == 1.0
    assert bool(o["LP-FT OOD ≤ LP OOD"]) and o["frac LP-FT OOD ≤ LP OOD"] == 1.0
    assert not bool(o["FT ID < LP ID"])
    by = df.groupby("method")[["id", "ood"]]
    assert by.max().loc["LP", "ood"] < 1e-20 and by.max().loc["LP-FT", "ood"] < 1e-20
    assert by.min().loc["FT", "ood"] > 0.02  # FT's OOD error stays away from 0 with perfect features
    assert by.max().loc["FT", "id"] < 1e-10  # while it fits the ID subspace
    assert df["change_S_perp"].max() < 1e-10


def test_lp_ft_helper_and_shapes():
    inst = _instance(beyond.Variant("x"), eps=0.0)
    v_lp, (v, B) = beyond.lp_ft(inst.X, inst.Y, inst.B0, inst.v0, lr=0.05, steps=3000, batch_size=8, seed=1)
    assert np.abs(v_lp - inst.v_star).max() < 1e-10  # at ε = 0 the LP head is v*
    assert np.abs(B - inst.B0).max() < 1e-12 and np.abs(v - v_lp).max() < 1e-12  # and LP-FT does not move
    with pytest.raises(ValueError):
        beyond.train_two_layer(inst.X, inst.Y, inst.B0, inst.v0, loss="hinge")
    with pytest.raises(ValueError):
        beyond.train_two_layer(inst.X, inst.Y, inst.B0, inst.v0, batch_size=0)
