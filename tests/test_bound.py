"""Unit tests of lpft.bound: Theorem 3.1 (eq. 3.7) of the LP-FT paper's ICLR 2022 submission, checked on a random
family of instances of the paper's setting.

Pinned here: the right-hand side against an independent computation of eq. 3.7, the exact first step of the proof
everywhere, the printed constant close to tight on the family, its exact failure for k = 1 (closed form and flow),
and the 180° head that makes the bound vacuous.
"""
import dataclasses
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from lpft import bound, dynamics, theory
from lpft.theory import Setting

# a reduced version of the chapter's run: 300 instances of the family
N, STEPS, EVERY, LR_SCALE = 300, 3000, 60, 0.25


@pytest.fixture(scope="module")
def check():
    torch.set_num_threads(1)
    return bound.check_bound(N, seed=0, steps=STEPS, record_every=EVERY, lr_scale=LR_SCALE)


# ---- the family and the right-hand side ------------------------------------------------------------------------

def test_family_members_are_in_the_paper_setting_and_what_they_claim():
    for s in range(80):
        case, inst = bound.draw_instance(s)
        st = case.setting
        assert not st.outside_paper_setting()
        assert 1 <= st.k < st.n < st.d and st.k < st.d - st.n and st.k < min(st.n, st.m)
        assert 0 <= st.eps <= bound.EPS_MAX and st.k in bound.KS and st.n in bound.NS and st.m in bound.MS
        assert np.allclose(inst.B0 @ inst.B0.T, np.eye(st.k), atol=1e-12)  # orthonormal rows, as the paper assumes
        assert inst.eps == pytest.approx(st.eps, abs=1e-12)
        assert math.isclose(np.linalg.norm(inst.w_star), case.target_norm, rel_tol=1e-12)
        assert np.allclose(inst.Y, inst.X @ inst.w_star, atol=1e-12)
        assert np.array_equal(inst.Sigma_ood, np.eye(st.d))  # the worst-case OOD loss of eq. 3.1
        if st.head == "angle":
            assert st.k >= 2
            assert math.isclose(np.linalg.norm(inst.v0), case.head_norm * case.target_norm, rel_tol=1e-12)
            cos = inst.v0 @ inst.v_star / (np.linalg.norm(inst.v0) * np.linalg.norm(inst.v_star))
            assert math.isclose(cos, math.cos(math.radians(st.head_angle)), abs_tol=1e-12)
        else:
            assert case.head_norm == 1.0


def _eq37_independent(inst, squared_eps=False):
    """Eq. 3.7 from its printed ingredients, computed without lpft.theory's helpers: E, F orthonormal bases of R and
    S⊥ (Definition 3.1), ε from the largest principal angle between rowspace(B0) and rowspace(B*)."""
    k = inst.B0.shape[0]
    E = scipy.linalg.orth(inst.B0.T)
    F = scipy.linalg.null_space(inst.X)
    cos_k = np.linalg.svd(E.T @ F, compute_uv=False)[k - 1]  # the k-th largest singular value
    w = inst.B_star.T @ inst.v_star
    phi = math.sqrt(abs((inst.v0 @ inst.v_star) ** 2 - (inst.v_star @ inst.v_star) ** 2))
    theta = scipy.linalg.subspace_angles(inst.B0.T, inst.B_star.T).max()
    eps = 2 * math.sin(theta / 2)  # ‖B0 − UB*‖₂ at the best U, for orthonormal rows
    wn = np.linalg.norm(w)
    return cos_k / math.sqrt(k) * min(phi, phi**2 / wn) / (1 + wn) ** 2 - (eps**2 if squared_eps else eps)


@pytest.mark.parametrize("seed", range(8))
def test_ft_lower_bound_matches_an_independent_eq37(seed):
    """k > 1, ‖w*‖ ≠ 1, ε > 0, a head off v*, and B0 rotated by a random U (so min over U matters)."""
    rng = np.random.default_rng(seed)
    k = int(rng.choice([2, 3, 5]))
    inst = theory.make_instance(Setting(k=k, n=20, m=25, eps=0.2, head="angle", head_angle=70.0), seed=seed)
    U = np.linalg.qr(rng.standard_normal((k, k)))[0]
    inst = dataclasses.replace(inst, B0=U @ inst.B0, v_star=2.5 * inst.v_star, Y=2.5 * inst.Y, v0=1.7 * inst.v0)
    assert not math.isclose(np.linalg.norm(inst.w_star), 1.0)
    for squared in (False, True):
        ours = theory.ft_lower_bound(inst, eps_reading="squared" if squared else "norm")
        assert ours == pytest.approx(_eq37_independent(inst, squared), rel=1e-9, abs=1e-12)
    assert abs(bound.rhs(bound.bound_terms(inst)) - theory.ft_lower_bound(inst)) < 1e-12


def test_rhs_equals_theory_ft_lower_bound():
    for s in range(60):
        _, inst = bound.draw_instance(s)
        terms = bound.bound_terms(inst)
        for reading in theory.EPS_READINGS:
            assert abs(bound.rhs(terms, eps_reading=reading) - theory.ft_lower_bound(inst, eps_reading=reading)) < 1e-12


def test_bad_readings_and_settings_are_refused():
    inst = theory.make_instance(Setting(), seed=0)
    with pytest.raises(ValueError, match="eps_reading"):
        theory.ft_lower_bound(inst, eps_reading="cubed")
    with pytest.raises(ValueError, match="S⊥ = {0}"):
        theory.ft_lower_bound(theory.make_instance(Setting(m=50, n=60), seed=0))


def test_batched_slack_at_t0_equals_the_per_instance_bound(check):
    slack = check.slack()
    for i in range(0, N, 3):
        _, inst = bound.draw_instance(i)
        lhs0 = math.sqrt(theory.ood_error(inst.v0, inst.B0, inst))
        assert abs(slack[i, 0] - (lhs0 - theory.ft_lower_bound(inst))) < 1e-10


def test_implied_constant_makes_the_bound_tight(check):
    """With κ = κ_needed the RHS equals the LHS, and κ_needed < κ exactly where the slack is negative."""
    kappa = bound.implied_constant(check.lhs, check.cases)
    i, j = np.argwhere(np.isfinite(kappa))[::97].T
    tight = bound.rhs(check.cases.iloc[i].reset_index(drop=True), constant=kappa[i, j])
    assert np.allclose(tight, check.lhs[i, j], rtol=1e-10, atol=1e-12)
    for reading in theory.EPS_READINGS:
        rel, slack = check.constant_ratio(reading), check.slack(reading)
        clear = np.isfinite(rel) & (np.abs(slack) > 1e-9)
        assert np.array_equal(rel[clear] < 1, slack[clear] < 0)


# ---- the batched gradient descent -------------------------------------------------------------------------------

def test_padded_rescaled_batch_is_plain_gd_per_instance():
    """run_group pads to one n and rescales by √η_i: each instance must follow numpy_gd with its own step."""
    seeds = [s for s in range(200) if bound.draw_case(s).setting.k == 3][:6]
    insts = [bound.draw_instance(s)[1] for s in seeds]
    assert len({inst.X.shape[0] for inst in insts}) > 1  # several n in one batch
    lrs = np.array([bound.stable_lr(inst, 0.25) for inst in insts])
    steps_rec, obs = bound.run_group(insts, lrs, steps=200, record_every=50)
    assert list(steps_rec) == [0, 50, 100, 150, 200]
    for i, inst in enumerate(insts):
        traj = dynamics.numpy_gd(inst.X, inst.Y, inst.B0, inst.v0, lrs[i], 200, record_every=50)
        ood = theory.ood_error(traj.v, traj.B, inst)
        train = [theory.train_loss(v, B, inst.X, inst.Y) for v, B in zip(traj.v, traj.B)]
        assert np.allclose(obs[:, i, 0], ood, rtol=1e-10, atol=1e-14)
        assert np.allclose(obs[:, i, 1], train, rtol=1e-10, atol=1e-14)
        assert np.allclose(obs[:, i, 2], np.linalg.norm(traj.v - inst.v_star, axis=1), rtol=1e-10)


def test_gd_is_stable(check):
    stab = bound.divergence_check(check)
    assert stab["all_finite"] and stab["n_not_decreasing"] == 0
    assert stab["frac_converged"] > 0.5


# ---- what the chapter found -------------------------------------------------------------------------------------

def test_exact_first_step_holds_everywhere(check):
    """√L_ood ≥ cos θ_k(R, S⊥)‖v − Uv*‖ − ε‖w*‖ at every (instance, t): exact, from invariant 1."""
    assert check.core_slack().min() > -1e-12


def test_printed_constant_is_close_to_tight_on_the_family(check):
    """No instance of the reduced family violates eq. 3.7 (ε not squared), yet some come within 20% of it, and the
    closest ones have one feature: the bound is nearly tight, not loose by orders of magnitude."""
    s = bound.summary(check)
    assert s["n_violating_instances"] == 0 and s["n_nonvacuous_instances"] > 100
    assert 1.0 <= s["min_constant_ratio"] < 1.2
    closest = bound.per_instance(check).nsmallest(3, "min_constant_ratio")
    assert (closest["k"] == 1).all() and (closest["eps"] == 0).all()


def test_closest_instance_violates_under_exact_flow():
    """Instance 571 of the family (k = 1, ‖w*‖ = 1, ε = 0): the exact flow ends below the printed bound."""
    r = bound.ode_recheck(571)
    assert r["min_slack"] < -1e-4
    assert r["min_constant_ratio"] == pytest.approx(0.99368, abs=2e-5)


def test_perfect_features_keep_ft_away_from_zero(check):
    core = bound.perfect_features_core(check)
    assert core["n"] > 50 and core["min_lhs"] > 0.01 and core["min_ratio"] > 0.1


# ---- k = 1, ε = 0: exact end points ------------------------------------------------------------------------------

def _k1(m: int, s: float, seed: int = 3, v0_factor: float | None = None):
    case = bound.Case(Setting(d=50, k=1, m=m, n=min(2 * m, 48), eps=0.0, head_scale=1e-3), s, 1.0)
    inst = bound.make_case_instance(case, seed)
    if v0_factor is not None:
        inst = dataclasses.replace(inst, v0=v0_factor * inst.v_star)
    return inst


@pytest.mark.parametrize("m, s, v0_factor", [(20, 1.0, None), (20, 0.5, None), (40, 1.0, 1.1), (5, 2.0, 0.5)])
def test_k1_closed_form_is_the_end_point_of_the_flow(m, s, v0_factor):
    inst = _k1(m, s, v0_factor=v0_factor)
    v, B = dynamics.fine_tune(inst.X, inst.Y, inst.B0, inst.v0, solver="ode", horizon=5000.0)
    cos = theory.cos_theta_max(inst.B0, inst.Q_S_perp)
    c = float(inst.v0 @ inst.v_star) / s**2  # tiny negative c for the random head: only c² enters
    closed = bound.k1_fitted_error(cos, c, s)
    assert math.sqrt(theory.ood_error(v, B, inst)) == pytest.approx(closed, rel=1e-6)
    assert theory.ft_lower_bound(inst) / closed == pytest.approx(bound.k1_ratio(cos, c, s), rel=1e-12)


def test_k1_small_head_unit_target_threshold():
    """Small head, ‖w*‖ = 1: RHS/LHS = 1/(4(1 − √u)), above 1 exactly when cos θ < √(31/112)."""
    cos = np.array([bound.K1_THRESHOLD_COS - 1e-4, bound.K1_THRESHOLD_COS + 1e-4])
    assert list(bound.k1_ratio(cos, 0.0, 1.0) > 1) == [True, False]
    assert bound.k1_ratio(bound.K1_THRESHOLD_COS, 0.0, 1.0) == pytest.approx(1.0, abs=1e-12)
    assert bound.k1_ratio(1e-7, 0.0, 1.0) == pytest.approx(bound.K1_WORST_RATIO, rel=1e-6)
    assert bound.K1_WORST_RATIO == pytest.approx(1.1690512540053468, rel=1e-12)


def test_k1_violation_under_exact_flow():
    """m = 40 (cos θ ≈ 0.27 < 0.526), small random head, ‖w*‖ = 1: the flow ends below the printed bound."""
    inst = _k1(40, 1.0, seed=0)
    cos = theory.cos_theta_max(inst.B0, inst.Q_S_perp)
    assert cos < bound.K1_THRESHOLD_COS
    v, B = dynamics.fine_tune(inst.X, inst.Y, inst.B0, inst.v0, solver="ode", horizon=1e5)
    assert theory.ft_lower_bound(inst) / math.sqrt(theory.ood_error(v, B, inst)) == pytest.approx(1.1240, abs=1e-4)


def test_k1_ratio_limits():
    cos = np.array([0.3, 0.7, 0.95])
    for s in (0.25, 1.0, 3.0):
        near = bound.k1_ratio(cos, 1 + 1e-6, s)
        assert np.allclose(near, bound.k1_ratio_limit(cos, s), rtol=1e-4)
    assert np.allclose(bound.k1_ratio(cos, 0.0, 1e-4), 2 * (1 - cos**2), rtol=1e-3)  # s → 0: 2 sin²θ
    assert np.allclose(bound.k1_ratio_limit(cos, 1e4), 2.0, rtol=1e-3)  # c → 1, s → ∞: 2
    grid = bound.k1_ratio(np.linspace(0.01, 1, 50)[None, None, :], np.linspace(0, 3, 151)[:, None, None],
                          np.geomspace(1e-2, 1e2, 81)[None, :, None])
    assert 1.9 < np.nanmax(grid) < 2.0


# ---- the blind spot ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_opposite_head_gives_a_vacuous_bound(eps):
    """v0 = −v* (180°): φ = 0 up to round-off, so RHS = −ε ≤ 0, although FT's OOD error is large."""
    inst = theory.make_instance(Setting(eps=eps, head="angle", head_angle=180.0), seed=1)
    terms = bound.bound_terms(inst)
    assert terms["phi"] < 1e-7
    assert bound.rhs(terms) == pytest.approx(-eps, abs=1e-12)
    v, B = dynamics.fine_tune(inst.X, inst.Y, inst.B0, inst.v0, solver="ode")
    assert math.sqrt(theory.ood_error(v, B, inst)) > 0.5


# ---- where a flat minimum lies: an interval, not an arg-min ------------------------------------------------------

def test_near_min_times_is_the_interval_within_the_tolerance():
    t = np.array([[0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 0.5, 1.0, 1.5, 2.0]])
    values = np.array([[3.0, 1.0 + 5e-7, 1.0, 1.0 + 2e-6, 2.0],  # flat bottom: records 1 and 2 within 1e-6
                       [0.0, 1.0, 2.0, 3.0, 4.0]])                   # sharp minimum at the first record
    lo, hi = bound.near_min_times(t, values, tol=1e-6)
    assert lo.tolist() == [1.0, 0.0] and hi.tolist() == [2.0, 0.0]


def test_summary_gives_where_the_smallest_slack_lies_as_an_interval(check):
    s = bound.summary(check, "squared")
    assert "worst_t" not in s and "worst_record" not in s
    i = s["worst_index"]
    slack = check.slack("squared")[i]
    near = slack <= slack.min() + bound.NEAR_MIN
    assert s["worst_t_lo"] == check.t[i][near].min() and s["worst_t_hi"] == check.t[i][near].max()
    assert s["worst_t_lo"] <= check.t[i][np.argmin(slack)] <= s["worst_t_hi"]
    assert s["worst_t_step"] == pytest.approx(check.t[i, 1] - check.t[i, 0])
    pi = bound.per_instance(check, "squared")
    assert (pi["t_min_slack_lo"] <= pi["t_min_slack_hi"]).all() and "t_min_slack" not in pi
