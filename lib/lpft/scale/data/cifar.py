"""CIFAR-10 → STL-10 and CIFAR-10.1 from the datasets' own files (CIFAR-10's python batches, STL-10's binary files,
CIFAR-10.1's ``.npy`` arrays), behind the same few functions as the other formats.

The readers live in :mod:`lpft.scale.imagedata` (:func:`~lpft.scale.imagedata.cifar_task`, with the layout under
``data_root``: ``cifar-10-batches-py/``, ``stl10_binary/``, ``cifar10.1/``); this module gives them the registry's
interface (:mod:`lpft.scale.data`).
"""
from __future__ import annotations

from lpft.scale import imagedata
from lpft.task import Task

OOD = ("STL-10", "CIFAR-10.1")
HOW_TO_GET = imagedata.HOW_TO_GET


def load(data_root, *, n_val: int | None = None, image_size: int = 224, load_size: int | None = None, cache_dir=None,
         max_train: int | None = None, max_eval: int | None = None) -> Task:
    """CIFAR-10 → STL-10 / CIFAR-10.1 (:func:`lpft.scale.imagedata.cifar_task`; the images are small and held in
    memory as stored: ``image_size``, ``load_size`` and ``cache_dir`` are not used), capped to ``max_train`` /
    ``max_eval`` images for smoke runs."""
    return imagedata.cifar_task(data_root, ood=OOD, n_val=n_val, max_train=max_train, max_eval=max_eval)


def missing(data_root) -> list[str]:
    """One line per kind of absent file (empty when all are there), with where to get it."""
    return imagedata.missing_files(data_root)


def write_synthetic(data_root):
    """Small generated CIFAR-10, STL-10 and CIFAR-10.1 files in the real formats
    (:func:`lpft.scale.imagedata.write_synthetic_root`)."""
    return imagedata.write_synthetic_root(data_root)
