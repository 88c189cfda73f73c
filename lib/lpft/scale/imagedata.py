"""Stored images for the paper-scale runs: :class:`ImageSet` (uint8 images and their labels, as every dataset format
loads them), fixed subsets, the errors a loader raises, and generated class patterns for tests and smoke runs.

A missing file raises :class:`MissingData` (a ``FileNotFoundError``) naming the file, where it was expected and how to
obtain it; a file that is there but malformed raises :class:`MalformedData` (a ``ValueError``). Images are kept as
``uint8`` tensors ``(N, 3, H, W)``; resizing, cropping and normalisation happen per batch on the training device
(:mod:`lpft.scale.transforms`). The dataset formats that fill these sets are in :mod:`lpft.scale.data`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


class MissingData(FileNotFoundError):
    """A dataset file is not where the loader expects it; the message says where and how to obtain it."""


class MalformedData(ValueError):
    """A dataset file exists but does not have the expected format (shape, type, labels)."""


@dataclass
class ImageSet:
    """Images (uint8 ``(N, 3, H, W)``) and int64 labels of one split; indexable by a batch of indices.

    ``classes``: the labels the set can have, when it covers only some of the model's classes (ImageNet-R and -A:
    200 of ImageNet's 1000); a prediction is then the argmax over those classes' logits (:func:`lpft.task.predict`),
    as the paper evaluates them. ``digest``: a sha256 of ``x``, ``y`` (and ``photo_hw``) computed when the images
    were decoded (a disk cache of a large set stores it), so that a run need not hash them again; None: not known.

    ``photo_hw``: int64 ``(N, 2)``, each photograph's height and width, when ``x`` stores the *whole* photograph
    resized to H×W without keeping its aspect ratio (BREEDS training images): crops are then drawn in the
    photograph's own coordinates and mapped onto ``x`` (:func:`lpft.scale.transforms.onto_stored`), so
    RandomResizedCrop sees the whole photograph with its true shape, and the evaluation view is the photograph's
    centre (:func:`lpft.scale.transforms.centre_boxes`).
    None: ``x`` is the image as the transforms start from it."""
    x: torch.Tensor
    y: torch.Tensor
    classes: tuple | None = None
    digest: str | None = None
    photo_hw: torch.Tensor | None = None

    def __post_init__(self):
        if self.x.dtype != torch.uint8 or self.x.ndim != 4 or self.x.shape[1] != 3 or len(self.x) != len(self.y):
            raise ValueError(f"ImageSet needs uint8 (N, 3, H, W) images and N labels; got {tuple(self.x.shape)} "
                             f"{self.x.dtype}, {tuple(self.y.shape)}")
        if self.photo_hw is not None:
            self.photo_hw = torch.as_tensor(self.photo_hw, dtype=torch.int64).reshape(-1, 2)
            if len(self.photo_hw) != len(self.y) or (self.photo_hw < 1).any():
                raise ValueError(f"ImageSet: photo_hw needs a positive (height, width) per image; got "
                                 f"{tuple(self.photo_hw.shape)} for {len(self.y)} images")
        if self.classes is not None:
            self.classes = tuple(int(c) for c in self.classes)
            if len(self.y) and not set(self.y.unique().tolist()) <= set(self.classes):
                raise ValueError("ImageSet: some labels are not among its classes")

    def __len__(self) -> int:
        return len(self.y)

    def _take(self, idx: torch.Tensor) -> ImageSet:
        return ImageSet(self.x[idx], self.y[idx], self.classes,
                        photo_hw=None if self.photo_hw is None else self.photo_hw[idx])

    def hold_out(self, n: int, seed: int) -> tuple[ImageSet, ImageSet]:
        """``(rest, held_out)``: ``n`` random examples (fixed by ``seed``) held out, e.g. ID-val out of ID train; both
        parts keep the original order."""
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        held, rest = perm[:n].sort().values, perm[n:].sort().values
        return self._take(rest), self._take(held)

    def subset(self, n: int | None, seed: int = 0) -> ImageSet:
        """A fixed random subset of ``n`` examples (all of them when ``n`` is None or ≥ the size)."""
        idx = subset_index(len(self), n, seed)
        return self if idx is None else self._take(idx)


def subset_index(size: int, n: int | None, seed: int = 0) -> torch.Tensor | None:
    """The sorted indices of a fixed random ``n`` of ``size`` examples, drawn from ``seed``; None when ``n`` is None or
    ≥ ``size`` (keep them all). :meth:`ImageSet.subset` and loaders that cap a file list before decoding share it."""
    if n is None or n >= size:
        return None
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n].sort().values


# ---- generated class patterns (tests and smoke runs read them through the real formats) ----------------------

def pattern_prototypes(n: int, rng: np.random.Generator) -> list:
    """``n`` random class patterns for :func:`pattern_images`: two plane-wave frequencies, their amplitudes and a
    colour."""
    return [(rng.uniform(0.5, 3, 2), rng.uniform(0.5, 3, 2), rng.uniform(0.5, 1), rng.uniform(0.5, 1),
             rng.uniform(-1, 1, 3)) for _ in range(n)]


def pattern_images(n: int, size: int | tuple[int, int], labels: np.ndarray, rng: np.random.Generator,
                   protos: list, colour_shift, noise: float) -> np.ndarray:
    """Images whose class is a smooth coloured pattern (sum of the class's two plane waves, evaluated on a grid of the
    unit square of ``size`` = side or (height, width) pixels, so the same class looks alike at 32 and 96 px), plus a
    random phase, a colour cast ``colour_shift`` (a number, or one per channel) and pixel noise."""
    height, width = (size, size) if np.isscalar(size) else size
    yy, xx = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij")
    colour_shift = np.broadcast_to(np.asarray(colour_shift, dtype=np.float64), (3,))[:, None, None]
    out = np.empty((n, 3, height, width), dtype=np.float64)
    for i, c in enumerate(labels):
        (f1, f2, a1, a2, colour) = protos[c]
        phase = rng.uniform(0, 2 * np.pi, 2)
        pattern = np.sin(2 * np.pi * (f1[0] * xx + f1[1] * yy) + phase[0]) * a1 + \
            np.sin(2 * np.pi * (f2[0] * xx + f2[1] * yy) + phase[1]) * a2
        out[i] = 0.5 + 0.25 * pattern[None] * colour[:, None, None] + colour_shift
    out += noise * rng.standard_normal(out.shape)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
