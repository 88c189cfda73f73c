"""Two-layer linear networks f(x) = vᵀBx: the setting and results of Section 3 of the LP-FT paper.

Notation follows the paper (Kumar et al., ICLR 2022):

* ``B_star`` (k×d, orthonormal rows) and ``v_star`` (k,) define the truth y = v*ᵀB*x; ``w_star = B_starᵀ v_star``.
* ``B0`` (k×d, orthonormal rows, as the paper assumes) are the pretrained features, with feature error
  ε = min_U ‖B0 − U B*‖₂ over orthogonal k×k matrices U (:func:`feature_error`).
* ``X`` (n×d) are the training inputs; **S = rowspace(X)** is the ID subspace, ``S_perp`` its complement.
* LP fits the head on frozen ``B0``; FT runs gradient flow on (v, B) from (v0, B0); LP-FT is FT from the LP head.

The training loss is the mean squared error L̂(v, B) = ‖XBᵀv − Y‖² / n. The paper writes the sum ‖XBᵀv − Y‖²;
the factor 1/n only rescales time, and keeps one step size sensible for every n. Gradient flow is

    ∂ₜv = (2/n) B Xᵀ r,    ∂ₜB = (2/n) v rᵀ X,    r = Y − X Bᵀ v.                    (GF)

Every function that takes data accepts NumPy float64 arrays or torch tensors and returns the same kind.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np
import torch
from scipy.integrate import solve_ivp

# ----------------------------------------------------------------------------------------------------------------
# array helpers: the public API is "NumPy in, NumPy out; torch in, torch out"
# ----------------------------------------------------------------------------------------------------------------


def _is_torch(*arrays) -> bool:
    return any(isinstance(a, torch.Tensor) for a in arrays)


def _np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy().astype(np.float64)
    return np.asarray(a, dtype=np.float64)


def _like(a: np.ndarray, template_is_torch: bool, device=None):
    if template_is_torch:
        return torch.as_tensor(a, dtype=torch.float64, device=device)
    return a


def _check_shapes(X, Y, B0, v0=None):
    X, Y, B0 = np.shape(X), np.shape(Y), np.shape(B0)
    if len(X) != 2:
        raise ValueError(f"X must have shape (n, d); got {X}")
    n, d = X
    if Y != (n,):
        raise ValueError(f"Y must have shape (n,) = ({n},) to match X of shape {X}; got {Y}")
    if len(B0) != 2 or B0[1] != d:
        raise ValueError(f"B0 must have shape (k, d) with d = {d} (the columns of X); got {B0}")
    if v0 is not None and np.shape(v0) != (B0[0],):
        raise ValueError(f"v0 must have shape (k,) = ({B0[0]},) to match B0 of shape {B0}; got {np.shape(v0)}")


# ----------------------------------------------------------------------------------------------------------------
# geometry
# ----------------------------------------------------------------------------------------------------------------


def orthonormal_basis(A: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """Columns: an orthonormal basis of the column space of ``A`` (numerical rank by SVD)."""
    U, s, _ = np.linalg.svd(np.atleast_2d(A), full_matrices=False)
    rank = int(np.sum(s > tol * max(A.shape) * (s[0] if s.size else 0.0)))
    return U[:, :rank]


def projector(Q: np.ndarray) -> np.ndarray:
    """Orthogonal projector Q Qᵀ onto the span of the orthonormal columns of ``Q``."""
    return Q @ Q.T


def id_subspace(X) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal bases ``(Q_S, Q_S_perp)`` of S = rowspace(X) and of its complement S⊥ (columns, d×m and d×(d−m))."""
    X = _np(X)
    _, s, Vt = np.linalg.svd(X, full_matrices=True)
    m = int(np.sum(s > 1e-10 * max(X.shape) * s[0]))
    return Vt[:m].T, Vt[m:].T


def cos_theta_max(B, Q_S_perp: np.ndarray) -> float:
    """cos θ_max(R, S⊥): the cosine of the largest principal angle between R = rowspace(B) and S⊥.

    It is the smallest singular value of Q_S⊥ᵀ Q_R (Section 3). It is positive when every direction of R has a
    component outside S, and 0 when some feature direction lies entirely in S. NaN when S⊥ = {0}.
    """
    Q_R = orthonormal_basis(_np(B).T)
    if Q_S_perp.shape[1] == 0:
        return float("nan")
    s = np.linalg.svd(Q_S_perp.T @ Q_R, compute_uv=False)
    if s.size < Q_R.shape[1]:  # dim S⊥ < dim R: some direction of R has no partner in S⊥
        return 0.0
    return float(s.min())


# ----------------------------------------------------------------------------------------------------------------
# the generative setting
# ----------------------------------------------------------------------------------------------------------------


class Setting(NamedTuple):
    """Sizes of one instance of the two-layer linear setting (one field per symbol of Section 3)."""

    d: int = 50  # input dimension
    k: int = 5  # feature dimension (k < d)
    m: int = 20  # dimension of the ID subspace S (the inputs span it when n ≥ m)
    n: int = 40  # number of training examples
    eps: float = 0.0  # pretrained feature error ε = min_U ‖B0 − U B*‖₂ (0 ≤ ε ≤ √2: B0 has orthonormal rows)
    head: str = "random"  # head initialisation for FT: "random" (v0 ~ head_scale·N(0, I)) or "angle"
    head_scale: float = 1e-3  # σ of the random head
    head_angle: float = 0.0  # angle (degrees) between v0 and v* for head="angle"; ‖v0‖ = ‖v*‖
    sigma_ood: str = "identity"  # OOD second moment Σ: "identity" (isotropic) or "perp" (only S⊥)

    def outside_paper_setting(self) -> list[str]:
        """The conditions of the paper's setting that these sizes break (empty: inside it).

        The ICLR 2022 submission, Section 3.1: "We consider an overparameterized setting where 1 ≤ k < n < d and
        k < d − n." Here n is the number of training examples; they span S, of dimension min(n, m), which the paper's
        generic inputs make n, so k < min(n, m) is required as well (k < d − dim S then follows from k < d − n).
        """
        d, k, n = self.d, self.k, self.n
        checks = {"1 ≤ k": 1 <= k, "k < n": k < n, "n < d": n < d, "k < d − n": k < d - n,
                  "k < dim S = min(n, m)": k < min(n, self.m)}
        return [name for name, ok in checks.items() if not ok]


@dataclass
class Instance:
    """One draw of the setting: truth, pretrained features, training data and the ID/OOD second moments."""

    setting: Setting
    B_star: np.ndarray  # (k, d), orthonormal rows
    v_star: np.ndarray  # (k,), unit norm
    B0: np.ndarray  # (k, d) pretrained features
    v0: np.ndarray  # (k,) FT head initialisation
    X: np.ndarray  # (n, d) training inputs, rows in S
    Y: np.ndarray  # (n,) labels y = v*ᵀB*x (noiseless)
    Q_S: np.ndarray  # (d, m) orthonormal basis of S = rowspace(X)
    Q_S_perp: np.ndarray  # (d, d−m) orthonormal basis of S⊥
    Sigma_id: np.ndarray = field(repr=False)  # (d, d) second moment of P_id = N(0, P_S)
    Sigma_ood: np.ndarray = field(repr=False)  # (d, d) second moment of P_ood

    @property
    def w_star(self) -> np.ndarray:
        return self.B_star.T @ self.v_star

    @property
    def eps(self) -> float:
        """The feature error min_U ‖B0 − U B*‖₂ of this instance (:func:`feature_error`)."""
        return feature_error(self.B0, self.B_star)

    @property
    def P_S(self) -> np.ndarray:
        return projector(self.Q_S)

    @property
    def P_S_perp(self) -> np.ndarray:
        return projector(self.Q_S_perp)


def random_orthonormal_rows(k: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """A k×d matrix with orthonormal rows, uniformly distributed (QR of a Gaussian matrix, signs fixed)."""
    Q, R = np.linalg.qr(rng.standard_normal((d, k)))
    return (Q * np.sign(np.diag(R))).T


def head_at_angle(v_star: np.ndarray, angle_deg: float, rng: np.random.Generator) -> np.ndarray:
    """A head v0 with ‖v0‖ = ‖v*‖ at ``angle_deg`` degrees from v* (in a random plane containing v*).

    With k = 1 there is no plane: only 0° (v0 = v*) and 180° (v0 = −v*) exist, and any other angle is refused.
    """
    if not 0.0 <= angle_deg <= 180.0:
        raise ValueError(f"head_angle must be in [0, 180] degrees; got {angle_deg}")
    norm = float(np.linalg.norm(v_star))
    if norm == 0.0:
        raise ValueError("v* = 0: a head at an angle from it is undefined")
    v_hat = v_star / norm
    a = math.radians(angle_deg)
    if v_star.shape[0] == 1:
        if angle_deg not in (0.0, 180.0):
            raise ValueError(f"with k = 1 a head can only be at 0 or 180 degrees from v*; got {angle_deg} "
                             "(use head='random', or k >= 2)")
        return norm * math.cos(a) * v_hat
    u = rng.standard_normal(v_star.shape)
    u -= (u @ v_hat) * v_hat
    u /= np.linalg.norm(u)
    return norm * (math.cos(a) * v_hat + math.sin(a) * u)


def best_rotation(B0: np.ndarray, B_star: np.ndarray) -> np.ndarray:
    """The orthogonal k×k matrix U minimising ‖B0 − U B*‖₂, for B0 and B* with orthonormal rows.

    With B0 B*ᵀ = W diag(cos θ_i) Zᵀ (SVD; θ_i the principal angles between the row spaces), U = W Zᵀ (the polar
    factor) gives (B0 − UB*)(B0 − UB*)ᵀ = 2I − 2W diag(cos θ_i) Wᵀ, and no orthogonal U does better: for the unit x
    with xᵀB0B*ᵀ = cos θ_max · yᵀ, xᵀ(B0 − UB*)(B0 − UB*)ᵀx = 2 − 2 cos θ_max · yᵀUᵀx ≥ 2 − 2 cos θ_max.
    The paper minimises over "rotation matrices"; U may have determinant −1 here (read as orthogonal matrices, under
    which (B*, v*) is equally unidentifiable). :func:`make_instance` draws B0 with U = I.
    """
    B0, B_star = _np(B0), _np(B_star)
    k = B_star.shape[0]
    for name, B in (("B0", B0), ("B*", B_star)):
        if B.shape != B_star.shape or not np.allclose(B @ B.T, np.eye(k), atol=1e-8):
            raise ValueError(f"{name} must have orthonormal rows and shape {B_star.shape} (the paper's setting); "
                             "orthonormalise it first, e.g. with np.linalg.qr(B.T)[0].T")
    W, _, Zt = np.linalg.svd(B0 @ B_star.T)
    return W @ Zt


def feature_error(B0: np.ndarray, B_star: np.ndarray) -> float:
    """ε = min_U ‖B0 − U B*‖₂ over orthogonal U (the paper's feature error; :func:`best_rotation` gives the U).

    It equals √(2 − 2 cos θ_max) = 2 sin(θ_max/2), θ_max the largest principal angle between rowspace(B0) and
    rowspace(B*).
    """
    return float(np.linalg.norm(_np(B0) - best_rotation(B0, B_star) @ _np(B_star), 2))


def make_instance(setting: Setting = Setting(), seed: int = 0) -> Instance:
    """Draw one instance of the setting of Section 3 (all randomness from ``seed``).

    B* has random orthonormal rows and v* is a random unit vector. B0 has orthonormal rows too (the paper's
    assumption) and feature error exactly ε: B0 = diag(cos θ_i) B* + diag(sin θ_i) N, with N orthonormal rows
    orthogonal to B* (a random direction), θ_1 = θ_max = 2 arcsin(ε/2) and the other k − 1 principal angles uniform on
    [0, θ_max]; then min_U ‖B0 − UB*‖₂ = 2 sin(θ_max/2) = ε, attained at U = I. S is a random m-dimensional subspace
    and X has n Gaussian rows in S; ID inputs are N(0, P_S) and OOD inputs have second moment Σ (isotropic by
    default, which makes the OOD error the paper's worst case over ‖x‖ ≤ 1, eq. 3.1). The random draws do not depend
    on ε, so instances with the same seed and different ε share B*, v*, S, X and v0.
    """
    s = setting
    if not 0 < s.k < s.d:
        raise ValueError(f"need 0 < k < d; got k={s.k}, d={s.d}")
    if not 0 < s.m <= s.d:
        raise ValueError(f"need 0 < m <= d for the ID subspace S; got m={s.m}, d={s.d}")
    if s.n < 1:
        raise ValueError(f"need n >= 1 training examples; got n={s.n}")
    if not 0.0 <= s.eps <= math.sqrt(2.0):
        raise ValueError(f"eps must be in [0, √2] (features with orthonormal rows are at most √2 apart); got {s.eps}")
    if s.eps > 0 and 2 * s.k > s.d:
        raise ValueError(f"eps > 0 needs a direction orthogonal to B*: 2k <= d; got k={s.k}, d={s.d}")
    if s.head not in ("random", "angle"):
        raise ValueError(f"head must be 'random' or 'angle'; got {s.head!r}")
    if not s.head_scale >= 0:
        raise ValueError(f"head_scale must be >= 0; got {s.head_scale}")
    if s.sigma_ood not in ("identity", "perp"):
        raise ValueError(f"sigma_ood must be 'identity' or 'perp'; got {s.sigma_ood!r}")
    rng = np.random.default_rng(seed)
    B_star = random_orthonormal_rows(s.k, s.d, rng)
    v_star = rng.standard_normal(s.k)
    v_star /= np.linalg.norm(v_star)
    G = rng.standard_normal((s.k, s.d))
    spread = rng.uniform(size=s.k - 1)
    B0 = B_star.copy()
    if s.eps > 0:
        N = np.linalg.qr((G - G @ B_star.T @ B_star).T)[0].T  # orthonormal rows, orthogonal to the rows of B*
        theta = 2.0 * math.asin(s.eps / 2.0) * np.concatenate([[1.0], spread])
        B0 = np.cos(theta)[:, None] * B_star + np.sin(theta)[:, None] * N
    basis = random_orthonormal_rows(s.m, s.d, rng).T  # (d, m)
    X = rng.standard_normal((s.n, s.m)) @ basis.T
    Y = X @ B_star.T @ v_star
    Q_S, Q_S_perp = id_subspace(X)
    if s.head == "random":
        v0 = s.head_scale * rng.standard_normal(s.k)
    else:
        v0 = head_at_angle(v_star, s.head_angle, rng)
    Sigma_id = projector(Q_S)
    Sigma_ood = np.eye(s.d) if s.sigma_ood == "identity" else projector(Q_S_perp)
    return Instance(s, B_star, v_star, B0, v0, X, Y, Q_S, Q_S_perp, Sigma_id, Sigma_ood)


# ----------------------------------------------------------------------------------------------------------------
# errors and diagnostics (closed forms from second moments)
# ----------------------------------------------------------------------------------------------------------------


def excess_risk(v, B, w_star, Sigma):
    """E[(v*ᵀB*x − vᵀBx)²] = (w − w*)ᵀ Σ (w − w*) with w = Bᵀv and Σ = E[xxᵀ].

    Batched: ``v`` (..., k) and ``B`` (..., k, d) give an array of shape (...).
    """
    if _is_torch(v, B):
        w_star_t = torch.as_tensor(w_star, dtype=B.dtype, device=B.device)
        Sigma_t = torch.as_tensor(Sigma, dtype=B.dtype, device=B.device)
        delta = torch.einsum("...kd,...k->...d", B, v) - w_star_t
        return torch.einsum("...d,de,...e->...", delta, Sigma_t, delta)
    delta = np.einsum("...kd,...k->...d", B, v) - w_star
    return np.einsum("...d,de,...e->...", delta, Sigma, delta)


def id_error(v, B, inst: Instance):
    """ID excess squared error (inputs N(0, P_S)); 0 iff the predictor agrees with w* on S."""
    return excess_risk(v, B, inst.w_star, inst.Sigma_id)


def ood_error(v, B, inst: Instance):
    """OOD excess squared error L_ood(v, B) under the OOD second moment Σ."""
    return excess_risk(v, B, inst.w_star, inst.Sigma_ood)


def train_loss(v, B, X, Y):
    """L̂(v, B) = ‖XBᵀv − Y‖² / n."""
    if _is_torch(v, B, X, Y):
        return torch.mean((X @ (B.T @ v) - Y) ** 2)
    return float(np.mean((X @ (B.T @ v) - Y) ** 2))


def feature_change(B, B0, Q):
    """‖(B − B0) Q‖_F: how far the features moved along the subspace spanned by the orthonormal columns of Q.

    With Q = Q_S this is the change on the ID subspace, with Q = Q_S_perp on its complement (Section 3, invariant 1).
    Batched over leading axes of ``B``.
    """
    if _is_torch(B):
        D = (B - torch.as_tensor(B0, dtype=B.dtype, device=B.device)) @ torch.as_tensor(Q, dtype=B.dtype, device=B.device)
        return torch.linalg.matrix_norm(D)
    return np.linalg.norm((_np(B) - B0) @ Q, axis=(-2, -1))


def balancedness(v, B):
    """C(v, B) = v vᵀ − B Bᵀ (k×k), conserved exactly by gradient flow (Section 3, invariant 2)."""
    if _is_torch(v, B):
        return torch.einsum("...i,...j->...ij", v, v) - B @ B.transpose(-1, -2)
    return np.einsum("...i,...j->...ij", v, v) - B @ np.swapaxes(B, -1, -2)


def head_alignment_error(v0, v_star) -> float:
    """φ with φ² = |(v0ᵀv*)² − (v*ᵀv*)²|: the initial head-alignment error of the FT lower bound (eq. 3.7).

    The ICLR 2022 submission prints φ² = (v0ᵀv*)² − (v*ᵀv*)², which is negative whenever |v0ᵀv*| < ‖v*‖² (for
    every small random head, the case the paper discusses); we read it with the absolute value. φ = 0 for v0 = ±v*.
    """
    v0, v_star = _np(v0), _np(v_star)
    return math.sqrt(abs((v0 @ v_star) ** 2 - (v_star @ v_star) ** 2))


EPS_READINGS = ("norm", "squared")


def ft_lower_bound(inst: Instance, eps: float | None = None, eps_reading: str = "norm") -> float:
    """Right-hand side of the FT OOD lower bound, Theorem 3.1, eq. 3.7 of the ICLR 2022 submission:

        √L_ood(v_ft(t), B_ft(t)) ≥ cos θ_k(R, S⊥)/√k · min(φ, φ²/‖w*‖₂)/(1 + ‖w*‖₂)² − ε   for all t,

    with R = rowspace(B0), S⊥ = rowspace(X)⊥, w* = B*ᵀv*, φ from :func:`head_alignment_error` and L_ood the
    worst-case OOD loss ‖B*ᵀv* − Bᵀv‖² (eq. 3.1; :func:`ood_error` with Σ = I). cos θ_k(R, S⊥) is the k-th largest
    singular value of EᵀF (Definition 3.1), :func:`cos_theta_max` of B0.

    The printed ε is "min_U ‖B0 − UB*‖₂²" while the setting defines ε through min_U ‖B0 − UB*‖₂ ≤ ε. ``eps_reading``
    "norm" (default) subtracts ε = min_U ‖B0 − UB*‖₂, the setting's definition and the weaker claim for ε < 1;
    "squared" subtracts its square. ``eps`` overrides the instance's ε (:func:`feature_error`).

    The theorem assumes cos θ_k(R, S⊥) > 0; where it is 0 the right-hand side is −ε (vacuous). With S⊥ = {0}
    (training inputs spanning R^d, outside the paper's k < d − n) it is undefined and a ValueError is raised.
    """
    if eps_reading not in EPS_READINGS:
        raise ValueError(f"eps_reading must be one of {EPS_READINGS}; got {eps_reading!r}")
    if inst.Q_S_perp.shape[1] == 0:
        raise ValueError("S⊥ = {0} (the training inputs span R^d): the bound needs cos θ_k(R, S⊥) > 0, "
                         "which the paper's k < d − n guarantees room for; use m < d or n < d")
    eps = inst.eps if eps is None else float(eps)
    eps_term = eps if eps_reading == "norm" else eps**2
    k = inst.setting.k
    phi = head_alignment_error(inst.v0, inst.v_star)
    w_norm = float(np.linalg.norm(inst.w_star))
    cos_t = cos_theta_max(inst.B0, inst.Q_S_perp)
    return cos_t / math.sqrt(k) * min(phi, phi**2 / w_norm) / (1.0 + w_norm) ** 2 - eps_term


# ----------------------------------------------------------------------------------------------------------------
# LP: least squares on frozen features
# ----------------------------------------------------------------------------------------------------------------


def linear_probe(X, Y, B0):
    """The LP head v_lp^∞: the minimum-norm least-squares solution of min_v ‖X B0ᵀ v − Y‖² (B frozen at B0)."""
    _check_shapes(X, Y, B0)
    as_torch = _is_torch(X, Y, B0)
    device = next((a.device for a in (X, Y, B0) if isinstance(a, torch.Tensor)), None)
    F = _np(X) @ _np(B0).T
    v, *_ = np.linalg.lstsq(F, _np(Y), rcond=None)
    return _like(v, as_torch, device)


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
    """LP-FT: :func:`fine_tune` started from the LP head (v_lp^∞, B0). Returns ``(v, B)`` (and a trajectory on request)."""
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
