"""Two-layer linear networks f(x) = vᵀBx: the setting and results of Section 3 of the LP-FT paper.

Notation follows the paper (Kumar et al., ICLR 2022):

* ``B_star`` (k×d, orthonormal rows) and ``v_star`` (k,) define the truth y = v*ᵀB*x; ``w_star = B_starᵀ v_star``.
* ``B0`` (k×d, orthonormal rows, as the paper assumes) are the pretrained features, with feature error
  ε = min_U ‖B0 − U B*‖₂ over orthogonal k×k matrices U (:func:`feature_error`).
* ``X`` (n×d) are the training inputs; **S = rowspace(X)** is the ID subspace, ``S_perp`` its complement.
* LP fits the head on frozen ``B0`` (:func:`linear_probe`); FT runs gradient flow on (v, B) from (v0, B0); LP-FT is FT
  from the LP head. How FT and LP-FT train (gradient flow, gradient descent, batched over instances) is
  :mod:`lpft.dynamics`; this module holds the setting, the instances, the errors, LP and the bound as quoted.

The training loss is the mean squared error L̂(v, B) = ‖XBᵀv − Y‖² / n. The paper writes the sum ‖XBᵀv − Y‖²;
the factor 1/n only rescales time, and keeps one step size sensible for every n. Gradient flow is

    ∂ₜv = (2/n) B Xᵀ r,    ∂ₜB = (2/n) v rᵀ X,    r = Y − X Bᵀ v.                    (GF)

Every function that takes data accepts NumPy float64 arrays or torch tensors and returns the same kind.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

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
        D = (B - torch.as_tensor(B0, dtype=B.dtype, device=B.device)) \
            @ torch.as_tensor(Q, dtype=B.dtype, device=B.device)
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
