"""The fine-tuning OOD lower bound of Section 3 (Theorem 3.1, eq. 3.7 of the ICLR 2022 submission of the LP-FT
paper), checked on thousands of random instances of the paper's setting.

The statement (:func:`lpft.theory.ft_lower_bound` evaluates its right-hand side): if cos θ_k(R, S⊥) > 0, for all t

    √L_ood(v_ft(t), B_ft(t)) ≥ κ · cos θ_k(R, S⊥) · min(φ, φ²/‖w*‖) − ε,    κ = 1 / (√k (1 + ‖w*‖)²),

with R = rowspace(B0), φ² = |(v0ᵀv*)² − (v*ᵀv*)²| and L_ood(v, B) = ‖B*ᵀv* − Bᵀv‖² (the worst case over ‖x‖ ≤ 1).
This module

* draws instances from a *family* inside the paper's setting 1 ≤ k < n < d, k < d − n (:func:`draw_case`: k, n, m,
  ε, the scale of the target, random heads of several scales and fixed-angle heads of several norms),
* fine-tunes all of them by batched gradient descent (:func:`check_bound`; one tensor program per k, see
  :func:`run_group`), with a step size chosen per instance from its data and head (:func:`stable_lr`),
* records √L_ood, the training loss, ‖v − Uv*‖ and ‖v‖ along every trajectory (U: the rotation that aligns B0 with
  B*), and compares them with the right-hand side (:func:`summary`, :func:`per_group`), with the largest constant
  that would hold (:func:`implied_constant`: any version of κ can be compared), and with the exact first step of the
  proof, √L_ood ≥ cos θ_k(R, S⊥)‖v(t) − Uv*‖ − ε‖w*‖, which follows from B(t)P_S⊥ = B0P_S⊥
  (:meth:`BoundCheck.core_slack`).

Per-instance step sizes inside one batch. :func:`lpft.dynamics.fine_tune_batched` takes one step size and one shape.
Gradient descent with step η on the data (aX, aY) produces exactly the iterates of step a²η on (X, Y) (the loss is
multiplied by a², the predictor vᵀBx is unchanged), and zero rows appended to X change only the 1/n of the mean loss.
So each instance is padded to the largest n and scaled by a, and the batch runs with step 1: instance i follows GD
with its own η_i, and its gradient-flow time after s steps is s·η_i.

For k = 1 and ε = 0 the fitted end point of gradient flow has a closed form (:func:`k1_fitted_error`), which shows
exactly where the printed constant fails (:func:`k1_ratio`).
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from lpft import dynamics, theory
from lpft.theory import Instance, Setting

# ---- the family of settings ------------------------------------------------------------------------------------------

D = 50
KS = (1, 2, 3, 5, 10)
NS = (10, 20, 30, 40)
MS = (5, 10, 20, 30, 40)
RANDOM_HEAD_SCALES = (1e-3, 1e-2, 0.1, 0.3, 1.0)
HEAD_ANGLES = (0, 5, 15, 30, 60, 90, 120, 150, 175, 180)
HEAD_NORMS = (0.5, 0.8, 1.25, 2.0)  # ‖v0‖/‖v*‖ of an angle head, drawn half the time (otherwise 1)
TARGET_NORMS = (0.5, 1.0, 2.0)  # ‖w*‖ = ‖v*‖
EPS_MAX = 0.3


class Case(NamedTuple):
    """One member of the family: the :class:`~lpft.theory.Setting` plus what it does not cover."""

    setting: Setting
    target_norm: float  # ‖v*‖ = ‖w*‖ (make_instance draws a unit v*; we rescale v*, Y and an angle head)
    head_norm: float  # ‖v0‖/‖v*‖ for head="angle" (1 = the Setting's fixed-angle head); 1 for random heads


def draw_case(seed: int) -> Case:
    """Draw the setting of instance ``seed`` (its own random stream, independent of the instance's data).

    (k, n, m) uniform on KS × NS × MS, redrawn until 1 ≤ k < n < d, k < d − n (the paper's setting, d = 50) and
    k < dim S = min(n, m) (:meth:`lpft.theory.Setting.outside_paper_setting`);
    ε = 0 with probability 1/4, else uniform on [0, 0.3]; ‖w*‖ ∈ {0.5, 1, 2} (probabilities 1/4, 1/2, 1/4); the head
    is random (scale from RANDOM_HEAD_SCALES) or, for k ≥ 2 with probability 1/2, at a fixed angle from HEAD_ANGLES
    with norm ratio 1 or one of HEAD_NORMS. The OOD loss is the paper's worst case (Σ = I).
    """
    rng = np.random.default_rng([seed, 20220221])
    while True:
        k, n, m = int(rng.choice(KS)), int(rng.choice(NS)), int(rng.choice(MS))
        if not Setting(d=D, k=k, n=n, m=m).outside_paper_setting():
            break
    eps = 0.0 if rng.random() < 0.25 else float(rng.uniform(0.0, EPS_MAX))
    target_norm = float(rng.choice(TARGET_NORMS, p=[0.25, 0.5, 0.25]))
    if k >= 2 and rng.random() < 0.5:  # in one dimension "an angle" is only 0° or 180°: k = 1 uses random heads
        angle = float(rng.choice(HEAD_ANGLES))
        head_norm = 1.0 if rng.random() < 0.5 else float(rng.choice(HEAD_NORMS))
        setting = Setting(d=D, k=k, m=m, n=n, eps=eps, head="angle", head_angle=angle)
    else:
        head_norm = 1.0
        setting = Setting(d=D, k=k, m=m, n=n, eps=eps, head="random", head_scale=float(rng.choice(RANDOM_HEAD_SCALES)))
    return Case(setting, target_norm, head_norm)


def make_case_instance(case: Case, seed: int) -> Instance:
    """:func:`lpft.theory.make_instance` for ``case.setting``, then v* ← ‖w*‖·v*, Y ← ‖w*‖·Y, and an angle head
    v0 ← ‖w*‖·ρ·v0 (ρ = ``case.head_norm``), so the angle between v0 and v* is unchanged."""
    inst = theory.make_instance(case.setting, seed=seed)
    s = case.target_norm
    v0 = inst.v0 * (s * case.head_norm) if case.setting.head == "angle" else inst.v0
    return dataclasses.replace(inst, v_star=inst.v_star * s, Y=inst.Y * s, v0=v0)


def draw_instance(seed: int) -> tuple[Case, Instance]:
    """The case and instance with index ``seed`` of the family."""
    case = draw_case(seed)
    return case, make_case_instance(case, seed)


# ---- the right-hand side, term by term -------------------------------------------------------------------------------


def bound_terms(inst: Instance) -> dict:
    """Every ingredient of eq. 3.7 for one instance: k, ε (:func:`lpft.theory.feature_error`), φ, ‖w*‖ and
    cos θ_k(R, S⊥) with R = rowspace(B0)."""
    return dict(k=inst.setting.k, eps=inst.eps, phi=theory.head_alignment_error(inst.v0, inst.v_star),
                w_norm=float(np.linalg.norm(inst.w_star)), cos_theta=theory.cos_theta_max(inst.B0, inst.Q_S_perp))


def paper_constant(k, w_norm):
    """κ = 1/(√k (1 + ‖w*‖)²): the constant of eq. 3.7 as printed."""
    return 1.0 / (np.sqrt(k) * (1.0 + np.asarray(w_norm, dtype=float)) ** 2)


def head_term(phi, w_norm):
    """g(φ) = min(φ, φ²/‖w*‖): the increasing function of the head-alignment error in the bound."""
    phi = np.asarray(phi, dtype=float)
    return np.minimum(phi, phi**2 / np.asarray(w_norm, dtype=float))


def eps_term(eps, eps_reading: str = "norm"):
    """What the bound subtracts: ε (``"norm"``, the setting's definition) or ε² (``"squared"``, as eq. 3.7 prints)."""
    if eps_reading not in theory.EPS_READINGS:
        raise ValueError(f"eps_reading must be one of {theory.EPS_READINGS}; got {eps_reading!r}")
    eps = np.asarray(eps, dtype=float)
    return eps if eps_reading == "norm" else eps**2


def rhs(terms: pd.DataFrame | dict, constant=None, eps_reading: str = "norm"):
    """The right-hand side κ·cos θ_k·g(φ) − ε, vectorised over instances (a DataFrame of :func:`bound_terms` rows,
    or one dict); equals :func:`lpft.theory.ft_lower_bound`. ``constant`` replaces κ (default :func:`paper_constant`)."""
    kappa = paper_constant(terms["k"], terms["w_norm"]) if constant is None else constant
    return kappa * terms["cos_theta"] * head_term(terms["phi"], terms["w_norm"]) - eps_term(terms["eps"], eps_reading)


def implied_constant(lhs, terms: pd.DataFrame, eps_reading: str = "norm"):
    """The largest κ for which the bound holds at each recorded point: (LHS + ε) / (cos θ_k · g(φ)).

    ``lhs`` is (N, T); returns (N, T), NaN where cos θ_k · g(φ) = 0 (there κ plays no role). The bound with constant
    κ holds at a point iff κ ≤ this value, whatever version of κ one has in mind.
    """
    denom = np.asarray(terms["cos_theta"] * head_term(terms["phi"], terms["w_norm"]), dtype=float)
    eps = np.asarray(eps_term(terms["eps"], eps_reading), dtype=float)
    ok = denom > 1e-12
    out = np.full(np.shape(lhs), np.nan)
    out[ok] = (lhs[ok] + eps[ok, None]) / denom[ok, None]
    return out


# ---- batched fine-tuning of the whole family -------------------------------------------------------------------------


def stable_lr(inst: Instance, scale: float = 0.3) -> float:
    """A GD step size for one instance: ``scale`` / (λ_max(XᵀX/n) · (‖v0‖² + ‖w*‖² + ‖B0‖₂²)).

    The Hessian of L̂ is at most about 2λ_max(XᵀX/n)(‖v‖² + ‖B‖₂²) and ‖v‖ stays of the order of max(‖v0‖, ‖w*‖), so
    scale < 1 is stable; 0.3 gives η ≈ 0.05 for the default setting (n = 40, m = 20, unit v*, small head).
    """
    lam = np.linalg.eigvalsh(inst.X.T @ inst.X / inst.X.shape[0])[-1]
    h = inst.v0 @ inst.v0 + inst.v_star @ inst.v_star + np.linalg.norm(inst.B0, 2) ** 2
    return float(scale / (lam * h))


TOL = 1e-10  # a slack below −TOL is a violation; an RHS above TOL is non-vacuous (round-off is not a result)
NEAR_MIN = 1e-6  # the arg-min of a flat slack curve moves with rounding: we give the times within this of the minimum


class BoundCheck(NamedTuple):
    """Result of :func:`check_bound`: one row of ``cases`` per instance and (N, T) arrays over the records."""

    cases: pd.DataFrame  # seed, setting, bound terms, rhs, lr, horizon
    steps: np.ndarray  # (T,) GD step of each record (the same for every instance)
    t: np.ndarray  # (N, T) gradient-flow time of each record (step × the instance's lr)
    lhs: np.ndarray  # (N, T) √L_ood(v(t), B(t))
    train: np.ndarray  # (N, T) training loss L̂
    head_dist: np.ndarray  # (N, T) ‖v(t) − Uv*‖ (U aligns B0 with B*)
    head_norm: np.ndarray  # (N, T) ‖v(t)‖

    def rhs(self, eps_reading: str = "norm") -> np.ndarray:
        """(N,) right-hand side of eq. 3.7 with ε read as ``eps_reading``."""
        return np.asarray(rhs(self.cases, eps_reading=eps_reading), dtype=float)

    def slack(self, eps_reading: str = "norm") -> np.ndarray:
        """(N, T) LHS − RHS at every (instance, record)."""
        return self.lhs - self.rhs(eps_reading)[:, None]

    def constant_ratio(self, eps_reading: str = "norm") -> np.ndarray:
        """(N, T) κ_needed/κ: :func:`implied_constant` over the printed κ (below 1 exactly where the bound fails)."""
        kappa = implied_constant(self.lhs, self.cases, eps_reading)
        return kappa / paper_constant(self.cases["k"], self.cases["w_norm"]).to_numpy()[:, None]

    def core_slack(self) -> np.ndarray:
        """(N, T) LHS − (cos θ_k(R, S⊥)‖v(t) − Uv*‖ − ε‖w*‖): the exact first step of the proof (≥ 0)."""
        c = self.cases
        lower = c["cos_theta"].to_numpy()[:, None] * self.head_dist - (c["eps"] * c["w_norm"]).to_numpy()[:, None]
        return self.lhs - lower


def _observer(T: dict):
    def observe(v, B):
        delta = torch.einsum("nkd,nk->nd", B, v) - T["w_star"]
        resid = torch.einsum("nid,nd->ni", T["X"], delta)  # X(w − w*) = XBᵀv − Y (padding rows give 0)
        return torch.stack([delta.pow(2).sum(-1), resid.pow(2).sum(-1) / T["n"],
                            torch.linalg.vector_norm(v - T["v_ref"], dim=-1), torch.linalg.vector_norm(v, dim=-1)], -1)
    return observe


def run_group(instances: list[Instance], lrs: np.ndarray, steps: int, record_every: int, compile: bool = False):
    """Batched GD for instances with one k (any n), instance i with its own step ``lrs[i]``.

    One batch needs one shape: X is padded with zero rows to the largest n. A zero row changes neither the gradient
    nor the rowspace, only the 1/n of the mean, and GD with step η on (aX, aY) is GD with step a²η on (X, Y); so
    feeding √(lrs[i]·n_max/n_i)·(X_i, Y_i) to a batch run with step 1 gives every instance exactly its own GD.
    Returns the steps of the records (T,) and an array (T, N, 4) of L_ood, L̂ (on the original data), ‖v − Uv*‖, ‖v‖.
    """
    N, d = len(instances), instances[0].B0.shape[1]
    n = np.array([inst.X.shape[0] for inst in instances])
    X, Y = torch.zeros(N, n.max(), d, dtype=torch.float64), torch.zeros(N, n.max(), dtype=torch.float64)
    for i, inst in enumerate(instances):
        X[i, :n[i]], Y[i, :n[i]] = torch.from_numpy(inst.X), torch.from_numpy(inst.Y)
    T = {key: torch.from_numpy(np.stack([getattr(inst, key) for inst in instances])) for key in ("B0", "v0", "w_star")}
    T["v_ref"] = torch.from_numpy(np.stack([theory.best_rotation(i.B0, i.B_star) @ i.v_star for i in instances]))
    T.update(X=X, n=torch.from_numpy(n.astype(np.float64)))
    a = torch.from_numpy(np.sqrt(lrs * n.max() / n))
    run = dynamics.fine_tune_batched(X * a[:, None, None], Y * a[:, None], T["B0"], T["v0"], lr=1.0, steps=steps,
                                   record_every=record_every, observe=_observer(T), compile=compile)
    return np.asarray(run.t), run.observed.numpy()


def case_row(seed: int, case: Case, inst: Instance, lr_scale: float) -> dict:
    """One row of :attr:`BoundCheck.cases`: the setting, the terms of the bound and the step size."""
    st = case.setting
    return dict(seed=seed, n=st.n, m=st.m, head=st.head,
                head_scale=st.head_scale if st.head == "random" else np.nan,
                head_angle=st.head_angle if st.head == "angle" else np.nan, head_norm=case.head_norm,
                target_norm=case.target_norm, c=float(inst.v0 @ inst.v_star / (inst.v_star @ inst.v_star)),
                **bound_terms(inst), lr=stable_lr(inst, lr_scale))


def check_bound(n_instances: int, seed: int = 0, steps: int = 2000, record_every: int = 10, lr_scale: float = 0.3,
                compile: bool = False) -> BoundCheck:
    """Draw instances ``seed, …, seed + n_instances − 1`` of the family, fine-tune each by GD for ``steps`` steps of
    its own stable step size (:func:`stable_lr` with ``lr_scale``), and record √L_ood, L̂, ‖v − Uv*‖ and ‖v‖ every
    ``record_every`` steps (and at step 0).

    Instances are grouped by k into one batched run each (:func:`run_group`); the result follows the seeds' order.
    """
    seeds = list(range(seed, seed + n_instances))
    drawn = [draw_instance(s) for s in seeds]
    cases = pd.DataFrame([case_row(s, case, inst, lr_scale) for s, (case, inst) in zip(seeds, drawn)])
    cases["rhs"] = rhs(cases)
    n_rec = steps // record_every + 1 + (steps % record_every > 0)
    obs = np.empty((n_instances, n_rec, 4))
    for _, idx in cases.groupby("k", sort=True).indices.items():
        rec_t, o = run_group([drawn[i][1] for i in idx], cases["lr"].to_numpy()[idx], steps, record_every, compile)
        obs[idx] = o.transpose(1, 0, 2)
    t = rec_t[None, :] * cases["lr"].to_numpy()[:, None]  # the batch ran with step 1: record time = step number
    cases["horizon"] = t[:, -1]
    return BoundCheck(cases, rec_t, t, np.sqrt(np.maximum(obs[..., 0], 0.0)), obs[..., 1], obs[..., 2], obs[..., 3])


# ---- summaries -------------------------------------------------------------------------------------------------------


def divergence_check(check: BoundCheck) -> dict:
    """GD stability: every recorded quantity finite, and the last training loss not above the one half-way (up to
    round-off: 1e-9 relative plus 1e-24 absolute)."""
    tr = check.train
    half = tr[:, tr.shape[1] // 2]
    finite = all(np.isfinite(a).all() for a in (tr, check.lhs, check.head_dist, check.head_norm))
    return dict(all_finite=bool(finite), n_not_decreasing=int(np.sum(tr[:, -1] > half * (1 + 1e-9) + 1e-24)),
                max_final_train=float(tr[:, -1].max()), frac_converged=float(np.mean(tr[:, -1] < 1e-8)))


def near_min_times(t: np.ndarray, values: np.ndarray, tol: float = NEAR_MIN) -> tuple[np.ndarray, np.ndarray]:
    """Per row of the (N, T) ``values`` at times ``t``: the first and last time within ``tol`` of the row's minimum."""
    near = values <= values.min(1, keepdims=True) + tol
    return np.where(near, t, np.inf).min(1), np.where(near, t, -np.inf).max(1)


def summary(check: BoundCheck, eps_reading: str = "norm") -> dict:
    """Headline numbers of the check of eq. 3.7 with ε read as ``eps_reading``.

    A pair (instance, record) is non-vacuous when RHS > TOL and violating when slack < −TOL. ``min_constant_ratio``
    is the smallest κ_needed/κ: the factor by which the printed constant must be multiplied for the bound to hold
    on every checked pair (≥ 1: it holds as printed). Where the smallest slack occurs: ``worst_t_lo`` to ``_hi``
    (:func:`near_min_times`), with ``worst_t_step`` between that instance's records.
    """
    r, slack = check.rhs(eps_reading), check.slack(eps_reading)
    nonvac = np.broadcast_to(r[:, None] > TOL, slack.shape)
    viol = slack < -TOL
    i, j = np.unravel_index(np.argmin(slack), slack.shape)
    t_lo, t_hi = near_min_times(check.t[i:i + 1], slack[i:i + 1])
    with np.errstate(divide="ignore"):
        ratio = np.where(nonvac, r[:, None] / check.lhs, np.nan)
    return dict(n_instances=len(r), n_pairs=slack.size, n_records=slack.shape[1],
                n_nonvacuous_instances=int((r > TOL).sum()), frac_nonvacuous_pairs=float(nonvac.mean()),
                min_slack=float(slack[i, j]), worst_index=int(i), worst_t_lo=float(t_lo[0]), worst_t_hi=float(t_hi[0]),
                worst_t_step=float(check.t[i, 1] - check.t[i, 0]), worst_lhs=float(check.lhs[i, j]),
                worst_rhs=float(r[i]),
                frac_violating_pairs=float(viol.mean()),
                frac_violating_nonvacuous_pairs=float(viol[nonvac].mean()) if nonvac.any() else float("nan"),
                n_violating_instances=int(viol.any(1).sum()), n_violating_at_t0=int(viol[:, 0].sum()),
                max_rhs_over_lhs=float(np.nanmax(ratio)) if nonvac.any() else float("nan"),
                min_constant_ratio=float(np.nanmin(check.constant_ratio(eps_reading))))


def per_instance(check: BoundCheck, eps_reading: str = "norm") -> pd.DataFrame:
    """The cases with, per instance, the smallest slack, the times within :data:`NEAR_MIN` of it (``t_min_slack_lo``
    to ``_hi``), min_t √L_ood and the smallest κ_needed/κ."""
    slack = check.slack(eps_reading)
    rel = check.constant_ratio(eps_reading)
    with np.errstate(all="ignore"):
        min_rel = np.where(np.isnan(rel).all(1), np.nan, np.nanmin(np.where(np.isnan(rel), np.inf, rel), 1))
    out = check.cases.copy()
    out["min_slack"] = slack.min(1)
    out["t_min_slack_lo"], out["t_min_slack_hi"] = near_min_times(check.t, slack)
    out["min_lhs"] = check.lhs.min(1)
    out["violating"] = (slack < -TOL).any(1)
    out["violating_pairs"] = (slack < -TOL).mean(1)
    out["min_constant_ratio"] = min_rel
    out["final_train"] = check.train[:, -1]
    return out


def per_group(check: BoundCheck, by: list[str], eps_reading: str = "norm") -> pd.DataFrame:
    """Per group of instances (e.g. by k and ‖w*‖): counts, violations, smallest slack and smallest κ_needed/κ."""
    df = per_instance(check, eps_reading)
    df["non_vacuous"] = check.rhs(eps_reading) > TOL
    out = df.groupby(by, sort=True).agg(instances=("seed", "size"), non_vacuous=("non_vacuous", "sum"),
                                        violating=("violating", "sum"), violating_pairs=("violating_pairs", "mean"),
                                        min_slack=("min_slack", "min"),
                                        min_constant_ratio=("min_constant_ratio", "min"))
    return out.reset_index()


def perfect_features_core(check: BoundCheck, phi_min: float = 1e-6) -> dict:
    """The qualitative claim at ε = 0: over the instances with φ > ``phi_min`` and cos θ_k > 0, the smallest
    min_t √L_ood, and the smallest and median ratio q = min_t √L_ood / (cos θ_k·g(φ)). q > 0 means the FT OOD error
    stays bounded away from 0, by a margin proportional to the geometry and the head term; q is the constant that
    would replace κ on these instances."""
    c = check.cases
    sel = ((c["eps"] < 1e-12) & (c["phi"] > phi_min) & (c["cos_theta"] > 1e-12)).to_numpy()
    scale = (c["cos_theta"] * head_term(c["phi"], c["w_norm"])).to_numpy()
    min_lhs = check.lhs.min(1)
    q = min_lhs[sel] / scale[sel]
    return dict(n=int(sel.sum()), min_lhs=float(min_lhs[sel].min()), min_ratio=float(q.min()),
                median_ratio=float(np.median(q)))


def ode_recheck(seed: int, eps_reading: str = "norm") -> dict:
    """Re-run instance ``seed`` by exact gradient flow (:func:`lpft.dynamics.fine_tune`, solver "ode") and return the
    smallest slack, min_t √L_ood and the smallest κ_needed/κ along the flow (GD differs from the flow by O(η))."""
    _, inst = draw_instance(seed)
    with warnings.catch_warnings():  # a slowly converging instance stops at the horizon; the trajectory is still valid
        warnings.simplefilter("ignore", RuntimeWarning)
        _, _, traj = dynamics.fine_tune(inst.X, inst.Y, inst.B0, inst.v0, solver="ode", return_trajectory=True)
    lhs = np.sqrt(np.maximum(theory.ood_error(traj.v, traj.B, inst), 0.0))
    terms = pd.DataFrame([bound_terms(inst)])
    r = float(rhs(terms, eps_reading=eps_reading).iloc[0])
    rel = implied_constant(lhs[None], terms, eps_reading) / paper_constant(terms["k"], terms["w_norm"]).to_numpy()[:, None]
    return dict(seed=seed, min_slack=float(lhs.min() - r), min_lhs=float(lhs.min()), rhs=r,
                min_constant_ratio=float(np.nanmin(rel)) if np.isfinite(rel).any() else float("nan"),
                t_end=float(traj.t[-1]))


# ---- exact end points: k = 1, ε = 0 ----------------------------------------------------------------------------------


def k1_fitted_error(cos_theta, c, s):
    """√L_ood at the fitted end point of gradient flow for k = 1, ε = 0, v0 = c·v*, ‖v*‖ = s (the error on S is 0
    once the training data are fitted). Valid when v ends with the sign of v*: c ≥ 0, or a small negative c (a small
    random head), where the data term turns v around before the features move.

    With B = b⊥ + β (β ∈ S, ‖b⊥‖² = a = cos²θ), fitting S means vβ = s·b_S, and balancedness
    v² − ‖B‖² = c²s² − 1 then gives u = v² as the positive root of u² − (a + c²s² − 1)u − s²(1 − a) = 0;
    the error is √a·|√u − s|, evaluated as √a·s⁴|1 − c²| / ((s² + u − A)(s + √u)), A = a + c²s² − 1 (the quadratic
    at u = s² is s⁴(1 − c²)), which keeps full precision for tiny targets and heads next to v*.
    """
    a = np.asarray(cos_theta, dtype=float) ** 2
    c2 = np.asarray(c, dtype=float) ** 2
    A, C = a + c2 * s * s - 1.0, s * s * (1.0 - a)
    root = np.sqrt(A * A + 4.0 * C)
    u = np.where(A >= 0, (A + root) / 2.0, 2.0 * C / np.maximum(root - A, 1e-300))  # no cancellation either way
    # s² − u without cancellation: the quadratic at s² equals s⁴(1 − c²) = (s² − u)(s² + u − A)
    return np.sqrt(a) * s**4 * np.abs(1.0 - c2) / ((s * s + u - A) * (s + np.sqrt(u)))


def k1_ratio(cos_theta, c, s):
    """RHS/LHS of eq. 3.7 at the fitted end point for k = 1, ε = 0, v0 = c·v*, ‖v*‖ = s (above 1: violated).

    Here φ = s²√|c² − 1|, so RHS = cos θ · min(φ, φ²/s)/(1 + s)². For a small head (c → 0) and s = 1 it is
    1/(4(1 − √u)) with u² + sin²θ·u − sin²θ = 0: above 1 exactly when sin²θ > 81/112 (cos θ < √(31/112) ≈ 0.526),
    at most 1/(4(1 − ((√5 − 1)/2)^{1/2})) ≈ 1.169 as cos θ → 0. Over all c, s and θ the ratio stays below 2, its
    limit for c = 0 as s, cos θ → 0 (2 sin²θ) and for c → 1 as s → ∞ (:func:`k1_ratio_limit`).
    """
    phi = s**2 * np.sqrt(np.abs(np.asarray(c, dtype=float) ** 2 - 1.0))
    rhs_ = np.asarray(cos_theta, dtype=float) * head_term(phi, s) / (1.0 + s) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):  # c = 1 or cos θ = 0: both sides 0, the ratio is NaN
        return rhs_ / k1_fitted_error(cos_theta, c, s)


def k1_ratio_limit(cos_theta, s):
    """lim_{c→1} :func:`k1_ratio` = 2(s² + 1 − cos²θ)/(1 + s)² (a head starting next to v*)."""
    a = np.asarray(cos_theta, dtype=float) ** 2
    return 2.0 * (s * s + 1.0 - a) / (1.0 + s) ** 2


K1_THRESHOLD_COS = float(np.sqrt(31.0 / 112.0))  # small head, ‖w*‖ = 1: eq. 3.7 fails at the end iff cos θ < this
K1_WORST_RATIO = float(1.0 / (4.0 * (1.0 - np.sqrt((np.sqrt(5.0) - 1.0) / 2.0))))  # its supremum, as cos θ → 0


def k1_closed_form_check(check: BoundCheck, train_tol: float = 1e-12) -> dict:
    """Compare :func:`k1_fitted_error` with GD's last √L_ood on the family's k = 1, ε = 0 instances with c ≥ 0 whose
    training loss fell below ``train_tol``: number compared and the largest relative difference."""
    c = check.cases
    sel = ((c["k"] == 1) & (c["eps"] < 1e-12) & (c["c"] >= 0)).to_numpy() & (check.train[:, -1] < train_tol)
    closed = k1_fitted_error(c["cos_theta"].to_numpy()[sel], c["c"].to_numpy()[sel], c["target_norm"].to_numpy()[sel])
    gd = check.lhs[sel, -1]
    return dict(n=int(sel.sum()), max_rel_diff=float(np.max(np.abs(closed - gd) / gd)) if sel.any() else float("nan"))


def k1_flow_examples(target_norms, ms, seed: int = 0, head_scale: float = 1e-3) -> pd.DataFrame:
    """k = 1, ε = 0, a small random head: for each m (which sets cos θ) and target norm ‖w*‖, run the exact flow
    (n = min(2m, d − 2) training examples, inside the paper's setting) and return RHS/LHS at its end point next to the closed
    form :func:`k1_ratio`."""
    rows = []
    for m in ms:
        for s in target_norms:
            case = Case(Setting(d=D, k=1, m=m, n=min(2 * m, D - 2), eps=0.0, head_scale=head_scale), float(s), 1.0)
            inst = make_case_instance(case, seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                v, B = dynamics.fine_tune(inst.X, inst.Y, inst.B0, inst.v0, solver="ode", horizon=1e5)
            terms = bound_terms(inst)
            c = float(inst.v0 @ inst.v_star / (inst.v_star @ inst.v_star))
            rows.append(dict(m=m, cos_theta=terms["cos_theta"], target_norm=float(s), c=c,
                             ratio_flow=theory.ft_lower_bound(inst) / float(np.sqrt(theory.ood_error(v, B, inst))),
                             ratio_closed=float(k1_ratio(terms["cos_theta"], c, float(s)))))
    return pd.DataFrame(rows)
