"""The paper-scale datasets behind one registry: for each experiment, how its files are read into an
:class:`~lpft.scale.imagedata.ImageTask`, which files are missing and how to get them, and how to write a small
synthetic copy in the real format (the quick profile's inputs).

Formats: CIFAR-10 / STL-10 / CIFAR-10.1 (:mod:`lpft.scale.imagedata`), BREEDS, DomainNet and WILDS FMoW
(:mod:`lpft.scale.filelists`), ImageNet and its four test sets (:mod:`lpft.scale.imagenet`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lpft.scale import filelists, imagedata, imagenet


@dataclass(frozen=True)
class Format:
    """One dataset format: ``load(data_root, n_val, image_size, load_size, cache_dir, max_train, max_eval)`` gives the
    task, capped to at most ``max_train`` / ``max_eval`` images (fixed random subsets, :meth:`ImageTask.capped`),
    ``missing(data_root)`` one line per absent kind of file (where it was expected, how to get it), and
    ``write_synthetic(data_root)`` a small generated copy in the same layout."""
    load: Callable
    missing: Callable
    write_synthetic: Callable


def _cifar(root, n_val, image_size, load_size, cache_dir, max_train, max_eval):
    return imagedata.cifar_task(root, ood=("STL-10", "CIFAR-10.1"), n_val=n_val, max_train=max_train,
                                max_eval=max_eval)


def _breeds(name: str) -> Format:
    def load(root, n_val, image_size, load_size, cache_dir, max_train, max_eval):
        folder, split = filelists.breeds_paths(root, name)
        return filelists.breeds_task(folder, split, name=filelists.BREEDS_NAMES[name], size=load_size or image_size,
                                     n_val=n_val, cache_dir=cache_dir).capped(max_train, max_eval)

    return Format(load, lambda root: filelists.missing_breeds(root, name),
                  lambda root: filelists.write_synthetic_breeds(root, name))


def _domainnet(root, n_val, image_size, load_size, cache_dir, max_train, max_eval):
    images, lists = filelists.domainnet_paths(root)
    return filelists.domainnet_task(images, lists, size=image_size, train_size=load_size, n_val=n_val,
                                    cache_dir=cache_dir).capped(max_train, max_eval)


def _fmow(root, n_val, image_size, load_size, cache_dir, max_train, max_eval):
    return filelists.fmow_task(filelists.fmow_path(root), size=load_size or image_size, n_val=n_val,
                               cache_dir=cache_dir).capped(max_train, max_eval)


def _imagenet(root, n_val, image_size, load_size, cache_dir, max_train, max_eval):
    if n_val is not None:
        raise ValueError("imagenet uses ImageNet val as ID-val (the paper's early stopping): n_val must be None")
    return imagenet.imagenet_task(root, size=image_size, cache_dir=cache_dir, max_train=max_train, max_eval=max_eval)


FORMATS = {
    "cifar-stl": Format(_cifar, imagedata.missing_files, imagedata.write_synthetic_root),
    **{name: _breeds(name) for name in filelists.BREEDS_NAMES},
    "domainnet": Format(_domainnet, filelists.missing_domainnet, filelists.write_synthetic_domainnet),
    "fmow": Format(_fmow, filelists.missing_fmow, filelists.write_synthetic_fmow),
    "imagenet": Format(_imagenet, imagenet.missing_imagenet, imagenet.write_synthetic_imagenet),
}


def format_of(experiment: str) -> Format:
    if experiment not in FORMATS:
        raise ValueError(f"unknown experiment {experiment!r}; known: {list(FORMATS)}")
    return FORMATS[experiment]


def build_task(data_root, experiment: str, *, n_val: int | None, image_size: int, load_size: int | None,
               max_train: int | None = None, max_eval: int | None = None, cache: str = "") -> imagedata.ImageTask:
    """The :class:`~lpft.scale.imagedata.ImageTask` of ``experiment`` from its files under ``data_root`` (layouts in
    :mod:`lpft.scale.imagedata`, :mod:`lpft.scale.filelists` and :mod:`lpft.scale.imagenet`), capped to ``max_train``
    / ``max_eval`` images for smoke runs; with ``cache`` (a folder), images are decoded once into a memory-mapped disk
    cache there instead of RAM (:func:`lpft.scale.filelists.decode_set`)."""
    return format_of(experiment).load(data_root, n_val, image_size, load_size, cache or None, max_train, max_eval)
