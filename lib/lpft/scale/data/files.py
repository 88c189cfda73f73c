"""Image files of the paper-scale datasets: decoding with Pillow, the disk cache, the layout under one data root.

Under one ``data_root`` the experiments expect (:data:`LAYOUT`; any folder may be a symbolic link)::

    data_root/imagenet/{train,val}/<wnid>/*.JPEG           # ILSVRC-2012, val sorted into class folders
    data_root/breeds/living17.json, entity30.json           # the BREEDS splits as JSON (lpft.scale.data.breeds)
    data_root/domainnet/<domain>/<class>/*.jpg              # the DomainNet archives, unpacked
    data_root/domainnet/lists/<domain>_{train,test}_mini.txt  # SENTRY's 40-class file lists
    data_root/fmow_v1.1/rgb_metadata.csv, country_code_mapping.csv, images/rgb_img_<row>.png  # WILDS FMoW
    data_root/cifar-10-batches-py/, stl10_binary/, cifar10.1/  # CIFAR-10, STL-10, CIFAR-10.1 (data.cifar)

Images are decoded with Pillow once, when the task is loaded, and kept as uint8 :class:`~lpft.scale.imagedata.ImageSet`s at
the size the official configs' transforms start from: BREEDS evaluation images with the shorter side resized to
256 and centre-cropped (evaluation takes the central 224), BREEDS training images whole, resized to 256×256 with their
true sizes kept (RandomResizedCrop boxes are drawn on the photograph and mapped onto that copy, see
:attr:`~lpft.scale.imagedata.ImageSet.photo_hw`), DomainNet resized to 256×256 (training,
bicubic; random 224 crops are drawn from it) and to 224×224 (evaluation, bicubic); FMoW's images are stored at
224×224 already and used as they are. Every loader takes a ``cache_dir``: sets too large for memory (Entity-30's
training images are about 30 GB) are then decoded once into a memory-mapped disk cache (:func:`decode_set`). The random
parts of the transforms run per batch on the training device (:func:`lpft.scale.transforms.augment`). Missing files
raise :class:`~lpft.scale.imagedata.MissingData` naming them; malformed lists raise :class:`~lpft.scale.imagedata.MalformedData`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from lpft.records import atomic_write_text
from lpft.scale.imagedata import ImageSet, MalformedData

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
LAYOUT = {"imagenet": "imagenet", "breeds": "breeds", "domainnet": "domainnet", "lists": "domainnet/lists",
          "fmow": "fmow_v1.1"}
HOW_TO_GET_IMAGENET = ("put an ImageNet (ILSVRC-2012) folder with train/<wnid>/ and val/<wnid>/ class folders (val "
                       "sorted into class folders) at data_root/imagenet (a symbolic link will do)")


RESIZES = ("shorter", "shorter-bicubic", "square", "whole")


def load_image(path: Path, size: int, resize: str = "shorter") -> np.ndarray:
    """One image as uint8 (3, size, size), RGB: ``"shorter"`` resizes the shorter side to ``size`` (bilinear) and
    centre-crops (torchvision's Resize(size) + CenterCrop(size)); ``"shorter-bicubic"`` does the same with bicubic
    interpolation (the paper's ImageNet transform); ``"square"`` resizes to ``size``×``size`` (bicubic, the paper's
    DomainNet Resize((size, size))); ``"whole"`` resizes the whole photograph to ``size``×``size`` (bilinear, aspect
    ratio not kept; its true shape is :func:`photo_size`), the stored copy BREEDS' RandomResizedCrop is drawn from."""
    from PIL import Image

    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {RESIZES}; got {resize!r}")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if resize in ("square", "whole"):
                im = im.resize((size, size), Image.BICUBIC if resize == "square" else Image.BILINEAR)
                return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()
            w, h = im.size
            scale = size / min(w, h)
            im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                           Image.BICUBIC if resize == "shorter-bicubic" else Image.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()
    except OSError as e:
        raise MalformedData(f"{path} is not a readable image ({e})") from e


def photo_size(path: Path) -> tuple[int, int]:
    """A photograph's (height, width) in pixels, from its header."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except OSError as e:
        raise MalformedData(f"{path} is not a readable image ({e})") from e


def photo_sizes(paths: list[Path], resize: str, workers: int = 8) -> torch.Tensor | None:
    """(N, 2) int64 photograph sizes for a set stored with ``resize="whole"`` (:attr:`ImageSet.photo_hw`), else
    None."""
    if resize != "whole":
        return None
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return torch.tensor(list(pool.map(photo_size, paths)), dtype=torch.int64).reshape(-1, 2)


def load_images(paths: list[Path], labels: list[int], size: int, workers: int = 8, resize: str = "shorter"
                ) -> ImageSet:
    """Decode ``paths`` (in order, ``workers`` threads) into an :class:`ImageSet` with ``labels`` (and the
    photographs' sizes, for ``resize="whole"``)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        images = list(pool.map(lambda p: load_image(p, size, resize), paths))
    x = torch.from_numpy(np.stack(images)) if images else torch.empty((0, 3, size, size), dtype=torch.uint8)
    return ImageSet(x, torch.tensor(labels, dtype=torch.int64), photo_hw=photo_sizes(paths, resize, workers))


# ---- decoding once into a disk cache ------------------------------------------------------------------------------

CHUNK = 1024  # images decoded, hashed or written at a time


def content_digest(x: np.ndarray, y: np.ndarray, photo_hw: np.ndarray | None = None) -> str:
    """sha256 (hex) of a set's content: the uint8 image bytes, ``CHUNK`` images at a time (a memory-mapped set is never
    read whole into memory), then the labels as int64 bytes, then the photographs' sizes when the set has them
    (:attr:`ImageSet.photo_hw`: they shape its crops). Stored as :attr:`ImageSet.digest`."""
    h = hashlib.sha256()
    for start in range(0, len(x), CHUNK):
        h.update(np.ascontiguousarray(x[start:start + CHUNK], dtype=np.uint8))
    h.update(np.ascontiguousarray(y, dtype=np.int64))
    if photo_hw is not None:
        h.update(b"photo_hw")
        h.update(np.ascontiguousarray(photo_hw, dtype=np.int64))
    return h.hexdigest()


def cache_key(root, paths: list[Path], labels: list[int], size: int, resize: str) -> str:
    """16 hex digits identifying a decoded set: sha256 over its files (path relative to ``root``, size in bytes and
    label, in loading order), the image ``size`` and the ``resize`` mode."""
    h = hashlib.sha256(f"size {size}, resize {resize}\n".encode())
    for path, label in zip(paths, labels):
        h.update(f"{path.relative_to(root).as_posix()}\t{path.stat().st_size}\t{label}\n".encode())
    return h.hexdigest()[:16]


def _write_cache(npy: Path, paths: list[Path], labels: list[int], size: int, resize: str, workers: int,
                 photo_hw: torch.Tensor | None) -> str:
    """Decode ``paths`` into ``npy`` through a temporary file, ``CHUNK`` images at a time; returns the digest."""
    tmp = npy.with_name(f"{npy.name}.{os.getpid()}.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), 3, size, size))
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for start in range(0, len(paths), CHUNK):
                chunk = paths[start:start + CHUNK]
                out[start:start + len(chunk)] = np.stack(list(pool.map(lambda p: load_image(p, size, resize), chunk)))
        out.flush()
        digest = content_digest(out, np.asarray(labels), None if photo_hw is None else photo_hw.numpy())
        del out
        os.replace(tmp, npy)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def decode_set(root, name: str, paths: list[Path], labels: list[int], size: int, *, resize: str = "shorter",
               classes: tuple | None = None, cache_dir=None, workers: int = 8) -> ImageSet:
    """The images ``paths`` (under ``root``) with ``labels`` as an :class:`ImageSet` carrying ``classes`` and its
    content digest (:func:`content_digest`).

    Without ``cache_dir`` they are decoded into memory. With it, the set lives in ``<cache_dir>/<name>-<key>.npy``
    (:func:`cache_key`), decoded once in chunks through a temporary file, and its labels, classes and digest in the
    sidecar ``<name>-<key>.json``, written last: an ``.npy`` without its sidecar is an interrupted write and is decoded
    again. The array is opened memory-mapped, copy-on-write (``np.load(mmap_mode="c")``), so a batch reads only its
    own images from disk and a set larger than memory (ImageNet train: ~193 GB at 224 px) can be used."""
    if cache_dir is None:
        data = load_images(paths, labels, size, workers, resize=resize)
        hw = None if data.photo_hw is None else data.photo_hw.numpy()
        return ImageSet(data.x, data.y, classes, content_digest(data.x.numpy(), data.y.numpy(), hw), data.photo_hw)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    stem = f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}-{cache_key(root, paths, labels, size, resize)}"
    npy, sidecar = cache / f"{stem}.npy", cache / f"{stem}.json"
    if not (sidecar.is_file() and npy.is_file()):
        photo_hw = photo_sizes(paths, resize, workers)
        digest = _write_cache(npy, paths, labels, size, resize, workers, photo_hw)
        atomic_write_text(sidecar, json.dumps({"set": name, "size": size, "resize": resize, "labels": list(labels),
                                               "classes": None if classes is None else list(classes),
                                               "digest": digest,
                                               "photo_hw": None if photo_hw is None else photo_hw.tolist()}))
    meta = json.loads(sidecar.read_text())
    x = torch.from_numpy(np.load(npy, mmap_mode="c"))
    if tuple(x.shape) != (len(meta["labels"]), 3, size, size):
        raise MalformedData(f"image cache: {npy} holds {tuple(x.shape)}, its sidecar {sidecar} {len(meta['labels'])} "
                            f"labels at {size} px; delete both to decode the set again")
    return ImageSet(x, torch.tensor(meta["labels"], dtype=torch.int64), meta["classes"], meta["digest"],
                    meta.get("photo_hw"))


def absent(what: str, paths: list[Path], how: str) -> list[str]:
    """One line saying which ``paths`` of ``what`` are missing and ``how`` to obtain them (none when none are)."""
    return [f"{what}: {len(paths)} missing ({', '.join(str(p) for p in paths[:3])}"
            f"{', …' if len(paths) > 3 else ''}). To obtain them, {how}."] if paths else []


def save_jpegs(images: np.ndarray, paths: list[Path]) -> None:
    """Write uint8 ``(n, 3, h, w)`` ``images`` as JPEG files at ``paths`` (for the generated copies)."""
    from PIL import Image

    for img, path in zip(images, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))).save(path, format="JPEG", quality=92)
