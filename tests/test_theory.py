"""Unit tests of lpft.theory: the invariants, closed forms and orderings of Section 3 of the LP-FT paper."""
import math

import numpy as np
import pytest
import torch

from lpft import dynamics, theory
from lpft.theory import Setting


@pytest.fixture(scope="module")
def inst():
    return theory.make_instance(Setting(eps=0.1), seed=3)


def _mean_errors(eps, seeds=range(5)):
    """Mean ID/OOD errors of LP, FT, LP-FT (ODE) over a few instances."""
    out = {m: np.zeros(2) for m in ("LP", "FT", "LP-FT")}
    for s in seeds:
        i = theory.make_instance(Setting(eps=eps), seed=s)
        v_lp = theory.linear_probe(i.X, i.Y, i.B0)
        v_ft, B_ft = dynamics.fine_tune(i.X, i.Y, i.B0, i.v0)
        v_lf, B_lf = dynamics.lp_ft(i.X, i.Y, i.B0)
        for m, (v, B) in {"LP": (v_lp, i.B0), "FT": (v_ft, B_ft), "LP-FT": (v_lf, B_lf)}.items():
            out[m] += np.array([theory.id_error(v, B, i), theory.ood_error(v, B, i)]) / len(seeds)
    return out


# ---- the setting --------------------------------------------------------------------------------------------------

def test_instance_geometry(inst):
    s = inst.setting
    assert np.allclose(inst.B_star @ inst.B_star.T, np.eye(s.k), atol=1e-12)
    assert math.isclose(np.linalg.norm(inst.v_star), 1.0, rel_tol=1e-12)
    assert math.isclose(np.linalg.norm(inst.B0 - inst.B_star, 2), s.eps, rel_tol=1e-10)
    assert inst.Q_S.shape == (s.d, s.m) and inst.Q_S_perp.shape == (s.d, s.d - s.m)
    assert np.abs(inst.X @ inst.Q_S_perp).max() < 1e-12  # training inputs lie in S
    assert np.allclose(inst.Y, inst.X @ inst.w_star)


def test_same_seed_same_instance():
    a, b = theory.make_instance(Setting(), seed=7), theory.make_instance(Setting(), seed=7)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.B0, b.B0) and np.array_equal(a.v0, b.v0)


def test_head_at_angle():
    rng = np.random.default_rng(0)
    v_star = rng.standard_normal(5)
    for angle in (0, 30, 90, 180):
        v0 = theory.head_at_angle(v_star, angle, rng)
        cos = v0 @ v_star / np.linalg.norm(v0) / np.linalg.norm(v_star)
        assert math.isclose(np.linalg.norm(v0), np.linalg.norm(v_star), rel_tol=1e-12)
        assert math.isclose(cos, math.cos(math.radians(angle)), abs_tol=1e-12)


@pytest.mark.parametrize("bad, msg", [(dict(k=60), "k < d"), (dict(m=0), "0 < m"), (dict(head="zero"), "head"),
                                      (dict(sigma_ood="diag"), "sigma_ood")])
def test_bad_settings_are_refused(bad, msg):
    with pytest.raises(ValueError, match=msg):
        theory.make_instance(Setting()._replace(**bad))


# ---- closed forms --------------------------------------------------------------------------------------------------

def test_excess_risk_matches_monte_carlo(inst):
    rng = np.random.default_rng(1)
    v, B = inst.v0 + 0.3, inst.B0
    x = rng.standard_normal((400_000, inst.setting.d))  # OOD: N(0, I)
    mc = np.mean((x @ inst.w_star - x @ (B.T @ v)) ** 2)
    assert math.isclose(theory.ood_error(v, B, inst), mc, rel_tol=1e-2)


def test_cos_theta_max_closed_form():
    # d = 3, S = span(e1), S⊥ = span(e2, e3); R spanned by cos(a) e1 + sin(a) e2: cos θ_max(R, S⊥) = sin(a)
    Q_S_perp = np.eye(3)[:, 1:]
    for a in (0.0, 0.3, 1.0, math.pi / 2):
        B = np.array([[math.cos(a), math.sin(a), 0.0]])
        assert math.isclose(theory.cos_theta_max(B, Q_S_perp), math.sin(a), abs_tol=1e-12)
    assert theory.cos_theta_max(np.array([[1.0, 0, 0], [0, 1, 0]]), Q_S_perp) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(theory.cos_theta_max(np.eye(3)[:1], np.zeros((3, 0))))


def test_head_alignment_error_and_bound_vacuous_at_180():
    v_star = np.array([0.6, 0.8])
    assert theory.head_alignment_error(v_star, v_star) == 0.0
    assert theory.head_alignment_error(-v_star, v_star) == 0.0  # sign symmetry: φ = 0 at 180 degrees
    assert math.isclose(theory.head_alignment_error(np.zeros(2), v_star), 1.0)
    inst = theory.make_instance(Setting(head="angle", head_angle=180.0, eps=0.0), seed=0)
    assert theory.ft_lower_bound(inst) <= 0.0


def test_linear_probe_is_least_squares(inst):
    v = theory.linear_probe(inst.X, inst.Y, inst.B0)
    F = inst.X @ inst.B0.T
    assert np.abs(F.T @ (F @ v - inst.Y)).max() < 1e-10  # normal equations
    exact = theory.make_instance(Setting(eps=0.0), seed=3)
    v = theory.linear_probe(exact.X, exact.Y, exact.B0)
    assert np.allclose(v, exact.v_star, atol=1e-12)  # perfect features: LP recovers v*


def test_numpy_in_numpy_out_torch_in_torch_out(inst):
    v = theory.linear_probe(inst.X, inst.Y, inst.B0)
    assert isinstance(v, np.ndarray) and v.dtype == np.float64
    Xt, Yt, Bt = (torch.from_numpy(a) for a in (inst.X, inst.Y, inst.B0))
    vt = theory.linear_probe(Xt, Yt, Bt)
    assert isinstance(vt, torch.Tensor) and vt.dtype == torch.float64
    assert np.allclose(vt.numpy(), v, atol=1e-14)
    vf, Bf = dynamics.fine_tune(Xt, Yt, Bt, torch.from_numpy(inst.v0))
    assert isinstance(vf, torch.Tensor) and isinstance(Bf, torch.Tensor) and Bf.shape == Bt.shape
    vl, Bl = dynamics.lp_ft(Xt, Yt, Bt)
    assert isinstance(Bl, torch.Tensor)


@pytest.mark.parametrize("args, msg", [
    (lambda i: (i.X[:, :10], i.Y, i.B0), "B0 must have shape"),
    (lambda i: (i.X, i.Y[:-1], i.B0), "Y must have shape"),
    (lambda i: (i.X[0], i.Y, i.B0), "X must have shape"),
])
def test_wrong_shapes_are_refused(inst, args, msg):
    with pytest.raises(ValueError, match=msg):
        theory.linear_probe(*args(inst))


def test_unknown_solver(inst):
    with pytest.raises(ValueError, match="solver must be"):
        dynamics.fine_tune(inst.X, inst.Y, inst.B0, inst.v0, solver="adam")


# ---- invariants ----------------------------------------------------------------------------------------------------

def test_ode_invariants(inst):
    v, B, traj = dynamics.fine_tune(inst.X, inst.Y, inst.B0, inst.v0, return_trajectory=True)
    assert theory.feature_change(traj.B, inst.B0, inst.Q_S_perp).max() < 1e-10  # features frozen on S⊥
    drift = theory.balancedness(traj.v, traj.B) - theory.balancedness(inst.v0, inst.B0)
    assert np.linalg.norm(drift, axis=(1, 2)).max() < 1e-7  # v vᵀ − B Bᵀ conserved
    assert theory.feature_change(B, inst.B0, inst.Q_S) > 0.1  # ... while the features do move on S
    assert theory.train_loss(v, B, inst.X, inst.Y) < 1e-18


def test_gd_balancedness_drift_is_first_order_in_step_size():
    insts = [theory.make_instance(Setting(eps=0.1), seed=s) for s in range(20)]
    T = dynamics.stack_instances(insts)
    C0 = theory.balancedness(T["v0"], T["B0"])
    lrs = (0.1, 0.05, 0.01, 0.002)
    drift = []
    for lr in lrs:
        run = dynamics.fine_tune_batched(T["X"], T["Y"], T["B0"], T["v0"], lr=lr, steps=round(20 / lr))
        drift.append(torch.linalg.matrix_norm(theory.balancedness(run.v[-1], run.B[-1]) - C0).median().item())
    slope = np.polyfit(np.log(lrs), np.log(drift), 1)[0]
    assert 0.9 < slope < 1.1


def test_batched_gd_equals_literal_gd():
    insts = [theory.make_instance(Setting(eps=0.1, n=12 + s % 2 * 30), seed=s) for s in range(2)]
    for inst in insts:  # n < m and n > m: rank-deficient and full-rank data
        T = dynamics.stack_instances([inst])
        run = dynamics.fine_tune_batched(T["X"], T["Y"], T["B0"], T["v0"], lr=0.05, steps=1500)
        ref = dynamics.numpy_gd(inst.X, inst.Y, inst.B0, inst.v0, 0.05, 1500)
        assert np.abs(run.v[-1, 0].numpy() - ref.v[-1]).max() < 1e-10
        assert np.abs(run.B[-1, 0].numpy() - ref.B[-1]).max() < 1e-10
        assert theory.feature_change(ref.B, inst.B0, inst.Q_S_perp).max() < 1e-12  # GD keeps invariant 1 exactly


def test_batched_gd_compiled_equals_eager_and_observe():
    insts = [theory.make_instance(Setting(eps=0.05), seed=s) for s in range(8)]
    T = dynamics.stack_instances(insts)
    args = (T["X"], T["Y"], T["B0"], T["v0"])
    obs = lambda v, B: dynamics.batched_excess_risk(v, B, T["w_star"], T["Sigma_ood"])  # noqa: E731
    eager = dynamics.fine_tune_batched(*args, lr=0.05, steps=400, record_every=100, observe=obs)
    comp = dynamics.fine_tune_batched(*args, lr=0.05, steps=400, record_every=100, observe=obs, compile=True)
    assert eager.observed.shape == (5, 8) and np.allclose(eager.t, [0, 5, 10, 15, 20])
    assert torch.allclose(eager.observed, comp.observed, rtol=1e-10, atol=1e-14)
    direct = [theory.ood_error(eager.v[-1, i].numpy(), eager.B[-1, i].numpy(), insts[i]) for i in range(8)]
    assert np.allclose(eager.observed[-1].numpy(), direct, rtol=1e-12)


def test_gd_approaches_gradient_flow(inst):
    v_ode, B_ode = dynamics.fine_tune(inst.X, inst.Y, inst.B0, inst.v0)
    errs = []
    for lr in (0.04, 0.02):
        v, B = dynamics.fine_tune(inst.X, inst.Y, inst.B0, inst.v0, solver="gd", lr=lr, steps=round(200 / lr))
        errs.append(abs(theory.ood_error(v, B, inst) - theory.ood_error(v_ode, B_ode, inst)))
    assert errs[1] < 0.7 * errs[0] and errs[1] < 1e-3  # the GD limit is the flow, error O(η)


def test_batched_gd_refuses_bad_shapes(inst):
    T = dynamics.stack_instances([inst])
    with pytest.raises(ValueError, match="expected X"):
        dynamics.fine_tune_batched(T["X"][0], T["Y"], T["B0"], T["v0"], lr=0.1, steps=1)


# ---- the paper's orderings ----------------------------------------------------------------------------------------

def test_perfect_features():
    e = _mean_errors(0.0)
    assert e["LP"][1] < 1e-20 and e["LP-FT"][1] < 1e-20
    assert e["FT"][1] > 0.05  # FT from a small random head stays wrong OOD
    assert e["FT"][0] < 1e-12  # ... while fitting ID


def test_eps_scaling_and_orderings():
    eps_grid = (0.01, 0.03, 0.1, 0.3)
    errors = {eps: _mean_errors(eps) for eps in eps_grid}
    for m in ("LP", "LP-FT"):
        slope = np.polyfit(np.log(eps_grid), np.log([errors[e][m][1] for e in eps_grid]), 1)[0]
        assert 1.8 < slope < 2.2, (m, slope)
    ft_slope = np.polyfit(np.log(eps_grid), np.log([errors[e]["FT"][1] for e in eps_grid]), 1)[0]
    assert abs(ft_slope) < 0.3
    for eps in eps_grid:
        assert errors[eps]["LP-FT"][1] <= errors[eps]["LP"][1]  # LP-FT OOD ≤ LP OOD
        assert errors[eps]["FT"][0] < 1e-8 and errors[eps]["LP-FT"][0] < 1e-8 < errors[eps]["LP"][0]
        assert errors[eps]["FT"][1] > errors[eps]["LP"][1]


def test_lpft_ood_not_above_lp_per_instance():
    for s in range(10):
        for eps in (0.01, 0.1, 0.3):
            i = theory.make_instance(Setting(eps=eps), seed=s)
            v_lp = theory.linear_probe(i.X, i.Y, i.B0)
            v, B = dynamics.lp_ft(i.X, i.Y, i.B0)
            assert theory.ood_error(v, B, i) <= theory.ood_error(v_lp, i.B0, i) * (1 + 1e-9)


def test_early_stopping_does_not_help_ft(inst):
    v_lp = theory.linear_probe(inst.X, inst.Y, inst.B0)
    _, _, traj = dynamics.fine_tune(inst.X, inst.Y, inst.B0, inst.v0, return_trajectory=True)
    path = theory.ood_error(traj.v, traj.B, inst)
    assert path.min() >= 0.9 * path[-1]
    assert path.min() > theory.ood_error(v_lp, inst.B0, inst)


def test_lpft_moves_features_less(inst):
    _, B_ft = dynamics.fine_tune(inst.X, inst.Y, inst.B0, inst.v0)
    _, B_lf = dynamics.lp_ft(inst.X, inst.Y, inst.B0)
    assert np.linalg.norm(B_ft - inst.B0) > 3 * np.linalg.norm(B_lf - inst.B0)


# ---- the paper's setting: orthonormal features, ε over rotations, bad input -------------------------------------

@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3, 1.0])
def test_pretrained_features_are_orthonormal_with_exact_feature_error(eps):
    inst = theory.make_instance(Setting(eps=eps), seed=4)
    k = inst.setting.k
    assert np.allclose(inst.B0 @ inst.B0.T, np.eye(k), atol=1e-12)
    assert inst.eps == pytest.approx(eps, abs=1e-12)
    assert np.allclose(theory.best_rotation(inst.B0, inst.B_star), np.eye(k), atol=1e-9 if eps else 1e-12)


def test_feature_error_minimises_over_rotations():
    """min_U ‖B0 − UB*‖₂: the closed form is attained and no nearby or random orthogonal U does better; it does not
    change when B0 is rotated (the paper's identifiability up to U)."""
    rng = np.random.default_rng(0)
    inst = theory.make_instance(Setting(k=4, eps=0.4), seed=2)
    U0 = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    B0 = U0 @ inst.B0
    eps = theory.feature_error(B0, inst.B_star)
    assert eps == pytest.approx(0.4, abs=1e-12)
    U = theory.best_rotation(B0, inst.B_star)
    for _ in range(300):
        A = rng.standard_normal((4, 4)) * 0.05
        Q = U @ scipy_expm(A - A.T)
        assert np.linalg.norm(B0 - Q @ inst.B_star, 2) >= eps - 1e-12
    for _ in range(300):
        Q = np.linalg.qr(rng.standard_normal((4, 4)))[0]
        assert np.linalg.norm(B0 - Q @ inst.B_star, 2) >= eps - 1e-12
    with pytest.raises(ValueError, match="orthonormal rows"):
        theory.feature_error(2 * B0, inst.B_star)


def scipy_expm(A):
    import scipy.linalg
    return scipy.linalg.expm(A)


@pytest.mark.parametrize("bad, msg", [(dict(k=1, head="angle", head_angle=10.0), "k = 1"),
                                      (dict(head="angle", head_angle=200.0), r"\[0, 180\]"),
                                      (dict(eps=1.5), "eps must be in"), (dict(n=0), "n >= 1"),
                                      (dict(head_scale=-1.0), "head_scale"), (dict(k=30, eps=0.1), "2k <= d")])
def test_silent_nan_paths_are_errors(bad, msg):
    with pytest.raises(ValueError, match=msg):
        theory.make_instance(Setting()._replace(**bad))


def test_k1_heads_at_0_and_180_degrees():
    for angle, sign in ((0.0, 1.0), (180.0, -1.0)):
        inst = theory.make_instance(Setting(k=1, head="angle", head_angle=angle), seed=0)
        assert np.allclose(inst.v0, sign * inst.v_star, atol=1e-15)


def test_paper_setting_conditions():
    assert Setting().outside_paper_setting() == []
    assert Setting(n=45).outside_paper_setting() == ["k < d − n"]
    assert Setting(k=5, n=5).outside_paper_setting() == ["k < n", "k < dim S = min(n, m)"]
    assert Setting(k=5, m=5).outside_paper_setting() == ["k < dim S = min(n, m)"]
    assert "n < d" in Setting(n=60).outside_paper_setting()
