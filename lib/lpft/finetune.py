"""LP, FT, LP-FT and three later methods on a pretrained :class:`~lpft.task.Classifier`, behind one interface, at
both scales (the digit chapters and, through :mod:`lpft.scale.finetune`'s ``Runtime``, the paper-scale ones).

``fit(method, pretrained, task, hp, seed)`` returns a new model and never changes ``pretrained``. LP, FT and LP-FT
follow how the LP-FT paper (Kumar et al., ICLR 2022; Sections 4.1-4.2 of its ICLR submission) and its official code
(github.com/AnanyaKumar/transfer_learning) ran them; the others are later methods: WiSE-FT (Wortsman et al., CVPR
2022), L2-SP (Li, Grandvalet and Davoine, ICML 2018) and surgical fine-tuning (Lee et al., ICLR 2023). FT, LP-FT,
L2-SP and surgical share one training loop, :func:`train`; they differ only in the head's initialisation, which
parameters train, the train/eval mode and a penalty. How stored data becomes inputs is the loop's
:class:`~lpft.task.Feed` (default: CPU float tensors). All selection is on ID validation accuracy, never on test or
OOD data.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from torch import nn
from tqdm import tqdm  # plain tqdm: no ipywidgets needed inside kernels

from lpft.records import atomic_write
from lpft.task import Classifier, Feed, Task, predict

METHODS = ("LP", "FT", "LP-FT", "WiSE-FT", "L2-SP", "surgical")
# Hyperparameters each method requires; ``batch_size`` (default 64) is optional for the trained ones.
HPARAMS = {"LP": ("C",), "FT": ("lr", "epochs"), "LP-FT": ("C", "lr", "epochs"),
           "WiSE-FT": ("alpha", "C", "lr", "epochs"), "L2-SP": ("lr", "epochs", "weight"),
           "surgical": ("lr", "epochs", "blocks")}
BLOCKS = ("first", "middle", "last")  # surgical: the backbone block that trains (with the head)
MOMENTUM = 0.9
LP_MAX_ITER = 1000  # scikit-learn iterations of one LP fit (the paper-scale C sweep warm-starts with 200 per C)
PLAIN = Feed()


# ---- measurements -------------------------------------------------------------------------------------------------

@torch.no_grad()
def _outputs(fn: Callable, model: nn.Module, data, feed: Feed, exact: bool, boxes=None) -> torch.Tensor:
    was_training = model.training
    model.eval()
    feed.place(model)
    out = []
    for x in feed.eval_batches(data, boxes):
        with feed.autocast(enabled=not exact):
            out.append(fn(x).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def features(model: nn.Module, data, feed: Feed = PLAIN, boxes=None) -> torch.Tensor:
    """Penultimate features (float32, on the CPU) of ``data``, network in ``eval()`` mode; ``model`` is a
    :class:`~lpft.task.Classifier` or a bare backbone. With ``boxes`` (paper scale:
    :meth:`~lpft.scale.finetune.Runtime.crops`), of that augmented view of each image (the paper's LP trains on one
    augmented view of each training image)."""
    fn = model.features if hasattr(model, "features") else model
    return _outputs(fn, model, data, feed, exact=True, boxes=boxes)


def accuracy(model: nn.Module, data, feed: Feed = PLAIN) -> float:
    """Fraction of ``data`` classified correctly, network in ``eval()`` mode (under the feed's autocast); a set with
    ``classes`` is scored by the argmax over those classes (:func:`lpft.task.predict`)."""
    if len(data) == 0:
        return float("nan")
    logits = _outputs(model, model, data, feed, exact=False)
    return (feed.predict(logits, data) == feed.labels(data)).double().mean().item()


@torch.no_grad()
def head_accuracy(head: nn.Module, f: torch.Tensor, data, feed: Feed = PLAIN) -> float:
    """:func:`accuracy` of a model whose backbone is frozen, from its backbone's features ``f`` of ``data`` (computed
    by :func:`features`): the head applied to the same evaluation batches, so the logits have the same bits as the
    whole model's (CPU, float32 feed)."""
    if len(data) == 0:
        return float("nan")
    n = feed.eval_batch_size
    logits = torch.cat([head(f[i:i + n]) for i in range(0, len(f), n)])
    return (feed.predict(logits, data) == feed.labels(data)).double().mean().item()


def feature_change(pretrained, model: nn.Module, data, feed: Feed = PLAIN) -> float:
    """Mean over examples and dimensions of the squared difference between the penultimate features of ``model`` and
    of ``pretrained`` (a model, or its features of ``data`` already computed), ×100: what the official code's notebook
    ``scripts/lpft_change_in_reps_and_weights.ipynb`` computes. The paper's text reports an average Euclidean
    distance instead (:data:`lpft.paper.FEATURE_DISTANCE_QUOTE`)."""
    before = pretrained if isinstance(pretrained, torch.Tensor) else features(pretrained, data, feed)
    return 100.0 * ((features(model, data, feed) - before) ** 2).mean().item()


# ---- the one training loop ----------------------------------------------------------------------------------------

def _rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "order": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["order"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(model: Classifier, task: Task, *, lr: float, epochs: int, seed: int, feed: Feed = PLAIN,
          trainable: list[nn.Parameter] | None = None, eval_mode: bool = False,
          penalty: Callable[[nn.Module], torch.Tensor] | None = None, checkpoint: Path | None = None,
          on_epoch_end: Callable[[int], None] | None = None, desc: str = "fine-tune", progress: bool = False
          ) -> tuple[Classifier, dict]:
    """Fine-tune ``model`` in place on ``task.train``; returns it at its best epoch by ID-val accuracy, with
    ``{"best_epoch", "best_val", "history"}`` (per epoch: val accuracy, mean training loss, learning rate used).

    SGD with momentum 0.9 (no weight decay) on ``trainable`` (default: every parameter), cross-entropy (+
    ``penalty(model)``, e.g. L2-SP's), cosine learning rate with T_max = ``epochs`` stepped once per epoch, shuffled
    batches of ``feed.batch_size`` in :meth:`Feed.order <lpft.task.Feed.order>` (a generator seeded by ``seed``), each
    batch as ``feed.accumulate`` micro-batches whose gradients add up to the batch's mean (the penalty's gradient is
    added once per step), inputs from the feed (paper scale: device, autocast, augmentation). The network is in
    ``eval()`` mode throughout when ``eval_mode`` (LP-FT's frozen normalisation statistics), else in ``train()``
    mode. Early stopping as in the paper (Section 4.1, on ID validation accuracy): after each epoch the ID-val accuracy
    is measured and the best epoch's weights are kept (first on ties); the starting point (epoch 0) is not a candidate,
    except when ``epochs == 0``, which returns ``model`` unchanged. With ``checkpoint``, the state after each epoch
    (model, optimizer, scheduler, RNG states, early-stopping state) is written there atomically and a run finding one
    resumes after its epoch, bit-identical on a CPU to an uninterrupted run (a checkpoint of another configuration is
    refused). ``on_epoch_end(epoch)`` is called after each epoch's checkpoint.
    """
    feed.place(model, training=True)
    params = list(model.parameters()) if trainable is None else list(trainable)
    chosen = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    opt = torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    generator = torch.Generator().manual_seed(seed)
    meta = {"lr": float(lr), "epochs": int(epochs), "seed": int(seed), "eval_mode": bool(eval_mode),
            "n_train": len(task.train), **feed.meta()}
    state = {"epoch": 0, "best_val": -1.0, "best_epoch": 0, "history": []}
    best = None
    if checkpoint is not None and Path(checkpoint).exists():
        # read onto the CPU: the order generator's state must stay a CPU ByteTensor (torch.set_rng_state refuses a CUDA
        # one); load_state_dict puts the weights and the optimizer's state back on the model's device
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if saved.get("meta") != meta:
            raise RuntimeError(f"checkpoint {checkpoint} belongs to another run ({saved.get('meta')} vs {meta}); "
                               f"delete it to start this run afresh")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["scheduler"])
        _set_rng_state(saved["rng"], generator)
        state, best = saved["progress"], saved["best_state"]
    data, y = task.train, feed.labels(task.train)
    for epoch in tqdm(range(state["epoch"], epochs), desc=desc, initial=state["epoch"], total=epochs,
                      disable=not (progress or feed.progress)):
        model.train(not eval_mode)
        used_lr = opt.param_groups[0]["lr"]
        total, batches = torch.zeros((), device=feed.device), 0
        order = feed.order(len(y), seed, epoch, generator)
        draws = feed.draws(data, seed, epoch)
        for idx in order.split(feed.batch_size):
            if feed.skip(len(idx), eval_mode, first=not batches):
                continue
            opt.zero_grad(set_to_none=True)
            for part in idx.tensor_split(feed.accumulate):  # micro-batches; the gradient is the whole batch's mean
                x = feed.train_inputs(data, part, draws)
                with feed.autocast():
                    loss = F.cross_entropy(model(x).float(), y[part].to(feed.device))
                loss = loss * (len(part) / len(idx)) if feed.accumulate > 1 else loss
                loss.backward()
                total += loss.detach()
            if penalty is not None:
                extra = penalty(model)
                extra.backward()
                total += extra.detach()
            opt.step()
            batches += 1
        schedule.step()
        val = accuracy(model, task.val, feed)
        state["history"].append({"epoch": epoch + 1, "val_acc": val, "train_loss": total.item() / max(batches, 1),
                                 "lr": used_lr})
        state["epoch"] = epoch + 1
        if val > state["best_val"]:
            state["best_val"], state["best_epoch"] = val, epoch + 1
            best = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if checkpoint is not None:
            saved = {"meta": meta, "model": model.state_dict(), "optimizer": opt.state_dict(),
                     "scheduler": schedule.state_dict(), "rng": _rng_state(generator), "progress": state,
                     "best_state": best}
            atomic_write(Path(checkpoint), lambda tmp: torch.save(saved, tmp))
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    if best is not None:
        model.load_state_dict(best)
    for p in model.parameters():
        p.requires_grad_(True)
    return model.eval(), {k: state[k] for k in ("best_epoch", "best_val", "history")}


# ---- LP -----------------------------------------------------------------------------------------------------------

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


@dataclass
class Probe:
    """An LP head on raw features (``W`` (classes, dim), ``b``), its ``C`` (None for a probe trained by SGD) and the
    whole sweep (per ``C``, or per epoch)."""
    C: float | None
    W: np.ndarray
    b: np.ndarray
    table: list[dict]

    def logits(self, f: torch.Tensor) -> np.ndarray:
        return f.double().numpy() @ self.W.T + self.b

    def accuracy(self, f: torch.Tensor, y: torch.Tensor, classes: tuple | None = None) -> float:
        """Accuracy on features ``f`` with labels ``y`` (argmax over ``classes`` only, when given)."""
        return float((predict(self.logits(f), classes) == y.numpy()).mean()) if len(y) else float("nan")


def logistic_probe(f_train: torch.Tensor, y_train: torch.Tensor, Cs, n_classes: int, *, f_val=None, y_val=None,
                   max_iter: int = LP_MAX_ITER, progress: bool = False) -> Probe:
    """LP (the paper's Section 4.1: ℓ2-regularised logistic regression on frozen features; the official
    ``unlabeled_extrapolation/log_reg_sk.py``): scikit-learn's ``LogisticRegression`` (L-BFGS, multinomial, at most
    ``max_iter`` iterations per fit, inverse regularisation ``C``) on ``f_train`` normalised by one scalar mean and std
    over the whole training feature matrix. Over several ``Cs`` (the paper-scale sweep, ``max_iter`` 200), fitted in
    ascending order, each fit warm-started from the previous one, and the best ID-val accuracy on (``f_val``,
    ``y_val``) kept (the smallest such ``C`` on ties); the table records each ``C``'s val accuracy and whether L-BFGS
    converged within ``max_iter``. With one ``C`` (the digit chapter's LP, ``max_iter`` 1000) no validation is
    needed. The weights are un-normalised into the head (:func:`probe_weights`)."""
    Cs = sorted(float(c) for c in Cs)
    if not Cs:
        raise ValueError("Cs must hold at least one value")
    if len(Cs) > 1 and f_val is None:
        raise ValueError("choosing among several Cs needs the ID-val features f_val and labels y_val")
    f = f_train.double().numpy()
    mu, sigma = float(f.mean()), float(f.std())
    z = (f - mu) / sigma
    clf = LogisticRegression(max_iter=max_iter, warm_start=True)
    best, table = None, []
    for C in tqdm(Cs, desc="LP: C sweep", disable=not progress or len(Cs) == 1):
        clf.set_params(C=C)
        with warnings.catch_warnings():
            if len(Cs) > 1:  # a sweep records convergence in its table; a single fit warns as scikit-learn does
                warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(z, y_train.numpy())
        W, b = probe_weights(clf, mu, sigma, n_classes)
        probe = Probe(C, W, b, [])
        acc = float("nan") if f_val is None else probe.accuracy(f_val, y_val)
        table.append({"C": C, "val_acc": acc, "converged": bool(np.max(clf.n_iter_) < max_iter)})
        if best is None or acc > best[0]:
            best = (acc, probe)
    best[1].table = table
    return best[1]


def with_probe_head(pretrained: nn.Module, probe: Probe) -> Classifier:
    """A copy of ``pretrained`` (a :class:`~lpft.task.Classifier`, or a bare backbone) with the LP head (LP-FT's
    start), in ``eval()`` mode, on the CPU; the backbone is an exact copy."""
    model = _copy(pretrained)
    model.head = nn.Linear(model.head.in_features, probe.W.shape[0])
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(probe.W))
        model.head.bias.copy_(torch.from_numpy(probe.b))
    return model.eval()


def linear_probe(pretrained: Classifier, task: Task, C: float, feed: Feed = PLAIN,
                 train_features: torch.Tensor | None = None) -> Classifier:
    """LP (the paper's Section 4.1) with one ``C``: :func:`logistic_probe` on the frozen penultimate features of
    ``task.train`` (``eval()`` mode, max_iter 1000; ``train_features``: those features, already computed by
    :func:`features`), its head put on a copy of ``pretrained`` (``head(f) = W (f − μ)/σ + b``; classes absent from
    training get zero rows)."""
    f = features(pretrained, task.train, feed) if train_features is None else train_features
    return with_probe_head(pretrained, logistic_probe(f, feed.labels(task.train), [C], task.n_classes))


# ---- the methods --------------------------------------------------------------------------------------------------

def _copy(pretrained: nn.Module) -> Classifier:
    if isinstance(pretrained, Classifier):
        return copy.deepcopy(pretrained).cpu()
    return Classifier(copy.deepcopy(pretrained).cpu(), 1)


def with_fresh_head(pretrained: nn.Module, n_classes: int, seed: int) -> Classifier:
    """A copy of ``pretrained`` (a :class:`~lpft.task.Classifier`, or a bare backbone) with a head in PyTorch's default
    initialisation drawn from ``seed`` (FT's start), on the CPU."""
    model = _copy(pretrained)
    torch.manual_seed(seed)
    model.head = nn.Linear(model.head.in_features, n_classes)
    return model


def fine_tune(pretrained: nn.Module, task: Task, *, lr: float, epochs: int, seed: int, **options
              ) -> tuple[Classifier, dict]:
    """FT (the paper's Section 4.1): fresh random head, every parameter trained, network in ``train()`` mode
    (BatchNorm statistics update). ``options``: those of :func:`train`."""
    return train(with_fresh_head(pretrained, task.n_classes, seed), task, lr=lr, epochs=epochs, seed=seed, **options)


def lp_ft(lp_model: Classifier, task: Task, *, lr: float, epochs: int, seed: int, **options
          ) -> tuple[Classifier, dict]:
    """LP-FT (the paper's Section 4.2): from the LP model (its head), every parameter trained with a 10–100× smaller
    learning rate than FT, network in ``eval()`` mode so normalisation statistics stay frozen (the official code's
    ``use_net_val_mode``). (GroupNorm and no-norm networks have no running statistics, so there ``eval()`` changes
    nothing; GroupNorm's affine parameters train, as BatchNorm's did in the paper.)"""
    return train(copy.deepcopy(lp_model), task, lr=lr, epochs=epochs, seed=seed, eval_mode=True, **options)


def wise_ft(lp_model: Classifier, ft_model: Classifier, alpha: float) -> Classifier:
    """WiSE-FT (Wortsman et al., CVPR 2022): θ = (1 − α)·θ_LP + α·θ_FT, every parameter and float buffer
    (BatchNorm statistics included) interpolated, on the CPU. Here the zero-shot end is the LP model (pretrained
    backbone + LP head); α = 0 and α = 1 return the two ends exactly. (The WiSE-FT paper fine-tunes from the
    zero-shot head; this FT end starts from a random head, as FT does in the LP-FT paper.)"""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha}")
    model = copy.deepcopy(lp_model).cpu()
    ft = {k: v.detach().cpu() for k, v in ft_model.state_dict().items()}
    model.load_state_dict({k: (1 - alpha) * v + alpha * ft[k] if v.is_floating_point() else v
                           for k, v in model.state_dict().items()})
    return model.eval()


def l2_sp(pretrained: nn.Module, task: Task, *, weight: float, lr: float, epochs: int, seed: int, **options
          ) -> tuple[Classifier, dict]:
    """L2-SP (Li, Grandvalet and Davoine, ICML 2018; the LP-FT paper's ablation, weight 0.01): FT plus
    ``weight``·‖θ_backbone − θ_pretrained‖² (squared L2 distance summed over every backbone parameter) added to each
    step's loss; the fresh head is not penalised. Plain SGD on the penalty alone is stable only for
    lr·weight < 1 + momentum."""
    model = with_fresh_head(pretrained, task.n_classes, seed)
    device = options.get("feed", PLAIN).device
    start = [p.detach().to(device, copy=True) for p in model.backbone.parameters()]

    def penalty(m: Classifier) -> torch.Tensor:
        return weight * sum(((p - p0) ** 2).sum() for p, p0 in zip(m.backbone.parameters(), start))

    return train(model, task, lr=lr, epochs=epochs, seed=seed, penalty=penalty, **options)


def surgical(pretrained: Classifier, task: Task, *, lr: float, epochs: int, blocks: str, seed: int, **options
             ) -> tuple[Classifier, dict]:
    """Surgical fine-tuning (Lee et al., ICLR 2023): FT of one backbone block (``blocks`` ∈ :data:`BLOCKS`: ``first``
    conv block, ``middle`` or ``last``) and the fresh head; every other parameter stays at its pretrained value."""
    if blocks not in BLOCKS:
        raise ValueError(f"surgical blocks must be one of {BLOCKS}; got {blocks!r}")
    model = with_fresh_head(pretrained, task.n_classes, seed)
    trainable = [*getattr(model.backbone, blocks).parameters(), *model.head.parameters()]
    return train(model, task, lr=lr, epochs=epochs, seed=seed, trainable=trainable, **options)


# ---- one interface: fit and select on ID-val ----------------------------------------------------------------------

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


def _fit(method: str, pretrained: Classifier, task: Task, hp: dict, seed: int, progress: bool,
         memo: dict | None) -> Classifier:
    _check(method, hp)
    if memo is not None and method in ("LP", "FT"):  # the parts LP-FT and WiSE-FT reuse across a grid
        key = (method, tuple(sorted(hp.items())), seed)
        if key not in memo:
            memo[key] = _fit(method, pretrained, task, hp, seed, progress, None)
        return memo[key]
    feed = Feed(batch_size=hp["batch_size"]) if "batch_size" in hp else PLAIN
    trained = {"lr": hp.get("lr"), "epochs": hp.get("epochs"), "seed": seed, "feed": feed, "progress": progress}
    if method == "LP":
        return linear_probe(pretrained, task, hp["C"])
    if method == "FT":
        return fine_tune(pretrained, task, **trained)[0]
    if method == "LP-FT":
        return lp_ft(_fit("LP", pretrained, task, {"C": hp["C"]}, seed, progress, memo), task, **trained)[0]
    if method == "WiSE-FT":
        lp = _fit("LP", pretrained, task, {"C": hp["C"]}, seed, progress, memo)
        ft_hp = {k: v for k, v in hp.items() if k not in ("alpha", "C")}
        return wise_ft(lp, _fit("FT", pretrained, task, ft_hp, seed, progress, memo), hp["alpha"])
    if method == "L2-SP":
        return l2_sp(pretrained, task, weight=hp["weight"], **trained)[0]
    return surgical(pretrained, task, blocks=hp["blocks"], **trained)[0]


def fit(method: str, pretrained: Classifier, task: Task, hp: dict, seed: int, *, progress: bool = False
        ) -> Classifier:
    """A new model: ``method`` (one of :data:`METHODS`) applied to ``pretrained`` on ``task`` with hyperparameters
    ``hp`` (the keys in :data:`HPARAMS`). Deterministic on CPU for a given ``seed`` (head init and batch order);
    ``pretrained`` is never modified. Unknown methods and missing or unknown hyperparameters raise ``ValueError``."""
    return _fit(method, pretrained, task, hp, seed, progress, None)


def select(method: str, pretrained: Classifier, task: Task, grid: list[dict], seed: int, *,
           progress: bool = False) -> tuple[Classifier, dict, pd.DataFrame]:
    """Fit ``method`` at every hyperparameter setting of ``grid`` and keep the best by ID-val accuracy (as the
    paper's Section 4.1; the first on ties). Returns ``(best_model, best_hp, table)``, ``table`` one row per setting:
    its hyperparameters, ``val_acc``, ``id_acc`` (ID test) and ``ood_acc``. Test and OOD data are measured, never used
    to choose. LP and FT runs shared by LP-FT or WiSE-FT settings are fitted once."""
    if not grid:
        raise ValueError("grid must hold at least one hyperparameter setting")
    for hp in grid:
        _check(method, hp)
    memo: dict = {}
    return best_by_val(((hp, _fit(method, pretrained, task, hp, seed, progress, memo)) for hp in grid), task)


def best_by_val(candidates, task: Task) -> tuple[Classifier, dict, pd.DataFrame]:
    """Of ``(hp, model)`` pairs (consumed one at a time), the model with the best ID-val accuracy (the first on
    ties), its ``hp`` and the table of every candidate's ``val_acc``, ``id_acc`` and ``ood_acc`` (a task with one OOD
    set)."""
    rows, best = [], None
    for hp, model in candidates:
        val = accuracy(model, task.val)
        rows.append({**hp, "val_acc": val, "id_acc": accuracy(model, task.test_id),
                     "ood_acc": accuracy(model, task.test_ood)})
        if best is None or val > best[0]:
            best = (val, model, dict(hp))
    return best[1], best[2], pd.DataFrame(rows)
