"""Parameter sweeps of the two-layer linear setting (Section 3 of the LP-FT paper, Kumar et al., ICLR 2022).

A sweep trains LP, FT and LP-FT (FT and LP-FT by exact gradient flow) on ``n_seeds`` random instances per
grid point and returns one long table, one row per (grid value, instance, method), with the per-instance geometry of
Section 3 alongside: cos θ_max(R*, S⊥), the head-alignment error φ, the right-hand side of the FT lower bound
(Theorem 3.1, eq. 3.7 of the ICLR 2022 submission; :func:`lpft.theory.ft_lower_bound`), and 4‖P_S⊥ w*‖².
:func:`spread` summarises a column over instances (mean and a quantile band), :func:`plot_band` draws it.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lpft import dynamics, theory
from lpft.paper import METHODS  # the paper's three methods (one home: lpft.paper)


def train(inst: theory.Instance, method: str, **ode_options):
    """(v, B) after ``method`` on one instance: LP (least squares on B0), FT from (v0, B0) or LP-FT (Section 3)."""
    if method == "LP":
        return theory.linear_probe(inst.X, inst.Y, inst.B0), inst.B0
    if method == "FT":
        return dynamics.fine_tune(inst.X, inst.Y, inst.B0, inst.v0, solver="ode", **ode_options)
    if method == "LP-FT":
        return dynamics.lp_ft(inst.X, inst.Y, inst.B0, solver="ode", **ode_options)
    raise ValueError(f"method must be one of {METHODS}; got {method!r}")


def geometry(inst: theory.Instance) -> dict:
    """The quantities of Section 3's FT lower bound for one instance, plus the 180-degree reference 4‖P_S⊥ w*‖².

    ``dim_S``, ``cos_theta_max`` (of R* = rowspace(B*), the quantity of the wedge :func:`wedge`; NaN when
    S⊥ = {0}), ``phi`` (head-alignment error of v0), ``bound`` (right-hand side of Theorem 3.1 on √L_ood, with the
    paper's R = rowspace(B0); may be negative = vacuous; NaN when S⊥ = {0}, where the theorem does not apply),
    ``perp_flip``, and the initial head's norm ``v0_norm``.
    """
    w_perp = inst.Q_S_perp.T @ inst.w_star
    has_perp = inst.Q_S_perp.shape[1] > 0
    return {"dim_S": inst.Q_S.shape[1], "cos_theta_max": theory.cos_theta_max(inst.B_star, inst.Q_S_perp),
            "v0_norm": float(np.linalg.norm(inst.v0)), "phi": theory.head_alignment_error(inst.v0, inst.v_star),
            "bound": theory.ft_lower_bound(inst) if has_perp else float("nan"),
            "perp_flip": 4.0 * float(w_perp @ w_perp)}


def evaluate(inst: theory.Instance, methods=METHODS, **ode_options) -> list[dict]:
    """Train each method on ``inst`` and measure it: one dict per method with OOD and ID excess error, the head's
    final distance ‖v − v*‖ and norm ‖v‖, the feature change ‖B − B0‖_F and the final training loss."""
    rows = []
    for method in methods:
        v, B = train(inst, method, **ode_options)
        rows.append({"method": method, "ood": float(theory.ood_error(v, B, inst)),
                     "id": float(theory.id_error(v, B, inst)), "head_dist": float(np.linalg.norm(v - inst.v_star)),
                     "head_norm": float(np.linalg.norm(v)),
                     "feature_change": float(np.linalg.norm(B - inst.B0)),
                     "train_loss": theory.train_loss(v, B, inst.X, inst.Y)})
    return rows


def sweep(settings: dict, n_seeds: int, seed: int, methods=METHODS, **ode_options) -> pd.DataFrame:
    """Run ``methods`` on instances ``seed + i`` (i < n_seeds) of every ``settings[x]`` (x: the grid value).

    Returns the long table with columns x, instance, the :func:`geometry` columns and the :func:`evaluate` columns.
    """
    rows = []
    for x, setting in settings.items():
        for i in range(n_seeds):
            inst = theory.make_instance(setting, seed=seed + i)
            geo = geometry(inst)
            rows += [{"x": x, "instance": i, **geo, **r} for r in evaluate(inst, methods, **ode_options)]
    return pd.DataFrame(rows)


def spread(df: pd.DataFrame, value: str, by=("x", "method"), lo: float = 0.1, hi: float = 0.9) -> pd.DataFrame:
    """Mean of ``value`` over instances, with the ``lo`` and ``hi`` quantiles (the band drawn by :func:`plot_band`)."""
    g = df.groupby(list(by), sort=False)[value]
    return pd.DataFrame({"mean": g.mean(), "lo": g.quantile(lo), "hi": g.quantile(hi)}).reset_index()


def plot_band(ax, df: pd.DataFrame, value: str, method: str, color, label: str | None = None, **line):
    """Mean of ``value`` against x for ``method`` as a line with markers, and its quantile band (:func:`spread`)."""
    s = spread(df[df["method"] == method], value)
    ax.plot(s["x"], s["mean"], "o-", color=color, label=label or method, ms=4, **line)
    ax.fill_between(s["x"], s["lo"], s["hi"], color=color, alpha=0.2, lw=0)


def wide(df: pd.DataFrame, value: str, methods=METHODS) -> pd.DataFrame:
    """One row per grid value, one column per method: the mean of ``value`` over instances."""
    s = spread(df[df["method"].isin(methods)], value)
    return s.pivot(index="x", columns="method", values="mean")[list(methods)]


def wedge(df: pd.DataFrame, eps: float) -> pd.DataFrame:
    """Per FT run, the interval that Section 3's invariant puts around the OOD error once FT fits S (Σ = I):

    ID error + (cos θ_max·δ − ε‖v‖)₊² ≤ L_ood ≤ ID error + (δ + ε‖v‖)², δ = ‖v − v*‖, from
    P_S⊥(Bᵀv − w*) = P_S⊥B*ᵀ(v − v*) + P_S⊥(B0 − B*)ᵀv and ‖B0 − B*‖₂ ≤ ε. Columns ``lower``, ``upper``, ``inside``.
    """
    slack = eps * df["head_norm"]
    lower = df["id"] + (df["cos_theta_max"] * df["head_dist"] - slack).clip(lower=0) ** 2
    upper = df["id"] + (df["head_dist"] + slack) ** 2
    tol = 1e-12 + 1e-9 * upper
    return pd.DataFrame({"lower": lower, "upper": upper,
                         "inside": (df["ood"] >= lower - tol) & (df["ood"] <= upper + tol)})


def clipped_bound_sq(bound: float) -> float:
    """Theorem 3.1's bound on √L_ood turned into a bound on L_ood: max(bound, 0)² (0 when it is vacuous)."""
    return max(bound, 0.0) ** 2 if math.isfinite(bound) else float("nan")
