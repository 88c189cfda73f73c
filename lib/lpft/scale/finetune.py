"""LP, FT and LP-FT on image tasks at the paper's scale (its Section 4 and the official code), on a GPU or a CPU.

The same three methods as :mod:`lpft.finetune` (the CPU digit chapter), for a :class:`~lpft.scale.backbones.Classifier` on an
:class:`~lpft.scale.imagedata.ImageTask` whose images stay ``uint8`` until each batch is moved to the device:

* **LP** (:func:`linear_probe`): penultimate features of the frozen backbone (``eval()`` mode, float32), one scalar
  mean and std over the training features, scikit-learn's L-BFGS logistic regression over a grid of ``C`` (warm
  started from small to large ``C``, ``max_iter`` 200), the ``C`` with the best ID-val accuracy kept;
* **FT** (:func:`fine_tune`): a fresh head in PyTorch's default initialisation (drawn from the seed), every parameter
  trained, network in ``train()`` mode (BatchNorm statistics update);
* **LP-FT** (:func:`lp_ft`): the LP head, then every parameter trained with a 10-100× smaller learning rate, network
  in ``eval()`` mode (BatchNorm statistics frozen, the paper's ``use_net_val_mode``);
* and two follow-ups, as in the digit chapter: **WiSE-FT** (:func:`wise_ft`, the FT model's weights interpolated with
  the LP model's) and **L2-SP** (:func:`l2_sp`, FT with a squared-distance penalty towards the pretrained backbone).

FT and LP-FT share :func:`train`: SGD with momentum 0.9, no weight decay, cross-entropy, cosine learning rate stepped
once per epoch, batches in an order fixed by (seed, epoch), the experiment's training augmentation (none for CIFAR,
RandomResizedCrop + flip for BREEDS, random crop + flip for DomainNet; drawn from (seed, epoch) on the CPU, applied on
the device), gradient accumulation over micro-batches where the paper used it (DomainNet), early stopping at the epoch with the best ID-val accuracy
(the pretrained starting point is never a candidate). On a GPU it runs under bf16 autocast with channels-last
tensors (:class:`Runtime`). After every epoch it can write a checkpoint (model, optimizer, scheduler, RNG states and
the early-stopping state) atomically, and it resumes from one: on a CPU a resumed run ends bit-identical to an
uninterrupted one. :func:`evaluate` measures ID and OOD accuracy and the feature change (:func:`feature_change`, a
mean squared difference).
"""
from __future__ import annotations

import contextlib
import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from torch import nn
from tqdm import tqdm  # plain tqdm: no ipywidgets needed inside kernels

from lpft.scale import imagedata
from lpft.scale.backbones import Classifier
from lpft.records import atomic_write
from lpft.finetune import BATCH_SIZE, MOMENTUM, probe_weights

PRECISIONS = ("fp32", "bf16")
LP_MAX_ITER = 200  # scikit-learn iterations per C (the official log_reg_sk.py also caps them and warm-starts)


@dataclass(frozen=True)
class Runtime:
    """Where and how a run computes: device, autocast precision for training and accuracy (features for LP and
    feature change are always float32), channels-last memory format, batch sizes, progress bars, and how stored
    images become inputs (the official configs' transforms): ``image_size``, the evaluation ``centre_crop``, the
    training ``augment`` (one of :data:`lpft.scale.imagedata.AUGMENTATIONS`, with a horizontal flip), the backbone's input normalisation
    ``mean``/``std``, and ``accumulate`` micro-batches per SGD step (DomainNet: batch 32 as 2 × 16)."""
    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False
    image_size: int = 224
    batch_size: int = BATCH_SIZE
    eval_batch_size: int = 256
    progress: bool = False
    augment: str = "none"
    centre_crop: bool = False
    accumulate: int = 1
    mean: tuple = imagedata.IMAGENET_MEAN
    std: tuple = imagedata.IMAGENET_STD

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {self.precision!r}")
        if self.augment not in imagedata.AUGMENTATIONS:
            raise ValueError(f"augment must be one of {imagedata.AUGMENTATIONS}; got {self.augment!r}")
        if self.accumulate < 1 or self.batch_size % self.accumulate:
            raise ValueError(f"accumulate must divide batch_size; got {self.accumulate} and {self.batch_size}")

    @classmethod
    def for_device(cls, device: str, **options) -> Runtime:
        """bf16 autocast and channels-last on a GPU, float32 and the default layout on a CPU (overridable)."""
        gpu = torch.device(device).type == "cuda"
        return cls(device=device, **{"precision": "bf16" if gpu else "fp32", "channels_last": gpu, **options})

    def autocast(self, enabled: bool = True):
        if not enabled or self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation inputs of a uint8 batch (no randomness)."""
        return imagedata.prepare(x, self.image_size, self.device, self.mean, self.std,
                                 channels_last=self.channels_last, centre_crop=self.centre_crop)

    def crops(self, data: imagedata.ImageSet, generator: torch.Generator) -> torch.Tensor | None:
        """One augmentation draw (crop box and flip) per image of ``data``, on the stored images; without augmentation
        the evaluation view (:meth:`views`). A set stored as whole photographs (:attr:`ImageSet.photo_hw`) has its
        RandomResizedCrop drawn on each photograph and mapped onto the stored copy."""
        if self.augment == "none":
            return self.views(data)
        stored = tuple(data.x.shape[-2:])
        if data.photo_hw is None:
            return imagedata.crop_boxes(len(data), *stored, self.augment, self.image_size, generator)
        if self.augment != "random-resized-crop":
            raise ValueError(f"{self.augment} crops the stored image; a set stored as whole photographs (photo_hw) is "
                             f"augmented with random-resized-crop")
        height, width = data.photo_hw.T
        boxes = imagedata.crop_boxes(len(data), height, width, self.augment, self.image_size, generator)
        return imagedata.onto_stored(boxes, data.photo_hw, stored)

    def views(self, data: imagedata.ImageSet) -> torch.Tensor | None:
        """The evaluation view's boxes of a set stored as whole photographs: each photograph's centre, as
        Resize + CenterCrop (with ``centre_crop``, the central ``image_size`` of a stored-size shorter side, BREEDS'
        224 of 256); None for other sets, whose evaluation inputs are :meth:`inputs`."""
        if data.photo_hw is None:
            return None
        stored = tuple(data.x.shape[-2:])
        fraction = self.image_size / min(stored) if self.centre_crop and min(stored) > self.image_size else 1.0
        return imagedata.onto_stored(imagedata.centre_boxes(data.photo_hw, fraction), data.photo_hw, stored)

    def view_inputs(self, data: imagedata.ImageSet, part, boxes: torch.Tensor | None) -> torch.Tensor:
        """Inputs of ``data``'s images ``part`` without randomness of their own: cut by ``boxes`` (a set's
        :meth:`views`, or the LP's augmented view) when given, else :meth:`inputs`."""
        x = data.x[part]
        return self.inputs(x) if boxes is None else self.train_inputs(x, boxes[part])

    def train_inputs(self, x: torch.Tensor, boxes: torch.Tensor | None) -> torch.Tensor:
        """Training inputs of a uint8 batch with its images' draws from :meth:`crops` (plain inputs when None)."""
        if boxes is None:
            return imagedata.prepare(x, self.image_size, self.device, self.mean, self.std,
                                     channels_last=self.channels_last)
        return imagedata.augment(x, boxes, self.image_size, self.device, self.mean, self.std,
                                 channels_last=self.channels_last)

    def place(self, model: nn.Module) -> nn.Module:
        model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model


# ---- measurements -------------------------------------------------------------------------------------------------

@torch.no_grad()
def _outputs(fn: Callable, model: nn.Module, data: imagedata.ImageSet, rt: Runtime, exact: bool,
             boxes: torch.Tensor | None = None) -> torch.Tensor:
    was_training = model.training
    model.eval()
    rt.place(model)
    boxes = rt.views(data) if boxes is None else boxes
    out = []
    for i in range(0, len(data), rt.eval_batch_size):
        part = slice(i, i + rt.eval_batch_size)
        x = rt.view_inputs(data, part, boxes)
        with rt.autocast(enabled=not exact):
            out.append(fn(x).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def features(model: nn.Module, data: imagedata.ImageSet, rt: Runtime, boxes: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Penultimate features (float32, on the CPU) of ``data``, network in ``eval()`` mode; ``model`` is a
    :class:`~lpft.scale.backbones.Classifier` or a bare backbone. With ``boxes`` (:meth:`Runtime.crops`), of that augmented
    view of each image (the paper's LP trains on one augmented view of each training image)."""
    fn = model.features if hasattr(model, "features") else model
    return _outputs(fn, model, data, rt, exact=True, boxes=boxes)


def accuracy(model: nn.Module, data: imagedata.ImageSet, rt: Runtime) -> float:
    """Fraction of ``data`` classified correctly, network in ``eval()`` mode (under the runtime's autocast); a set
    with ``classes`` is scored by the argmax over those classes (:func:`lpft.scale.imagedata.predict`)."""
    if len(data) == 0:
        return float("nan")
    logits = _outputs(model, model, data, rt, exact=False)
    return (imagedata.predict(logits, data.classes) == data.y).double().mean().item()


def feature_change(before: torch.Tensor, model: nn.Module, data: imagedata.ImageSet, rt: Runtime) -> float:
    """Mean over examples and dimensions of the squared difference between the penultimate features of ``model``
    and ``before`` (the pretrained features of the same ``data``), ×100: what the official code's notebook
    ``scripts/lpft_change_in_reps_and_weights.ipynb`` computes. The paper's text reports an average Euclidean
    distance instead (:data:`lpft.paper.FEATURE_DISTANCE_QUOTE`)."""
    return 100.0 * ((features(model, data, rt) - before) ** 2).mean().item()


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, data: imagedata.ImageSet, rt: Runtime) -> nn.Module:
    """Set every BatchNorm layer's running statistics to the average over ``data``'s batches (evaluation inputs, in
    batches of ``rt.eval_batch_size``), weights unchanged; the model is left in ``eval()`` mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    rt.place(model).train()
    boxes = rt.views(data)
    for i in range(0, len(data), rt.eval_batch_size):
        part = slice(i, i + rt.eval_batch_size)
        model(rt.view_inputs(data, part, boxes))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


# ---- LP -----------------------------------------------------------------------------------------------------------

@dataclass
class Probe:
    """The selected LP head on raw features (``W`` (classes, dim), ``b``), its ``C`` (None for :func:`sgd_probe`) and
    the whole sweep (per ``C``, or per epoch)."""
    C: float | None
    W: np.ndarray
    b: np.ndarray
    table: list[dict]

    def logits(self, f: torch.Tensor) -> np.ndarray:
        return f.double().numpy() @ self.W.T + self.b

    def accuracy(self, f: torch.Tensor, y: torch.Tensor, classes: tuple | None = None) -> float:
        """Accuracy on features ``f`` with labels ``y`` (argmax over ``classes`` only, when given)."""
        return float((imagedata.predict(self.logits(f), classes) == y.numpy()).mean()) if len(y) else float("nan")


def linear_probe(f_train: torch.Tensor, y_train: torch.Tensor, f_val: torch.Tensor, y_val: torch.Tensor,
                 Cs, n_classes: int, max_iter: int = LP_MAX_ITER, progress: bool = False) -> Probe:
    """LP (the paper's Section 4.1; the official ``unlabeled_extrapolation/log_reg_sk.py``): logistic regression on
    ``f_train`` normalised by one scalar mean and std, fitted for every ``C`` in ascending order (each fit warm-started from the previous one), the best ID-val accuracy kept
    (the smallest such ``C`` on ties). The sweep's table records each ``C``'s val accuracy and whether L-BFGS
    converged within ``max_iter``."""
    Cs = sorted(float(c) for c in Cs)
    if not Cs:
        raise ValueError("Cs must hold at least one value")
    f = f_train.double().numpy()
    mu, sigma = float(f.mean()), float(f.std())
    z = (f - mu) / sigma
    clf = LogisticRegression(max_iter=max_iter, warm_start=True)
    best, table = None, []
    for C in tqdm(Cs, desc="LP: C sweep", disable=not progress):
        clf.set_params(C=C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(z, y_train.numpy())
        W, b = probe_weights(clf, mu, sigma, n_classes)
        probe = Probe(C, W, b, [])
        acc = probe.accuracy(f_val, y_val)
        table.append({"C": C, "val_acc": acc, "converged": bool(np.max(clf.n_iter_) < max_iter)})
        if best is None or acc > best[0]:
            best = (acc, probe)
    best[1].table = table
    return best[1]


def sgd_probe(f_train: torch.Tensor, y_train: torch.Tensor, f_val: torch.Tensor, y_val: torch.Tensor, n_classes: int,
              *, epochs: int = 5, lr: float = 0.1, batch_size: int = 128, seed: int = 0, device: str = "cpu",
              progress: bool = False) -> Probe:
    """LP as the official code's ImageNet run (``torch_linprobe`` in ``scripts/run_adaptation_experiments.py``: a linear
    probe trained by SGD, 5 epochs at learning rate 0.1,
    instead of scikit-learn's logistic regression, which 1000 classes and 1.28M images make too slow): a head in
    PyTorch's default initialisation drawn from ``seed``, trained on the frozen features with FT's optimiser (SGD,
    momentum 0.9, no weight decay, cross-entropy, cosine schedule stepped per epoch, batches in :func:`batch_order`),
    the epoch with the best ID-val accuracy kept. The features are what the frozen network computes in ``eval()``
    mode, so this is the head trained inside the frozen network, without recomputing the backbone every epoch. The
    probe's ``C`` is None; its table holds each epoch's ID-val accuracy."""
    torch.manual_seed(seed)
    head = nn.Linear(f_train.shape[1], n_classes).to(device)
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    f, y = f_train.float().to(device), y_train.to(device)
    best, table = None, []
    for epoch in tqdm(range(epochs), desc="LP: SGD", disable=not progress):
        for idx in batch_order(len(y), seed, epoch).split(batch_size):
            idx = idx.to(device)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(head(f[idx]), y[idx]).backward()
            opt.step()
        schedule.step()
        probe = Probe(None, head.weight.detach().cpu().double().numpy(), head.bias.detach().cpu().double().numpy(), [])
        acc = probe.accuracy(f_val, y_val)
        table.append({"epoch": epoch + 1, "val_acc": acc})
        if best is None or acc > best[0]:
            best = (acc, probe)
    best[1].table = table
    return best[1]


# ---- the shared training loop -------------------------------------------------------------------------------------

def batch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of ``n`` training examples in ``epoch`` of a run with ``seed``: fixed by (seed, epoch)
    alone, so a resumed run visits the same batches."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(1_000_003 * seed + epoch))


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(model: Classifier, task: imagedata.ImageTask, *, lr: float, epochs: int, seed: int, eval_mode: bool,
          rt: Runtime, checkpoint: Path | None = None, on_epoch_end: Callable[[int], None] | None = None,
          desc: str = "fine-tune", penalty: Callable[[Classifier], torch.Tensor] | None = None
          ) -> tuple[Classifier, dict]:
    """Fine-tune every parameter of ``model`` in place on ``task.train``; returns it at its best epoch by ID-val
    accuracy, with ``{"best_epoch", "best_val", "history"}`` (per epoch: val accuracy, mean training loss, learning
    rate used).

    SGD (momentum 0.9, no weight decay), cross-entropy, cosine schedule with T_max = ``epochs`` stepped per epoch;
    batches in an order fixed by (seed, epoch) and, with the runtime's ``augment``, one crop and flip per image drawn
    from (seed, epoch) too; ``rt.accumulate`` micro-batches per step (BatchNorm sees each micro-batch).
    ``penalty(model)``, when given, is added to each step's loss (L2-SP). ``eval_mode`` keeps the network in
    ``eval()`` mode (LP-FT) instead of ``train()`` (FT). With ``checkpoint``, the
    state after each epoch is written there atomically and a run finding one resumes after its epoch (a checkpoint of
    another configuration is refused). ``on_epoch_end(epoch)`` is called after each epoch's checkpoint.
    """
    rt.place(model)
    if torch.device(rt.device).type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    meta = {"lr": float(lr), "epochs": int(epochs), "seed": int(seed), "eval_mode": bool(eval_mode),
            "n_train": len(task.train), "batch_size": rt.batch_size, "accumulate": rt.accumulate,
            "augment": rt.augment}
    progress = {"epoch": 0, "best_val": -1.0, "best_epoch": 0, "history": []}
    best_state = None
    if checkpoint is not None and Path(checkpoint).exists():
        saved = torch.load(checkpoint, map_location=rt.device, weights_only=True)
        if saved.get("meta") != meta:
            raise RuntimeError(f"checkpoint {checkpoint} belongs to another run ({saved.get('meta')} vs {meta}); "
                               f"delete it to start this run afresh")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["scheduler"])
        _set_rng_state(saved["rng"])
        progress, best_state = saved["progress"], saved["best_state"]
    n = len(task.train)
    for epoch in tqdm(range(progress["epoch"], epochs), desc=desc, initial=progress["epoch"], total=epochs,
                      disable=not rt.progress):
        model.train(not eval_mode)
        used_lr = opt.param_groups[0]["lr"]
        total, batches = torch.zeros((), device=rt.device), 0
        order = batch_order(n, seed, epoch)
        boxes = rt.crops(task.train, imagedata.augmentation_generator(seed, 1, epoch))
        for idx in order.split(rt.batch_size):
            if len(idx) < 2 * rt.accumulate and not eval_mode and batches:  # BatchNorm cannot train on one example
                continue
            opt.zero_grad(set_to_none=True)
            for part in idx.tensor_split(rt.accumulate):  # micro-batches; the gradient is the whole batch's mean
                x = rt.train_inputs(task.train.x[part], None if boxes is None else boxes[part])
                with rt.autocast():
                    loss = F.cross_entropy(model(x).float(), task.train.y[part].to(rt.device))
                loss = loss * (len(part) / len(idx)) if rt.accumulate > 1 else loss
                loss.backward()
                total += loss.detach()
            if penalty is not None:
                extra = penalty(model)
                extra.backward()
                total += extra.detach()
            opt.step()
            batches += 1
        schedule.step()
        val = accuracy(model, task.val, rt)
        progress["history"].append({"epoch": epoch + 1, "val_acc": val, "train_loss": total.item() / max(batches, 1),
                                    "lr": used_lr})
        progress["epoch"] = epoch + 1
        if val > progress["best_val"]:
            progress["best_val"], progress["best_epoch"] = val, epoch + 1
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if checkpoint is not None:
            state = {"meta": meta, "model": model.state_dict(), "optimizer": opt.state_dict(),
                     "scheduler": schedule.state_dict(), "rng": _rng_state(), "progress": progress,
                     "best_state": best_state}
            atomic_write(Path(checkpoint), lambda tmp: torch.save(state, tmp))
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), {k: progress[k] for k in ("best_epoch", "best_val", "history")}


# ---- the methods --------------------------------------------------------------------------------------------------

def with_fresh_head(backbone: nn.Module, n_classes: int, seed: int) -> Classifier:
    """A copy of ``backbone`` with a head in PyTorch's default initialisation drawn from ``seed`` (FT's start)."""
    backbone = copy.deepcopy(backbone).cpu()
    torch.manual_seed(seed)
    return Classifier(backbone, n_classes)


def with_probe_head(backbone: nn.Module, probe: Probe) -> Classifier:
    """A copy of ``backbone`` with the LP head (LP-FT's start)."""
    model = Classifier(copy.deepcopy(backbone).cpu(), probe.W.shape[0])
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(probe.W))
        model.head.bias.copy_(torch.from_numpy(probe.b))
    return model


def fine_tune(backbone: nn.Module, task: imagedata.ImageTask, *, lr: float, epochs: int, seed: int, rt: Runtime,
              **options) -> tuple[Classifier, dict]:
    """FT (the paper's Section 4.1): fresh random head, every parameter trained, network in ``train()`` mode."""
    return train(with_fresh_head(backbone, task.n_classes, seed), task, lr=lr, epochs=epochs, seed=seed,
                 eval_mode=False, rt=rt, **options)


def lp_ft(backbone: nn.Module, probe: Probe, task: imagedata.ImageTask, *, lr: float, epochs: int, seed: int,
          rt: Runtime, **options) -> tuple[Classifier, dict]:
    """LP-FT (the paper's Section 4.2): from the LP head, every parameter trained (with a 10-100× smaller learning rate
    than FT), network in ``eval()`` mode so the BatchNorm statistics stay the pretrained ones."""
    return train(with_probe_head(backbone, probe), task, lr=lr, epochs=epochs, seed=seed, eval_mode=True, rt=rt,
                 **options)


def l2_sp(backbone: nn.Module, task: imagedata.ImageTask, *, weight: float, lr: float, epochs: int, seed: int,
          rt: Runtime, **options) -> tuple[Classifier, dict]:
    """L2-SP (Li, Grandvalet and Davoine, ICML 2018; the LP-FT paper's ablation, weight 0.01): FT plus
    ``weight``·‖θ_backbone − θ_pretrained‖² (summed over every backbone parameter), added to each step's loss; the
    fresh head is not penalised."""
    model = with_fresh_head(backbone, task.n_classes, seed)
    start = [p.detach().to(rt.device, copy=True) for p in model.backbone.parameters()]

    def penalty(m: Classifier) -> torch.Tensor:
        return weight * sum(((p - p0) ** 2).sum() for p, p0 in zip(m.backbone.parameters(), start))

    return train(model, task, lr=lr, epochs=epochs, seed=seed, eval_mode=False, rt=rt, penalty=penalty, **options)


def wise_ft(lp_model: Classifier, ft_model: Classifier, alpha: float) -> Classifier:
    """WiSE-FT (Wortsman et al., CVPR 2022): θ = (1 − α)·θ_LP + α·θ_FT for every parameter and float buffer (BatchNorm
    statistics included), on the CPU; the α = 0 end is the LP model (pretrained backbone and LP head), as in the digit
    chapter (the WiSE-FT paper starts from CLIP's zero-shot head)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha}")
    model = copy.deepcopy(lp_model).cpu()
    ft = {k: v.detach().cpu() for k, v in ft_model.state_dict().items()}
    model.load_state_dict({k: (1 - alpha) * v + alpha * ft[k] if v.is_floating_point() else v
                           for k, v in model.state_dict().items()})
    return model.eval()


def evaluation_sets(task: imagedata.ImageTask, n: int | None) -> dict[str, imagedata.ImageSet]:
    """The inputs of the feature-change measurement: fixed subsets of at most ``n`` ID test and OOD test images."""
    return {"ID": task.test_id.subset(n), **{name: data.subset(n) for name, data in task.ood.items()}}


def evaluate(model: Classifier, task: imagedata.ImageTask, rt: Runtime,
             before: dict[str, torch.Tensor] | None = None, sets: dict | None = None) -> dict:
    """ID-val, ID test and OOD test accuracy of ``model``; with ``before`` (pretrained features of ``sets``, from
    :func:`evaluation_sets`), the feature change on each of those sets too."""
    out = {"val": accuracy(model, task.val, rt), "id": accuracy(model, task.test_id, rt),
           "ood": {name: accuracy(model, data, rt) for name, data in task.ood.items()}}
    if before is not None:
        out["feature_change"] = {name: feature_change(before[name], model, data, rt) for name, data in sets.items()}
    return out

