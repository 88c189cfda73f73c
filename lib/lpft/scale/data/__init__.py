"""The paper-scale datasets, one module per file format behind one registry (:data:`FORMATS`).

Each format module (:mod:`~lpft.scale.data.cifar`, :mod:`~lpft.scale.data.breeds`, :mod:`~lpft.scale.data.domainnet`,
:mod:`~lpft.scale.data.fmow`, :mod:`~lpft.scale.data.imagenet`) exposes the same few things: ``load(data_root, ...)``
(the :class:`~lpft.task.Task`), ``missing(data_root)`` (one line per kind of absent file, with where
it was expected and how to get it), ``HOW_TO_GET`` and ``write_synthetic(data_root)`` (a small generated copy in the
real format: the quick profile's inputs). :mod:`~lpft.scale.data.files` holds what they share (decoding, the disk
cache, the layout under one data root). An experiment's format is found by its name (:func:`format_of`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from lpft.scale.data import breeds, cifar, domainnet, fmow, imagenet
from lpft.task import Task


@dataclass(frozen=True)
class Format:
    """One experiment's file format: ``load(data_root, *, n_val, image_size, load_size, cache_dir, max_train,
    max_eval)``, ``missing(data_root)`` and ``write_synthetic(data_root)`` of its module, and its ``how_to_get``."""
    load: Callable
    missing: Callable
    write_synthetic: Callable
    how_to_get: dict


def _of(module, **which) -> Format:
    return Format(functools.partial(module.load, **which), functools.partial(module.missing, **which),
                  functools.partial(module.write_synthetic, **which), module.HOW_TO_GET)


FORMATS = {
    "cifar-stl": _of(cifar),
    **{name: _of(breeds, name=name) for name in breeds.NAMES},
    "domainnet": _of(domainnet),
    "fmow": _of(fmow),
    "imagenet": _of(imagenet),
}


def format_of(experiment: str) -> Format:
    """The file format of ``experiment``; a ValueError names the known experiments."""
    if experiment not in FORMATS:
        raise ValueError(f"unknown experiment {experiment!r}; known: {list(FORMATS)}")
    return FORMATS[experiment]


def build_task(data_root, experiment: str, *, n_val: int | None, image_size: int, load_size: int | None,
               max_train: int | None = None, max_eval: int | None = None, cache: str = "") -> Task:
    """The :class:`~lpft.task.Task` of ``experiment`` from its files under ``data_root``, capped to
    ``max_train`` / ``max_eval`` images for smoke runs; with ``cache`` (a folder), images are decoded once into a
    memory-mapped disk cache there instead of RAM (:func:`lpft.scale.data.files.decode_set`)."""
    return format_of(experiment).load(data_root, n_val=n_val, image_size=image_size, load_size=load_size,
                                      cache_dir=cache or None, max_train=max_train, max_eval=max_eval)
