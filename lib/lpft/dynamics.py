"""How FT and LP-FT train a two-layer linear network f(x) = vᵀBx (Section 3 of the LP-FT paper, Kumar et al., ICLR
2022): gradient flow, solved as an ODE; gradient descent in NumPy; and gradient descent batched over many instances as
one torch program.

The training loss is the mean squared error L̂(v, B) = ‖XBᵀv − Y‖² / n (the paper writes the sum; the factor 1/n only
rescales time), and gradient flow is

    ∂ₜv = (2/n) B Xᵀ r,    ∂ₜB = (2/n) v rᵀ X,    r = Y − X Bᵀ v.                    (GF)

FT starts from (v0, B0); LP-FT from (v_lp, B0), v_lp the LP head (:func:`lpft.theory.linear_probe`). The setting, the
instances and the errors are :mod:`lpft.theory`. Every function that takes data accepts NumPy float64 arrays or torch
tensors and returns the same kind.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch
from scipy.integrate import solve_ivp

# the array helpers are shared with lpft.theory ("NumPy in, NumPy out; torch in, torch out")
from lpft.theory import Instance, _check_shapes, _is_torch, _like, _np, linear_probe, train_loss

# ----------------------------------------------------------------------------------------------------------------
# FT: gradient flow (accurate ODE) and gradient descent (batched over instances)
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Trajectory:
    """(v(t), B(t)) at times ``t`` (gradient-flow time; for GD t = step × lr)."""

    t: np.ndarray  # (T,)
    v: np.ndarray  # (T, k) or (T, N, k)
    B: np.ndarray  # (T, k, d) or (T, N, k, d)


def gradient_flow_rhs(v: np.ndarray, B: np.ndarray, X: np.ndarray, Y: np.ndarray):
    """The right-hand side of (GF): returns (∂ₜv, ∂ₜB)."""
    n = X.shape[0]
    r = Y - X @ (B.T @ v)
    g = X.T @ r  # (d,)
    return (2.0 / n) * (B @ g), (2.0 / n) * np.outer(v, g)


def _ft_ode(X, Y, B0, v0, horizon, tol, rtol, atol, n_eval):
    k, d = B0.shape

    def rhs(_t, z):
        dv, dB = gradient_flow_rhs(z[:k], z[k:].reshape(k, d), X, Y)
        return np.concatenate([dv, dB.ravel()])

    def converged(_t, z):
        return math.log(max(train_loss(z[:k], z[k:].reshape(k, d), X, Y), 1e-300)) - math.log(tol)

    converged.terminal = True
    converged.direction = -1
    z0 = np.concatenate([v0, B0.ravel()])
    if train_loss(v0, B0, X, Y) <= tol:  # already fitted (e.g. LP-FT at ε = 0): the flow is (numerically) at rest
        return Trajectory(np.zeros(1), v0[None].copy(), B0[None].copy())
    t_eval = np.concatenate([[0.0], np.geomspace(1e-3, horizon, n_eval - 1)]) if n_eval else None
    sol = solve_ivp(rhs, (0.0, horizon), z0, method="DOP853", rtol=rtol, atol=atol, events=converged,
                    t_eval=t_eval, dense_output=False)
    if sol.status == -1:
        raise RuntimeError(f"ODE integration failed: {sol.message}")
    t, Z = sol.t, sol.y.T
    if not sol.t_events[0].size:
        warnings.warn(f"fine_tune: the training loss did not reach tol={tol:g} by t={horizon:g}; "
                      "pass a larger horizon", RuntimeWarning, stacklevel=3)
    if sol.t_events[0].size:  # stopped at convergence: keep the final state as the last point
        t = np.concatenate([t, sol.t_events[0]])
        Z = np.concatenate([Z, sol.y_events[0]])
    return Trajectory(t, Z[:, :k], Z[:, k:].reshape(-1, k, d))


def fine_tune(X, Y, B0, v0, *, solver: str = "ode", lr: float = 0.05, steps: int = 20_000,
              horizon: float = 2_000.0, tol: float = 1e-20, rtol: float = 1e-11, atol: float = 1e-13,
              n_eval: int = 200, return_trajectory: bool = False):
    """FT: gradient flow on L̂ from (v0, B0), run until the training loss is below ``tol`` (or the horizon ends).

    solver="ode": the flow (GF) itself, integrated by DOP853 (``rtol``/``atol``) up to time ``horizon``, stopping when
    L̂ ≤ ``tol``; the trajectory is sampled at ``n_eval`` log-spaced times.
    solver="gd": plain gradient descent in the original coordinates (:func:`numpy_gd`), step ``lr``, at most
    ``steps`` steps, stopping when L̂ ≤ ``tol``; time t = step × lr. For many instances use
    :func:`fine_tune_batched`, which gives the same iterates much faster.

    Returns ``(v, B)``, or ``(v, B, Trajectory)`` with ``return_trajectory=True``.
    """
    _check_shapes(X, Y, B0, v0)
    as_torch = _is_torch(X, Y, B0, v0)
    device = next((a.device for a in (X, Y, B0, v0) if isinstance(a, torch.Tensor)), None)
    Xn, Yn, B0n, v0n = map(_np, (X, Y, B0, v0))
    if solver == "ode":
        traj = _ft_ode(Xn, Yn, B0n, v0n, horizon, tol, rtol, atol, n_eval)
    elif solver == "gd":
        traj = numpy_gd(Xn, Yn, B0n, v0n, lr, steps, tol=tol, record_every=max(1, steps // max(n_eval, 1)))
    else:
        raise ValueError(f"solver must be 'ode' or 'gd'; got {solver!r}")
    v, B = _like(traj.v[-1].copy(), as_torch, device), _like(traj.B[-1].copy(), as_torch, device)
    if return_trajectory:
        return v, B, traj
    return v, B


def lp_ft(X, Y, B0, **options):
    """LP-FT: :func:`fine_tune` started from the LP head (v_lp^∞, B0). Returns ``(v, B)`` (and a trajectory on
    request)."""
    return fine_tune(X, Y, B0, linear_probe(X, Y, B0), **options)


def numpy_gd(X, Y, B0, v0, lr: float, steps: int, tol: float = 0.0, record_every: int | None = None) -> Trajectory:
    """Gradient descent on L̂ for one instance, literally: v ← v + η (2/n) B Xᵀr,  B ← B + η (2/n) v rᵀX.

    Both layers use the gradient at the current point. Stops after ``steps`` steps or when L̂ ≤ ``tol``. Records
    (v, B) every ``record_every`` steps (and at the end). This is also the per-instance baseline of the benchmark.
    """
    v, B = np.array(v0, dtype=np.float64), np.array(B0, dtype=np.float64)
    c = 2.0 * lr / X.shape[0]
    ts, vs, Bs = [0.0], [v.copy()], [B.copy()]
    i = 0
    while i < steps:
        r = Y - X @ (B.T @ v)
        if tol > 0 and r @ r / X.shape[0] <= tol:
            break
        g = X.T @ r
        v, B = v + c * (B @ g), B + c * np.outer(v, g)
        i += 1
        if record_every and i % record_every == 0:
            ts.append(i * lr), vs.append(v.copy()), Bs.append(B.copy())
    if ts[-1] != i * lr:
        ts.append(i * lr), vs.append(v.copy()), Bs.append(B.copy())
    return Trajectory(np.array(ts), np.array(vs), np.array(Bs))


# ---- batched gradient descent: many instances as one tensor program ---------------------------------------------
#
# GD only ever adds rows of the form v rᵀX to B, so B(t) = B0 + (changes inside S) (invariant 1). Write X = U diag(σ) Vᵀ
# (thin SVD). In the coordinates of S given by V, the features are Bᵀ_S := (B V)ᵀ (p×k), and one GD step is exactly
#
#     a = Vᵀ Bᵀ v = B_S ᵀ v,   s = σ ∘ (Uᵀ Y − σ ∘ a),   v ← v + c B_S s,   B_S ← B_S + c v sᵀ,   c = 2η/n,
#
# elementwise in the singular directions: the data term of the gradient is diagonal there. This is the same sequence
# of iterates as :func:`numpy_gd` (tested to 1e-10), at a fraction of the memory traffic.


class BatchedRun(NamedTuple):
    """Result of :func:`fine_tune_batched` (float64 torch tensors on the CPU)."""

    t: np.ndarray  # (T,) times step × lr of the records
    v: torch.Tensor  # (T, N, k) recorded heads (only the final one when observe is given)
    B: torch.Tensor  # (T, N, k, d) recorded features (only the final one when observe is given)
    observed: torch.Tensor | None  # (T, N, ...) values of observe(v, B) at the records
    steps_taken: int


def _gd_step_svd(v, BT, lam, h, c):
    """One GD step in the singular coordinates: v (N,k), BT = (B V)ᵀ (N,p,k); returns the new (v, BT)."""
    a = (BT * v[:, None, :]).sum(-1)  # (N,p): Vᵀ Bᵀ v
    s = h - lam * a  # σ ∘ (q − σ ∘ a)
    return v + c * (BT * s[:, :, None]).sum(1), BT + c * s[:, :, None] * v[:, None, :]


def _sq_residual_svd(v, BT, q, sigma):
    """‖Uᵀ(Y − X Bᵀ v)‖² per instance (the fittable part of n·L̂)."""
    resid = q - sigma * (BT * v[:, None, :]).sum(-1)
    return (resid * resid).sum(-1)


_compiled_step: Callable | None = None


def fine_tune_batched(X: torch.Tensor, Y: torch.Tensor, B0: torch.Tensor, v0: torch.Tensor, *, lr: float,
                      steps: int, tol: float = 0.0, record_every: int | None = None,
                      observe: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                      compile: bool = False) -> BatchedRun:
    """Gradient descent on L̂ for N instances at once: one tensor program, no Python loop over instances.

    Shapes: X (N, n, d), Y (N, n), B0 (N, k, d), v0 (N, k). Runs ``steps`` steps, or fewer once every instance has
    L̂ ≤ ``tol`` (checked every 100 steps). Every ``record_every`` steps (and at step 0 and the end) it records
    (v, B), or only ``observe(v, B)`` when given (e.g. per-instance OOD errors), which keeps memory small.
    ``compile=True`` runs the step through ``torch.compile`` (worth it from about 10⁵ instance-steps).
    """
    global _compiled_step
    if X.ndim != 3 or Y.shape != X.shape[:2] or B0.ndim != 3 or B0.shape[-1] != X.shape[-1] \
            or v0.shape != B0.shape[:2] or B0.shape[0] != X.shape[0]:
        raise ValueError("expected X (N,n,d), Y (N,n), B0 (N,k,d), v0 (N,k); got "
                         f"{tuple(X.shape)}, {tuple(Y.shape)}, {tuple(B0.shape)}, {tuple(v0.shape)}")
    X, Y, B0, v0 = (a.to(torch.float64) for a in (X, Y, B0, v0))
    n = X.shape[1]
    U, sigma, Vt = torch.linalg.svd(X, full_matrices=False)  # (N,n,p), (N,p), (N,p,d)
    p = int((sigma > 1e-10 * sigma[:, :1]).sum(-1).max())  # the largest rank; smaller ranks keep σ = 0 directions
    U, sigma, Vt = U[..., :p], sigma[:, :p], Vt[:, :p]
    q = torch.einsum("nip,ni->np", U, Y)
    lam, h = sigma * sigma, sigma * q
    y_perp = (Y * Y).sum(-1) - (q * q).sum(-1)  # ‖Y‖² − ‖UᵀY‖²: the part of Y that no predictor can fit
    BT0 = torch.einsum("nkd,npd->npk", B0, Vt).contiguous()
    c = torch.tensor(2.0 * lr / n, dtype=torch.float64)
    step = _gd_step_svd
    if compile:
        if _compiled_step is None:
            _compiled_step = torch.compile(_gd_step_svd, fullgraph=True, dynamic=False)
        step = _compiled_step

    def features(BT):
        return B0 + torch.einsum("npk,npd->nkd", BT - BT0, Vt)

    v, BT = v0.clone(), BT0.clone()
    ts, vs, Bs, obs = [], [], [], []

    def record(i):
        ts.append(i * lr)
        B = features(BT)
        if observe is not None:
            obs.append(observe(v, B))
        else:
            vs.append(v.clone()), Bs.append(B)

    if record_every:
        record(0)
    i = 0
    with torch.no_grad():
        while i < steps:
            v, BT = step(v, BT, lam, h, c)
            i += 1
            if record_every and i % record_every == 0:
                record(i)
            if tol > 0 and i % 100 == 0 and bool(((_sq_residual_svd(v, BT, q, sigma) + y_perp) / n <= tol).all()):
                break
    if not ts or ts[-1] != i * lr:
        record(i)
    B_final = features(BT)
    return BatchedRun(np.array(ts), torch.stack(vs) if vs else v[None], torch.stack(Bs) if Bs else B_final[None],
                      torch.stack(obs) if obs else None, i)


def stack_instances(instances: list[Instance]) -> dict[str, torch.Tensor]:
    """Stack the arrays of several instances of one setting into float64 tensors with a leading instance axis."""
    keys = ("X", "Y", "B0", "v0", "B_star", "v_star", "Sigma_id", "Sigma_ood")
    out = {key: torch.from_numpy(np.stack([getattr(inst, key) for inst in instances])) for key in keys}
    out["w_star"] = torch.einsum("nkd,nk->nd", out["B_star"], out["v_star"])
    return out


def batched_excess_risk(v: torch.Tensor, B: torch.Tensor, w_star: torch.Tensor, Sigma: torch.Tensor):
    """Per-instance (w − w*)ᵀ Σ (w − w*) with per-instance Σ: v (N,k), B (N,k,d), w_star (N,d), Sigma (N,d,d)."""
    delta = torch.einsum("nkd,nk->nd", B, v) - w_star
    return torch.einsum("nd,nde,ne->n", delta, Sigma, delta)
