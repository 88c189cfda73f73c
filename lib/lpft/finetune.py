"""LP, FT, LP-FT and three later methods on a pretrained :class:`~lpft.digits.DigitNet`, behind one interface.

``fit(method, pretrained, task, hp, seed)`` returns a new model and never changes ``pretrained``. LP, FT and LP-FT
follow how the LP-FT paper (Kumar et al., ICLR 2022; Sections 4.1-4.2 of its ICLR submission) and its official code
(github.com/AnanyaKumar/transfer_learning) ran them; the others are later methods: WiSE-FT (Wortsman et al., CVPR
2022), L2-SP (Li, Grandvalet and Davoine, ICML 2018) and surgical fine-tuning (Lee et al., ICLR 2023). FT, LP-FT,
L2-SP and surgical share one training loop, :func:`train`; they differ only in the head's initialisation, which
parameters train, the train/eval mode and a penalty.
All selection is on ID validation accuracy, never on test or OOD data.
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.utils.data import TensorDataset
from tqdm import tqdm  # plain tqdm: no ipywidgets needed inside kernels

from lpft.digits import DigitNet, Task

METHODS = ("LP", "FT", "LP-FT", "WiSE-FT", "L2-SP", "surgical")
# Hyperparameters each method requires; ``batch_size`` (default 64) is optional for the trained ones.
HPARAMS = {"LP": ("C",), "FT": ("lr", "epochs"), "LP-FT": ("C", "lr", "epochs"),
           "WiSE-FT": ("alpha", "C", "lr", "epochs"), "L2-SP": ("lr", "epochs", "weight"),
           "surgical": ("lr", "epochs", "blocks")}
BLOCKS = ("first", "middle", "last")  # surgical: the backbone block that trains (with the head)
BATCH_SIZE = 64
MOMENTUM = 0.9


# ---- measurements -------------------------------------------------------------------------------------------------

@torch.no_grad()
def _outputs(fn: Callable, model: nn.Module, data: TensorDataset, batch: int = 1024) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = torch.cat([fn(x) for x in data.tensors[0].split(batch)])
    model.train(was_training)
    return out


def features(model: DigitNet, data: TensorDataset) -> torch.Tensor:
    """Penultimate features (N, 128) of ``data``'s images, network in ``eval()`` mode."""
    return _outputs(model.features, model, data)


def accuracy(model: DigitNet, data: TensorDataset) -> float:
    """Fraction of ``data`` classified correctly, network in ``eval()`` mode."""
    return (_outputs(model, model, data).argmax(1) == data.tensors[1]).double().mean().item()


def feature_change(pretrained: DigitNet, model: DigitNet, data: TensorDataset) -> float:
    """Mean over examples and dimensions of the squared difference between the penultimate features of ``model`` and
    of ``pretrained``, ×100 (what the official code's notebook ``scripts/lpft_change_in_reps_and_weights.ipynb``
    computes; the paper's text reports an average Euclidean distance instead, see :mod:`lpft.paper`)."""
    return 100.0 * ((features(model, data) - features(pretrained, data)) ** 2).mean().item()


# ---- the shared training loop -------------------------------------------------------------------------------------

def train(model: DigitNet, task: Task, *, lr: float, epochs: int, seed: int,
          trainable: list[nn.Parameter] | None = None, eval_mode: bool = False,
          penalty: Callable[[], torch.Tensor] | None = None, batch_size: int = BATCH_SIZE,
          progress: bool = False) -> DigitNet:
    """Fine-tune ``model`` in place on ``task.train`` and return it at its best epoch by ID-val accuracy.

    SGD with momentum 0.9 on ``trainable`` (default: every parameter), cross-entropy (+ ``penalty()``), cosine learning
    rate decayed once per epoch, shuffled batches from a generator seeded by ``seed``; the network is in ``eval()``
    mode throughout when ``eval_mode`` (LP-FT's frozen normalisation statistics), else in ``train()`` mode. Early
    stopping as in the paper (Section 4.1, on ID validation accuracy): after each epoch the ID-val accuracy is
    measured and the best epoch's weights are kept (first on ties); the starting point (epoch 0) is not a candidate, except when ``epochs == 0``, which
    returns ``model`` unchanged.
    """
    params = list(model.parameters()) if trainable is None else list(trainable)
    chosen = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    opt = torch.optim.SGD(params, lr=lr, momentum=MOMENTUM)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    generator = torch.Generator().manual_seed(seed)
    x, y = task.train.tensors
    best_acc, best_state = -1.0, None
    for _ in tqdm(range(epochs), desc="fine-tune", disable=not progress):
        model.train(not eval_mode)
        for idx in torch.randperm(len(y), generator=generator).split(batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if penalty is not None:
                loss = loss + penalty()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        schedule.step()
        acc = accuracy(model, task.val)
        if acc > best_acc:
            best_acc, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    for p in model.parameters():
        p.requires_grad_(True)
    return model.eval()


# ---- the methods --------------------------------------------------------------------------------------------------

def probe_weights(clf: LogisticRegression, mu: float, sigma: float, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The head ``(W, b)`` on raw features of a logistic regression fitted on features normalised as (f − μ)/σ:
    ``W f + b = coef (f − μ)/σ + intercept``. Classes absent from training get zero rows; a binary fit's one logit
    w·z + b becomes the two logits ∓(w·z + b)/2 (the same softmax)."""
    coef, intercept = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.hstack([-intercept / 2, intercept / 2])
    W, b = np.zeros((n_classes, coef.shape[1])), np.zeros(n_classes)
    W[clf.classes_] = coef / sigma
    b[clf.classes_] = intercept - coef.sum(axis=1) * mu / sigma
    return W, b


def linear_probe(pretrained: DigitNet, task: Task, C: float) -> DigitNet:
    """LP (the paper's Section 4.1: ℓ2-regularised logistic regression on frozen features): scikit-learn
    ``LogisticRegression`` (L-BFGS, multinomial, max_iter 1000, inverse regularisation ``C``) on the frozen penultimate features of ``task.train`` (``eval()`` mode), normalised by one
    scalar mean and std over the whole training feature matrix. The weights are un-normalised into the head, so
    ``head(f) = W (f − μ)/σ + b``; classes absent from training get zero rows. The backbone is an exact copy."""
    model = copy.deepcopy(pretrained).eval()
    f = features(model, task.train).double().numpy()
    y = task.train.tensors[1].numpy()
    mu, sigma = f.mean(), f.std()
    clf = LogisticRegression(C=C, max_iter=1000).fit((f - mu) / sigma, y)
    W, b = probe_weights(clf, mu, sigma, task.n_classes)
    model.head = nn.Linear(f.shape[1], task.n_classes)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(W))
        model.head.bias.copy_(torch.from_numpy(b))
    return model


def _fresh_head(pretrained: DigitNet, task: Task, seed: int) -> DigitNet:
    """A copy of ``pretrained`` with a new head in PyTorch's default initialisation, drawn from ``seed`` (FT's init)."""
    model = copy.deepcopy(pretrained)
    torch.manual_seed(seed)
    model.head = nn.Linear(model.head.in_features, task.n_classes)
    return model


def fine_tune(pretrained: DigitNet, task: Task, lr: float, epochs: int, seed: int, **options) -> DigitNet:
    """FT (the paper's Section 4.1): fresh random head, every parameter trained, network in ``train()`` mode."""
    return train(_fresh_head(pretrained, task, seed), task, lr=lr, epochs=epochs, seed=seed, **options)


def lp_ft(lp_model: DigitNet, task: Task, lr: float, epochs: int, seed: int, **options) -> DigitNet:
    """LP-FT (the paper's Section 4.2): from the LP model (its head), every parameter trained with a 10–100× smaller
    learning rate than FT, network in ``eval()`` mode so normalisation statistics stay frozen. (GroupNorm and
    no-norm networks have no running statistics, so here ``eval()`` changes nothing; GroupNorm's affine parameters
    train, as BatchNorm's did in the paper.)"""
    return train(copy.deepcopy(lp_model), task, lr=lr, epochs=epochs, seed=seed, eval_mode=True, **options)


def wise_ft(lp_model: DigitNet, ft_model: DigitNet, alpha: float) -> DigitNet:
    """WiSE-FT (Wortsman et al., CVPR 2022): θ = (1 − α)·θ_LP + α·θ_FT, every parameter and float buffer
    interpolated. Here the zero-shot end is the LP model (pretrained backbone + LP head); α = 0 and α = 1 return
    the two ends exactly. (The WiSE-FT paper fine-tunes from the zero-shot head; this FT end starts from a random
    head, as FT does in the LP-FT paper.)"""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha}")
    model = copy.deepcopy(lp_model)
    ft = ft_model.state_dict()
    model.load_state_dict({k: (1 - alpha) * v + alpha * ft[k] if v.is_floating_point() else v
                           for k, v in lp_model.state_dict().items()})
    return model


def l2_sp(pretrained: DigitNet, task: Task, lr: float, epochs: int, weight: float, seed: int,
          **options) -> DigitNet:
    """L2-SP (Li, Grandvalet and Davoine, ICML 2018): FT plus ``weight``·‖θ_backbone − θ_pretrained‖² (squared
    L2 distance summed over all backbone parameters); the new head is not penalised. Plain SGD on the penalty alone
    is stable only for lr·weight < 1 + momentum."""
    model = _fresh_head(pretrained, task, seed)
    start = [p.detach().clone() for p in pretrained.backbone.parameters()]
    params = list(model.backbone.parameters())

    def penalty() -> torch.Tensor:
        return weight * sum(((p - p0) ** 2).sum() for p, p0 in zip(params, start))

    return train(model, task, lr=lr, epochs=epochs, seed=seed, penalty=penalty, **options)


def surgical(pretrained: DigitNet, task: Task, lr: float, epochs: int, blocks: str, seed: int,
             **options) -> DigitNet:
    """Surgical fine-tuning (Lee et al., ICLR 2023): FT of one backbone block (``blocks`` ∈ :data:`BLOCKS`: ``first``
    conv block, ``middle`` or ``last``) and the fresh head; every other parameter stays at its pretrained value."""
    if blocks not in BLOCKS:
        raise ValueError(f"surgical blocks must be one of {BLOCKS}; got {blocks!r}")
    model = _fresh_head(pretrained, task, seed)
    trainable = [*getattr(model.backbone, blocks).parameters(), *model.head.parameters()]
    return train(model, task, lr=lr, epochs=epochs, seed=seed, trainable=trainable, **options)


def _check(method: str, hp: dict) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    need = HPARAMS[method]
    allowed = need + (() if method == "LP" else ("batch_size",))
    missing = [k for k in need if k not in hp]
    unknown = [k for k in hp if k not in allowed]
    if missing or unknown:
        optional = "" if method == "LP" else " (+ optional batch_size)"
        raise ValueError(f"{method} takes hyperparameters {need}{optional}; missing {missing}, unknown {unknown}")


def _fit(method: str, pretrained: DigitNet, task: Task, hp: dict, seed: int, progress: bool,
         memo: dict | None) -> DigitNet:
    _check(method, hp)
    if memo is not None and method in ("LP", "FT"):  # the parts LP-FT and WiSE-FT reuse across a grid
        key = (method, tuple(sorted(hp.items())), seed)
        if key not in memo:
            memo[key] = _fit(method, pretrained, task, hp, seed, progress, None)
        return memo[key]
    opts = {"progress": progress, **({"batch_size": hp["batch_size"]} if "batch_size" in hp else {})}
    trained = {"lr": hp.get("lr"), "epochs": hp.get("epochs"), "seed": seed, **opts}
    if method == "LP":
        return linear_probe(pretrained, task, hp["C"])
    if method == "FT":
        return fine_tune(pretrained, task, **trained)
    if method == "LP-FT":
        return lp_ft(_fit("LP", pretrained, task, {"C": hp["C"]}, seed, progress, memo), task, **trained)
    if method == "WiSE-FT":
        lp = _fit("LP", pretrained, task, {"C": hp["C"]}, seed, progress, memo)
        ft_hp = {k: v for k, v in hp.items() if k not in ("alpha", "C")}
        return wise_ft(lp, _fit("FT", pretrained, task, ft_hp, seed, progress, memo), hp["alpha"])
    if method == "L2-SP":
        return l2_sp(pretrained, task, weight=hp["weight"], **trained)
    return surgical(pretrained, task, blocks=hp["blocks"], **trained)


def fit(method: str, pretrained: DigitNet, task: Task, hp: dict, seed: int, *, progress: bool = False) -> DigitNet:
    """A new model: ``method`` (one of :data:`METHODS`) applied to ``pretrained`` on ``task`` with hyperparameters
    ``hp`` (the keys in :data:`HPARAMS`). Deterministic on CPU for a given ``seed`` (head init and batch order);
    ``pretrained`` is never modified. Unknown methods and missing or unknown hyperparameters raise ``ValueError``."""
    return _fit(method, pretrained, task, hp, seed, progress, None)


def select(method: str, pretrained: DigitNet, task: Task, grid: list[dict], seed: int, *,
           progress: bool = False) -> tuple[DigitNet, dict, pd.DataFrame]:
    """Fit ``method`` at every hyperparameter setting of ``grid`` and keep the best by ID-val accuracy (as the
    paper's Section 4.1; the first on ties). Returns ``(best_model, best_hp, table)``, ``table`` one row per setting: its
    hyperparameters, ``val_acc``, ``id_acc`` (ID test) and ``ood_acc``. Test and OOD data are measured, never used
    to choose. LP and FT runs shared by LP-FT or WiSE-FT settings are fitted once."""
    if not grid:
        raise ValueError("grid must hold at least one hyperparameter setting")
    for hp in grid:
        _check(method, hp)
    memo: dict = {}
    return best_by_val(((hp, _fit(method, pretrained, task, hp, seed, progress, memo)) for hp in grid), task)


def best_by_val(candidates, task: Task) -> tuple[DigitNet, dict, pd.DataFrame]:
    """Of ``(hp, model)`` pairs (consumed one at a time), the model with the best ID-val accuracy (the first on
    ties), its ``hp`` and the table of every candidate's ``val_acc``, ``id_acc`` and ``ood_acc``."""
    rows, best = [], None
    for hp, model in candidates:
        val = accuracy(model, task.val)
        rows.append({**hp, "val_acc": val, "id_acc": accuracy(model, task.test_id),
                     "ood_acc": accuracy(model, task.test_ood)})
        if best is None or val > best[0]:
            best = (val, model, dict(hp))
    return best[1], best[2], pd.DataFrame(rows)
