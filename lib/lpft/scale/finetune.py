"""What is paper-scale about fine-tuning (the LP-FT paper's Section 4 and the official code), on a GPU or a CPU.

The methods, the one training loop and the measurements are the core's (:mod:`lpft.finetune`): LP
(:func:`~lpft.finetune.logistic_probe`: one scalar mean and std over the training features, L-BFGS logistic
regression over a grid of ``C`` warm-started from small to large ``C``, ``max_iter`` 200 here, the best ID-val
accuracy kept), FT, LP-FT, WiSE-FT and L2-SP, on a :class:`~lpft.task.Classifier` and a :class:`~lpft.task.Task`
whose images (:class:`~lpft.scale.imagedata.ImageSet`) stay ``uint8`` until each batch is moved to the device. This
module holds what only the paper-scale runs need:

* :class:`Runtime`, the loop's :class:`~lpft.task.Feed` at this scale: device, bf16 autocast and channels-last on a
  GPU, uint8 -> normalised float inputs, the experiment's training augmentation (none for CIFAR, RandomResizedCrop +
  flip for BREEDS, random crop + flip for DomainNet; drawn from (seed, epoch) on the CPU, applied on the device),
  gradient accumulation over micro-batches where the paper used it (DomainNet), batches in an order fixed by
  (seed, epoch) (:func:`batch_order`), and no training batch of one example while BatchNorm trains. The core loop's
  epoch checkpoints make a resumed run bit-identical on a CPU to an uninterrupted one;
* :func:`sgd_probe` (LP as the official ImageNet run trained it), :func:`calibrate_batchnorm`, and :func:`evaluate`
  (ID and OOD accuracy and the feature change on fixed subsets, :func:`evaluation_sets`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm  # plain tqdm: no ipywidgets needed inside kernels

from lpft import finetune
from lpft.finetune import MOMENTUM, Probe
from lpft.scale import imagedata, transforms
from lpft.task import BATCH_SIZE, Classifier, Feed, Task

PRECISIONS = ("fp32", "bf16")
LP_MAX_ITER = 200  # scikit-learn iterations per C (the official log_reg_sk.py also caps them and warm-starts)


def batch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of ``n`` training examples in ``epoch`` of a run with ``seed``: fixed by (seed, epoch)
    alone, so a resumed run visits the same batches."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(1_000_003 * seed + epoch))


@dataclass(frozen=True)
class Runtime(Feed):
    """Where and how a run computes (the :class:`~lpft.task.Feed` of the paper-scale runs): device, autocast
    precision for training and accuracy (features for LP and feature change are always float32), channels-last memory
    format, batch sizes, progress bars, and how stored images become inputs (the official configs' transforms):
    ``image_size``, the evaluation ``centre_crop``, the training ``augment`` (one of
    :data:`lpft.scale.transforms.AUGMENTATIONS`, with a horizontal flip), the backbone's input normalisation
    ``mean``/``std``, and ``accumulate`` micro-batches per SGD step (DomainNet: batch 32 as 2 × 16). Training batches
    follow :func:`batch_order` (fixed by (seed, epoch)); a batch too small for BatchNorm to train on is skipped."""
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
    mean: tuple = transforms.IMAGENET_MEAN
    std: tuple = transforms.IMAGENET_STD

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {self.precision!r}")
        if self.augment not in transforms.AUGMENTATIONS:
            raise ValueError(f"augment must be one of {transforms.AUGMENTATIONS}; got {self.augment!r}")
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

    def place(self, model: nn.Module, training: bool = False) -> nn.Module:
        if training and torch.device(self.device).type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
        model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    # -- the Feed: how ImageSets become inputs and batches
    def labels(self, data: imagedata.ImageSet) -> torch.Tensor:
        return data.y

    def order(self, n: int, seed: int, epoch: int, generator: torch.Generator) -> torch.Tensor:
        return batch_order(n, seed, epoch)

    def draws(self, data: imagedata.ImageSet, seed: int, epoch: int) -> torch.Tensor | None:
        return self.crops(data, transforms.augmentation_generator(seed, 1, epoch))

    def skip(self, batch: int, eval_mode: bool, first: bool) -> bool:
        return batch < 2 * self.accumulate and not eval_mode and not first  # BatchNorm cannot train on one example

    def train_inputs(self, data: imagedata.ImageSet, idx: torch.Tensor, draws: torch.Tensor | None) -> torch.Tensor:
        """Training inputs of the images ``idx`` with their draws from :meth:`crops` (plain inputs when None)."""
        return self.augmented(data.x[idx], None if draws is None else draws[idx])

    def eval_batches(self, data: imagedata.ImageSet, boxes: torch.Tensor | None = None):
        boxes = self.views(data) if boxes is None else boxes
        for i in range(0, len(data), self.eval_batch_size):
            yield self.view_inputs(data, slice(i, i + self.eval_batch_size), boxes)

    def meta(self) -> dict:
        return {**super().meta(), "augment": self.augment}

    # -- the transforms
    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation inputs of a uint8 batch (no randomness)."""
        return transforms.prepare(x, self.image_size, self.device, self.mean, self.std,
                                 channels_last=self.channels_last, centre_crop=self.centre_crop)

    def crops(self, data: imagedata.ImageSet, generator: torch.Generator) -> torch.Tensor | None:
        """One augmentation draw (crop box and flip) per image of ``data``, on the stored images; without augmentation
        the evaluation view (:meth:`views`). A set stored as whole photographs (:attr:`ImageSet.photo_hw`) has its
        RandomResizedCrop drawn on each photograph and mapped onto the stored copy."""
        if self.augment == "none":
            return self.views(data)
        stored = tuple(data.x.shape[-2:])
        if data.photo_hw is None:
            return transforms.crop_boxes(len(data), *stored, self.augment, self.image_size, generator)
        if self.augment != "random-resized-crop":
            raise ValueError(f"{self.augment} crops the stored image; a set stored as whole photographs (photo_hw) is "
                             f"augmented with random-resized-crop")
        height, width = data.photo_hw.T
        boxes = transforms.crop_boxes(len(data), height, width, self.augment, self.image_size, generator)
        return transforms.onto_stored(boxes, data.photo_hw, stored)

    def views(self, data: imagedata.ImageSet) -> torch.Tensor | None:
        """The evaluation view's boxes of a set stored as whole photographs: each photograph's centre, as
        Resize + CenterCrop (with ``centre_crop``, the central ``image_size`` of a stored-size shorter side, BREEDS'
        224 of 256); None for other sets, whose evaluation inputs are :meth:`inputs`."""
        if data.photo_hw is None:
            return None
        stored = tuple(data.x.shape[-2:])
        fraction = self.image_size / min(stored) if self.centre_crop and min(stored) > self.image_size else 1.0
        return transforms.onto_stored(transforms.centre_boxes(data.photo_hw, fraction), data.photo_hw, stored)

    def view_inputs(self, data: imagedata.ImageSet, part, boxes: torch.Tensor | None) -> torch.Tensor:
        """Inputs of ``data``'s images ``part`` without randomness of their own: cut by ``boxes`` (a set's
        :meth:`views`, or the LP's augmented view) when given, else :meth:`inputs`."""
        x = data.x[part]
        return self.inputs(x) if boxes is None else self.augmented(x, boxes[part])

    def augmented(self, x: torch.Tensor, boxes: torch.Tensor | None) -> torch.Tensor:
        """Training inputs of a uint8 batch with its images' draws from :meth:`crops` (plain inputs when None)."""
        if boxes is None:
            return transforms.prepare(x, self.image_size, self.device, self.mean, self.std,
                                     channels_last=self.channels_last)
        return transforms.augment(x, boxes, self.image_size, self.device, self.mean, self.std,
                                 channels_last=self.channels_last)



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
    for x in rt.eval_batches(data):
        model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


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


def evaluation_sets(task: Task, n: int | None) -> dict[str, imagedata.ImageSet]:
    """The inputs of the feature-change measurement: fixed subsets of at most ``n`` ID test and OOD test images."""
    return {"ID": task.test_id.subset(n), **{name: data.subset(n) for name, data in task.ood.items()}}


def evaluate(model: Classifier, task: Task, rt: Runtime,
             before: dict[str, torch.Tensor] | None = None, sets: dict | None = None) -> dict:
    """ID-val, ID test and OOD test accuracy of ``model``; with ``before`` (pretrained features of ``sets``, from
    :func:`evaluation_sets`), the feature change on each of those sets too."""
    out = {"val": finetune.accuracy(model, task.val, rt), "id": finetune.accuracy(model, task.test_id, rt),
           "ood": {name: finetune.accuracy(model, data, rt) for name, data in task.ood.items()}}
    if before is not None:
        out["feature_change"] = {name: finetune.feature_change(before[name], model, data, rt)
                                 for name, data in sets.items()}
    return out

