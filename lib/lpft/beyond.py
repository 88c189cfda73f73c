"""Beyond the theorem: the LP / FT / LP-FT experiment of Section 3 outside the theorem's assumptions.

Section 3 of the LP-FT paper (Kumar et al., ICLR 2022) proves its results for a two-layer *linear* network
f(x) = vᵀBx, the *squared* loss and *gradient flow*. This module relaxes one assumption at a time while keeping the
data model of :mod:`lpft.theory` (``make_instance``: truth (B*, v*), pretrained features B0 = B* + εE, training inputs
spanning the ID subspace S):

* the loss: logistic loss on labels y = sign(v*ᵀB*x), scored by the 0-1 error;
* the activation: f(x) = vᵀ relu(Bx) with a ReLU teacher y = v*ᵀ relu(B*x), scored by the squared error;
* the optimiser: minibatch SGD instead of full-batch gradient descent.

Everything is float64 torch with hand-written gradients (no autograd), batched over a leading instance axis, so a
whole sweep over seeds and feature errors is one tensor program. The training loss is the *mean* over the (mini)batch,
as in :mod:`lpft.theory`, so with ``activation="linear"``, ``loss="squared"`` and full batches
:func:`train_two_layer` reproduces :func:`lpft.dynamics.numpy_gd` step for step.

Two facts carry over unchanged (Section 3, invariants 1 and 2 of the theory chapter):

* **Features change only on S**, for any activation, loss and batch: the gradient in B is a sum of terms
  (…)·x_iᵀ over training inputs x_i ∈ S, so B(t) P_{S⊥} = B0 P_{S⊥} exactly, for GD and SGD alike.
* **Per-neuron balancedness** v_j² − ‖b_j‖² (b_j the j-th row of B) is conserved by gradient flow for positively
  homogeneous activations (linear, ReLU; Du et al. 2018), whatever the loss. Under GD each step changes it by exactly
  η²(g_{v_j}² − ‖g_{b_j}‖²), so after a fixed time T = η·steps it drifts by O(η). The full matrix vvᵀ − BBᵀ is
  conserved only for the linear activation.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from lpft import theory

ACTIVATIONS = ("linear", "relu")
LOSSES = ("squared", "logistic")


def _t(a) -> torch.Tensor:
    return a.to(torch.float64) if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a, dtype=np.float64))


def _check(loss: str, activation: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}")


# ----------------------------------------------------------------------------------------------------------------
# the model and its gradients
# ----------------------------------------------------------------------------------------------------------------


def forward(X: torch.Tensor, v: torch.Tensor, B: torch.Tensor, activation: str = "linear") -> torch.Tensor:
    """f(x) = vᵀ σ(Bx) for every row of X; batched: X (..., n, d), v (..., k), B (..., k, d) -> (..., n)."""
    H = X @ B.transpose(-1, -2)
    A = torch.relu(H) if activation == "relu" else H
    return (A @ v.unsqueeze(-1)).squeeze(-1)


def gradients(X: torch.Tensor, Y: torch.Tensor, v: torch.Tensor, B: torch.Tensor, *, loss: str = "squared",
              activation: str = "linear") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(∇_v L, ∇_B L, L) of the mean loss L over the rows of X (batched over leading axes).

    squared: L = mean (f − y)²;  logistic: L = mean log(1 + exp(−y f)) with y ∈ {±1}.
    With g_i = ∂L/∂f_i: ∇_v L = σ(XBᵀ)ᵀ g and ∇_B L = [(g vᵀ) ∘ σ'(XBᵀ)]ᵀ X — the latter a sum of (…)·x_iᵀ
    terms, so its rows lie in the span of the training inputs (invariant 1 for any activation and loss).
    """
    n = X.shape[-2]
    H = X @ B.transpose(-1, -2)  # (..., n, k) pre-activations
    A = torch.relu(H) if activation == "relu" else H
    f = (A @ v.unsqueeze(-1)).squeeze(-1)
    if loss == "squared":
        res = f - Y
        g, value = (2.0 / n) * res, (res * res).mean(-1)
    else:
        margin = Y * f
        g, value = -(Y * torch.sigmoid(-margin)) / n, torch.nn.functional.softplus(-margin).mean(-1)
    grad_v = (A.transpose(-1, -2) @ g.unsqueeze(-1)).squeeze(-1)
    G = g.unsqueeze(-1) * v.unsqueeze(-2)  # (..., n, k)
    if activation == "relu":
        G = G * (H > 0)
    return grad_v, G.transpose(-1, -2) @ X, value


def train_two_layer(X, Y, B0, v0, *, loss: str = "squared", activation: str = "linear", lr: float = 0.05,
                    steps: int = 1000, batch_size: int | None = None, seed: int = 0, train_features: bool = True,
                    observe=None, record_at=()):
    """(S)GD on the mean loss of f(x) = vᵀσ(Bx) from (v0, B0); returns the final ``(v, B)``.

    Extends the FT procedure of Section 3 (gradient flow, squared loss, linear σ) to ``loss`` ∈ {"squared",
    "logistic"}, ``activation`` ∈ {"linear", "relu"} and minibatches: ``batch_size=None`` is full-batch GD, otherwise
    each step uses ``batch_size`` examples drawn without replacement (a fresh permutation every epoch, the last
    partial batch dropped) from a generator seeded by ``seed``. Both layers step with the gradient at the current
    point. ``train_features=False`` freezes B at B0: that is LP by gradient descent (Section 3's LP is its limit for
    the squared loss).

    Shapes: X (n, d), Y (n,), B0 (k, d), v0 (k,), or the same with a leading instance axis N on all four (every
    instance trained independently, in one tensor program). NumPy in, NumPy out; torch in, torch out.
    ``observe(step, v, B)``, if given, is called after each step listed in ``record_at`` (0 = before the first step)
    and after the last step, with the current (N, k) and (N, k, d) torch tensors.
    """
    _check(loss, activation)
    as_numpy = not any(isinstance(a, torch.Tensor) for a in (X, Y, B0, v0))
    X, Y, B, v = (_t(a) for a in (X, Y, B0, v0))
    single = X.ndim == 2
    if single:
        X, Y, B, v = X[None], Y[None], B[None], v[None]
    N, n, d = X.shape
    if Y.shape != (N, n) or B.ndim != 3 or B.shape[0] != N or B.shape[2] != d or v.shape != B.shape[:2]:
        raise ValueError("expected X (n,d), Y (n,), B0 (k,d), v0 (k,), optionally all with a leading instance axis; "
                         f"got {tuple(X.shape)}, {tuple(Y.shape)}, {tuple(B.shape)}, {tuple(v.shape)}")
    if batch_size is not None and not 0 < batch_size <= n:
        raise ValueError(f"batch_size must be None (full batch) or in 1..n = {n}; got {batch_size}")
    v, B = v.clone(), B.clone()
    gen = torch.Generator().manual_seed(int(seed))
    rows = torch.arange(N)[:, None]
    per_epoch = n // batch_size if batch_size else 1
    perm = None
    record_at = set(int(i) for i in record_at) if observe is not None else set()
    with torch.no_grad():
        if 0 in record_at:
            observe(0, v, B)
        for i in range(steps):
            if batch_size is None:
                Xb, Yb = X, Y
            else:
                j = i % per_epoch
                if j == 0:
                    perm = torch.rand(N, n, generator=gen, dtype=torch.float64).argsort(-1)
                idx = perm[:, j * batch_size:(j + 1) * batch_size]
                Xb, Yb = X[rows, idx], Y[rows, idx]
            grad_v, grad_B, _ = gradients(Xb, Yb, v, B, loss=loss, activation=activation)
            v = v - lr * grad_v
            if train_features:
                B = B - lr * grad_B
            if observe is not None and (i + 1 in record_at or i + 1 == steps):
                observe(i + 1, v, B)
    if single:
        v, B = v[0], B[0]
    return (v.numpy(), B.numpy()) if as_numpy else (v, B)


def lp_ft(X, Y, B0, v0, **options):
    """LP-FT (Section 3): LP by gradient descent on the head (features frozen) from ``v0``, then full training from
    (v_lp, B0) with the same options. Returns ``(v_lp, (v, B))``."""
    v_lp, _ = train_two_layer(X, Y, B0, v0, **{**options, "train_features": False})
    return v_lp, train_two_layer(X, Y, B0, v_lp, **options)


# ----------------------------------------------------------------------------------------------------------------
# teacher, labels and Monte-Carlo test errors
# ----------------------------------------------------------------------------------------------------------------


def teacher(X, B_star, v_star, activation: str = "linear"):
    """The ground truth v*ᵀσ(B*x) for every row of X (NumPy or torch, as given)."""
    if isinstance(X, torch.Tensor):
        return forward(X, _t(v_star), _t(B_star), activation)
    H = np.asarray(X) @ np.asarray(B_star).T
    return (np.maximum(H, 0.0) if activation == "relu" else H) @ np.asarray(v_star)


def labels(X, inst: theory.Instance, loss: str, activation: str):
    """Training/test labels: the teacher's output (squared loss) or its sign in {±1} (logistic loss)."""
    y = teacher(X, inst.B_star, inst.v_star, activation)
    if loss == "logistic":
        return np.where(y >= 0, 1.0, -1.0) if isinstance(y, np.ndarray) else torch.where(y >= 0, 1.0, -1.0)
    return y


def test_inputs(inst: theory.Instance, n_test: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_test`` ID inputs from N(0, P_S) and ``n_test`` OOD inputs from N(0, I_d), from their own stream of ``seed``."""
    rng = np.random.default_rng([int(seed), 20220])
    d = inst.setting.d
    X_id = rng.standard_normal((n_test, inst.Q_S.shape[1])) @ inst.Q_S.T
    X_ood = rng.standard_normal((n_test, d))
    return torch.from_numpy(X_id), torch.from_numpy(X_ood)


def test_error(v, B, X_test: torch.Tensor, inst: theory.Instance, loss: str, activation: str) -> float:
    """Monte-Carlo test error of f = vᵀσ(Bx) on the rows of ``X_test``.

    squared loss: mean squared error to the teacher v*ᵀσ(B*x) (the excess risk of Section 3, which is noiseless);
    logistic loss: 0-1 error, the fraction of inputs where sign f(x) ≠ sign v*ᵀσ(B*x).
    """
    f = forward(X_test, _t(v), _t(B), activation)
    y = teacher(X_test, inst.B_star, inst.v_star, activation)
    if loss == "logistic":
        return float(((f >= 0) != (y >= 0)).to(torch.float64).mean())
    return float(((f - y) ** 2).mean())


def neuron_balancedness(v, B):
    """Per-neuron balancedness c_j = v_j² − ‖b_j‖² (b_j the rows of B), conserved by gradient flow for homogeneous
    activations (Du et al. 2018); the diagonal of :func:`lpft.theory.balancedness`. Batched over leading axes."""
    if isinstance(v, torch.Tensor) or isinstance(B, torch.Tensor):
        v, B = _t(v), _t(B)
        return v * v - (B * B).sum(-1)
    return np.asarray(v) ** 2 - (np.asarray(B) ** 2).sum(-1)


# ----------------------------------------------------------------------------------------------------------------
# one variant, all methods, all feature errors and seeds
# ----------------------------------------------------------------------------------------------------------------


class Variant(NamedTuple):
    """One departure from Section 3's assumptions; ``k`` and ``n`` override the feature dimension and the number of
    training examples of the instances."""

    name: str
    loss: str = "squared"
    activation: str = "linear"
    batch_size: int | None = None
    k: int = 5
    n: int = 40
    lr: float = 0.05
    steps: int = 3000

    def train_options(self, seed: int = 0) -> dict:
        return dict(loss=self.loss, activation=self.activation, lr=self.lr, steps=self.steps,
                    batch_size=self.batch_size, seed=seed)


def variant_instances(variant: Variant, eps_grid, n_seeds: int, seed: int, setting: theory.Setting = theory.Setting()):
    """Instances for every (ε, seed) pair (instance i of each ε uses seed ``seed + i``), with the variant's labels."""
    out = []
    for eps in eps_grid:
        for i in range(n_seeds):
            inst = theory.make_instance(setting._replace(k=variant.k, n=variant.n, eps=float(eps)), seed=seed + i)
            inst.Y = labels(inst.X, inst, variant.loss, variant.activation)
            out.append((float(eps), seed + i, inst))
    return out


def run_variant(variant: Variant, eps_grid, n_seeds: int, n_test: int, seed: int = 0,
                setting: theory.Setting = theory.Setting()) -> pd.DataFrame:
    """LP, FT and LP-FT for every (ε, seed): one row per (ε, seed, method) with ID/OOD test errors and diagnostics.

    Columns: ``eps``, ``seed``, ``method``, ``id``, ``ood`` (Monte-Carlo errors on ``n_test`` inputs each),
    ``train_loss``, ``change_S`` and ``change_S_perp`` (‖(B − B0)Q‖_F on S and S⊥), ``neuron_drift``
    (‖c(v, B) − c(v_start, B0)‖₂ of the per-neuron balancedness, from the method's own starting head).
    """
    runs = variant_instances(variant, eps_grid, n_seeds, seed, setting)
    insts = [inst for *_, inst in runs]
    T = {key: torch.from_numpy(np.stack([getattr(inst, key) for inst in insts])) for key in ("X", "Y", "B0", "v0")}
    opts = variant.train_options(seed)
    v_lp, B_lp = train_two_layer(T["X"], T["Y"], T["B0"], T["v0"], **{**opts, "train_features": False})
    v_ft, B_ft = train_two_layer(T["X"], T["Y"], T["B0"], T["v0"], **opts)
    v_lpft, B_lpft = train_two_layer(T["X"], T["Y"], T["B0"], v_lp, **opts)
    methods = {"LP": (v_lp, B_lp, T["v0"]), "FT": (v_ft, B_ft, T["v0"]), "LP-FT": (v_lpft, B_lpft, v_lp)}
    rows = []
    for i, (eps, s, inst) in enumerate(runs):
        X_id, X_ood = test_inputs(inst, n_test, s)
        for method, (v, B, v_start) in methods.items():
            _, _, value = gradients(T["X"][i], T["Y"][i], v[i], B[i], loss=variant.loss, activation=variant.activation)
            drift = neuron_balancedness(v[i], B[i]) - neuron_balancedness(v_start[i], T["B0"][i])
            rows.append({
                "eps": eps, "seed": s, "method": method,
                "id": test_error(v[i], B[i], X_id, inst, variant.loss, variant.activation),
                "ood": test_error(v[i], B[i], X_ood, inst, variant.loss, variant.activation),
                "train_loss": float(value),
                "change_S": float(theory.feature_change(B[i].numpy(), inst.B0, inst.Q_S)),
                "change_S_perp": float(theory.feature_change(B[i].numpy(), inst.B0, inst.Q_S_perp)),
                "neuron_drift": float(torch.linalg.vector_norm(drift)),
            })
    return pd.DataFrame(rows)


ORDERINGS = ("FT OOD > LP OOD", "LP-FT OOD ≤ LP OOD", "FT ID < LP ID")


def orderings(df: pd.DataFrame, floor: float = 1e-12) -> pd.DataFrame:
    """The paper's three orderings per ε, on the seed-means of ``df`` (from :func:`run_variant`).

    Columns :data:`ORDERINGS` (booleans, on the means over seeds) and ``frac <ordering>`` (the fraction of seeds for
    which it holds instance by instance). Differences below ``floor`` (round-off) count as ties: a tie satisfies
    "≤" but not "<" or ">".
    """
    wide = df.pivot_table(index=["eps", "seed"], columns="method", values=["id", "ood"])
    mean = wide.groupby(level="eps").mean()

    def checks(t):
        return {ORDERINGS[0]: t["ood", "FT"] > t["ood", "LP"] + floor,
                ORDERINGS[1]: t["ood", "LP-FT"] <= t["ood", "LP"] + floor,
                ORDERINGS[2]: t["id", "LP"] > t["id", "FT"] + floor}

    out = pd.DataFrame(checks(mean))
    for name, ok in checks(wide).items():
        out[f"frac {name}"] = ok.groupby(level="eps").mean()
    return out


def ordering_table(df: pd.DataFrame, floor: float = 1e-12) -> pd.DataFrame:
    """:func:`orderings` as text, one row per ε (column ``eps``): "yes" / "no" on the seed-means, and in how many
    seeds the ordering holds instance by instance (e.g. "yes (3/3)")."""
    o = orderings(df, floor)
    n_seeds = df["seed"].nunique()
    out = pd.DataFrame({name: [f"{'yes' if ok else 'no'} ({round(frac * n_seeds)}/{n_seeds})"
                               for ok, frac in zip(o[name], o[f"frac {name}"])] for name in ORDERINGS})
    out.insert(0, "eps", o.index.to_numpy(float))
    return out


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Seed-mean ID and OOD errors, one row per ε (column ``eps``), columns "LP ID", "LP OOD", "FT ID", …"""
    mean = df.groupby(["eps", "method"])[["id", "ood"]].mean().unstack("method")
    cols = {f"{m} {split.upper()}": mean[split, m].to_numpy() for m in ("LP", "FT", "LP-FT") for split in ("id", "ood")}
    return pd.DataFrame({"eps": mean.index.to_numpy(float), **cols})


def error_trajectory(variant: Variant, eps: float, n_seeds: int, n_test: int, seed: int = 0, record_at=(),
                     setting: theory.Setting = theory.Setting()) -> pd.DataFrame:
    """ID/OOD test errors along training for LP, FT and LP-FT at one feature error ε (one row per record).

    ``step`` counts the steps of the method's own run; LP-FT's run starts from the LP head at the end of LP.
    """
    runs = variant_instances(variant, (eps,), n_seeds, seed, setting)
    T = {key: torch.from_numpy(np.stack([getattr(inst, key) for *_, inst in runs])) for key in ("X", "Y", "B0", "v0")}
    tests = [test_inputs(inst, n_test, s) for _, s, inst in runs]
    rows = []

    def observer(method):
        def observe(step, v, B):
            for i, (_, s, inst) in enumerate(runs):
                rows.append({"method": method, "seed": s, "step": step,
                             "id": test_error(v[i], B[i], tests[i][0], inst, variant.loss, variant.activation),
                             "ood": test_error(v[i], B[i], tests[i][1], inst, variant.loss, variant.activation)})
        return observe

    opts = {**variant.train_options(seed), "record_at": record_at}
    v_lp, _ = train_two_layer(T["X"], T["Y"], T["B0"], T["v0"], **opts, train_features=False, observe=observer("LP"))
    train_two_layer(T["X"], T["Y"], T["B0"], T["v0"], **opts, observe=observer("FT"))
    train_two_layer(T["X"], T["Y"], T["B0"], v_lp, **opts, observe=observer("LP-FT"))
    return pd.DataFrame(rows)


def describe_eps(holds: pd.Series) -> str:
    """Words for the ε at which a boolean per-ε Series is true: "every ε", "no ε", or "ε = 0.1, 0.3"."""
    if holds.all():
        return "every ε"
    if not holds.any():
        return "no ε"
    return "ε = " + ", ".join(f"{eps:g}" for eps in holds.index[holds.to_numpy(bool)])
