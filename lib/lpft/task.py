"""What every method works on, at both scales: a :class:`Task`, a :class:`Classifier` and a :class:`Feed`.

* :class:`Task`: ID train, ID-val, ID test and named OOD test sets with the label count: the LP-FT paper's protocol
  (Kumar et al., ICLR 2022, Section 4.1: train on ID labels, select on ID-val, report ID test and OOD test). The digit
  chapters' sets are ``TensorDataset`` s (:func:`lpft.digits.make_task`), the paper-scale chapters' are uint8
  :class:`~lpft.scale.imagedata.ImageSet` s (:mod:`lpft.scale.imagedata`, :mod:`lpft.scale.filelists`, ...).
* :class:`Classifier`: a backbone and a linear head; ``features`` are the penultimate features (what LP probes and the
  feature change compares), ``forward`` the logits. :class:`lpft.digits.DigitNet` is one over the digit backbone.
* :class:`Feed`: how a batch of stored data becomes the network's inputs, for the one training loop
  (:func:`lpft.finetune.train`) and the measurements. This default feeds a ``TensorDataset``'s float tensors as they
  are, on the CPU, with batch order drawn from one generator seeded by the run's seed;
  :class:`lpft.scale.finetune.Runtime` is the paper-scale one (device, bf16 autocast, channels-last, uint8 -> float,
  augmentation draws, micro-batches, batch order fixed by (seed, epoch)).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

BATCH_SIZE = 64


@dataclass
class Task:
    """One ID/OOD task: ``train``, ``val`` (ID-val), ``test_id`` and the named OOD test sets ``ood``, with
    ``n_classes``; ``sizes`` (split name -> size, as a chapter prints them) and ``config`` (the arguments that define
    the task) describe it. Each set is a ``TensorDataset`` of (images, labels) or an
    :class:`~lpft.scale.imagedata.ImageSet`; :meth:`capped` needs sets with ``subset`` (image sets)."""
    name: str
    train: object
    val: object
    test_id: object
    ood: dict
    n_classes: int
    sizes: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    @property
    def test_ood(self):
        """The OOD test set of a task that has exactly one (the digit tasks)."""
        if len(self.ood) != 1:
            raise ValueError(f"task {self.name!r} has {len(self.ood)} OOD sets {list(self.ood)}; pick one of task.ood")
        return next(iter(self.ood.values()))

    def capped(self, max_train: int | None, max_eval: int | None, seed: int = 0) -> Task:
        """The same task on fixed random subsets (by ``seed``) of at most ``max_train`` training and ``max_eval``
        images per evaluation set, for smoke runs; an ID-val that is the ID test set stays that set."""
        if max_train is None and max_eval is None:
            return self
        train, test = self.train.subset(max_train, seed), self.test_id.subset(max_eval, seed)
        val = test if self.val is self.test_id else self.val.subset(max_eval, seed)
        ood = {k: v.subset(max_eval, seed) for k, v in self.ood.items()}
        sizes = dict(zip(self.sizes, (len(s) for s in (train, val, test, *ood.values()))))
        return Task(self.name, train, val, test, ood, self.n_classes, sizes, dict(self.config))


class Classifier(nn.Module):
    """A backbone and a linear head: ``features`` are the penultimate features, ``forward`` the logits. The backbone
    maps inputs to ``(N, backbone.feature_dim)`` features; the state_dict keys are ``backbone.*`` and ``head.*``."""

    def __init__(self, backbone: nn.Module, n_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.feature_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: what LP fits its head on and what the feature change measures."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def predict(logits, classes: tuple | None = None):
    """Predicted labels from ``logits`` (N, K) (a tensor or an array): the argmax over all K classes, or, with
    ``classes``, over those columns only (ImageNet-R / -A: the paper's argmax over their 200 valid classes)."""
    if classes is None:
        return logits.argmax(1)
    index = list(classes)
    columns = logits[:, index]
    best = columns.argmax(1)
    lookup = torch.tensor(index) if isinstance(logits, torch.Tensor) else np.asarray(index)
    return lookup[best]


@dataclass(frozen=True)
class Feed:
    """How stored data becomes inputs, batches and checkpoint metadata in :func:`lpft.finetune.train` and the
    measurements. This default: a ``TensorDataset``'s float tensors, on the CPU, in float32; training batches of
    ``batch_size`` in an order drawn each epoch from one generator seeded by the run's seed (so the order of an epoch
    depends on the epochs before it: a resumed run restores the generator's state from its checkpoint); evaluation in
    batches of ``eval_batch_size``; ``accumulate`` micro-batches per SGD step; no augmentation."""
    batch_size: int = BATCH_SIZE
    eval_batch_size: int = 1024
    accumulate: int = 1
    progress: bool = False
    device: str = "cpu"

    def place(self, model: nn.Module, training: bool = False) -> nn.Module:
        """``model`` on this feed's device (with ``training``, ready for the training loop)."""
        return model

    def autocast(self, enabled: bool = True):
        """The autocast context of training and accuracy (none: float32)."""
        return contextlib.nullcontext()

    def labels(self, data) -> torch.Tensor:
        return data.tensors[1]

    def order(self, n: int, seed: int, epoch: int, generator: torch.Generator) -> torch.Tensor:
        """The order of the ``n`` training examples in ``epoch``: the next permutation of ``generator`` (seeded by
        ``seed`` at the start of the run)."""
        return torch.randperm(n, generator=generator)

    def draws(self, data, seed: int, epoch: int):
        """The epoch's augmentation draws for every training example (None: no augmentation)."""
        return None

    def skip(self, batch: int, eval_mode: bool, first: bool) -> bool:
        """Whether a training batch of ``batch`` examples is left out (never here)."""
        return False

    def train_inputs(self, data, idx: torch.Tensor, draws) -> torch.Tensor:
        """Training inputs of the examples ``idx`` of ``data`` with their draws."""
        return data.tensors[0][idx]

    def eval_batches(self, data, boxes=None):
        """Evaluation inputs of ``data`` in batches of ``eval_batch_size`` (no randomness; ``boxes``: an augmented
        view, for the feeds that have them)."""
        x = data.tensors[0]
        return (x[i:i + self.eval_batch_size] for i in range(0, len(x), self.eval_batch_size))

    def predict(self, logits: torch.Tensor, data) -> torch.Tensor:
        """Predicted labels of ``data`` from its logits (a set covering some classes: over those only)."""
        return predict(logits, getattr(data, "classes", None))

    def meta(self) -> dict:
        """What a checkpoint records of the feed, so that a checkpoint of another configuration is refused."""
        return {"batch_size": self.batch_size, "accumulate": self.accumulate}
