"""BREEDS Living-17 and Entity-30 (subpopulation shift) from an ImageNet folder and a split file.

The dataset of the LP-FT paper (Kumar et al., ICLR 2022; Section 4 of its ICLR submission), as the official code
(github.com/AnanyaKumar/transfer_learning, ``configs/adaptation/datasets_living17.yaml``, ``datasets_entity30.yaml``)
reads it: each class is a superclass of ImageNet classes; the ID domain is one set of its subclasses ("source"), the
OOD domain another ("target"). :func:`breeds_task` reads the split from a JSON file ``{"names": [...], "source":
[[wnid, ...], ...], "target": [[wnid, ...], ...]}`` (one list of ImageNet wnids per superclass, e.g. written out from
the ``robustness`` library's ``make_living17`` / ``make_entity30``: ``scripts/breeds_splits.py``) and the images from
an ImageNet folder ``<imagenet>/{train,val}/<wnid>/*.JPEG``. ID train is ImageNet-train of the source classes, ID test
ImageNet-val of the source classes, OOD ImageNet-val of the target classes. Under ``data_root``: ``imagenet/`` and
``breeds/<name>.json`` (:data:`lpft.scale.data.files.LAYOUT`). :func:`load`, :func:`missing` and
:func:`write_synthetic` (a small generated copy in this layout) take the task's ``name`` (:data:`NAMES`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lpft.scale import imagedata
from lpft.scale.data.files import HOW_TO_GET_IMAGENET, IMAGE_SUFFIXES, LAYOUT, absent, decode_set, save_jpegs
from lpft.scale.imagedata import ImageSet, MalformedData, MissingData
from lpft.task import Task

NAMES = {"living17": "Living-17", "entity30": "Entity-30"}
HOW_TO_GET = {"ImageNet": HOW_TO_GET_IMAGENET,
              "BREEDS": "write the split of robustness.tools.breeds_helpers.make_living17 / make_entity30 as JSON {names, source, "
              "target} to data_root/breeds/<task>.json: scripts/breeds_splits.py does it, in an environment with the "
              "robustness library and the BREEDS hierarchy files (github.com/MadryLab/BREEDS-Benchmarks)"}


def read_breeds_split(path) -> dict:
    """The BREEDS split file: superclass ``names`` and, per superclass, its ``source`` and ``target`` wnids."""
    path = Path(path)
    if not path.is_file():
        raise MissingData(f"BREEDS: expected the split file {path} (not found). To obtain it, {HOW_TO_GET['BREEDS']}.")
    try:
        split = json.loads(path.read_text())
    except ValueError as e:
        raise MalformedData(f"BREEDS: {path} is not JSON ({e})") from e
    if not isinstance(split, dict) or not all(k in split for k in ("names", "source", "target")):
        raise MalformedData(f"BREEDS: {path} must hold an object with 'names', 'source' and 'target'")
    n = len(split["names"])
    if len(split["source"]) != n or len(split["target"]) != n or not n:
        raise MalformedData(f"BREEDS: {path} needs one source and one target wnid list per superclass ({n} names)")
    src = {w for ws in split["source"] for w in ws}
    tgt = {w for ws in split["target"] for w in ws}
    if src & tgt:
        raise MalformedData(f"BREEDS: {path} puts {len(src & tgt)} wnids in both source and target")
    return split


def _class_images(folder: Path, wnid: str) -> list[Path]:
    d = folder / wnid
    if not d.is_dir():
        raise MissingData(f"ImageNet: expected the class folder {d} (not found). To obtain it, "
                          f"{HOW_TO_GET_IMAGENET}.")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise MalformedData(f"ImageNet: {d} holds no image files")
    return files


def _breeds_set(root: Path, split: str, groups: list[list[str]], size: int, name: str, cache_dir, workers: int,
                resize: str = "shorter") -> ImageSet:
    paths, labels = [], []
    for label, wnids in enumerate(groups):
        for wnid in wnids:
            files = _class_images(root / split, wnid)
            paths += files
            labels += [label] * len(files)
    return decode_set(root, name, paths, labels, size, resize=resize, cache_dir=cache_dir, workers=workers)


def breeds_task(imagenet_root, split_file, *, name: str, size: int = 224, n_val: int | None = None,
                split_seed: int = 0, cache_dir=None, workers: int = 8) -> Task:
    """A BREEDS task (Living-17, Entity-30, ...): ID train = ImageNet-train of the source subclasses (minus a fixed
    ``n_val`` held out as ID-val, when given; otherwise the ID test set doubles as ID-val, which a report must
    state), ID test = ImageNet-val of the source subclasses, OOD = ImageNet-val of the target subclasses. Training
    photographs are stored whole at ``size``×``size`` with their sizes (``resize="whole"``), evaluation images as
    Resize(``size``) + CenterCrop(``size``). With ``cache_dir`` the images are decoded once into a memory-mapped disk
    cache (:func:`decode_set`) instead of RAM."""
    split = read_breeds_split(split_file)
    root = Path(imagenet_root)
    train = _breeds_set(root, "train", split["source"], size, f"{name} train", cache_dir, workers, resize="whole")
    test = _breeds_set(root, "val", split["source"], size, f"{name} val source", cache_dir, workers)
    ood = _breeds_set(root, "val", split["target"], size, f"{name} val target", cache_dir, workers)
    if n_val:
        train, val = train.hold_out(n_val, split_seed)
    else:
        val = test
    sizes = {"ID train (source, ImageNet train)": len(train), "ID-val": len(val),
             "ID test (source, ImageNet val)": len(test), f"OOD ({name} target, ImageNet val)": len(ood)}
    return Task(name, train, val, test, {f"{name} target": ood}, n_classes=len(split["names"]), sizes=sizes)


def breeds_split(names: list[str], source: list[list[int]], target: list[list[int]], wnids: list[str]) -> dict:
    """The split file's content from the ``robustness`` library's BREEDS output (superclass ``names`` and, per
    superclass, ImageNet class indices of its ``source`` and ``target`` subclasses), with ``wnids`` the 1000 ImageNet
    wnids in index order (sorted, as the class folders of ImageNet train sort)."""
    if len(wnids) != 1000 or wnids != sorted(wnids):
        raise MalformedData(f"expected the 1000 ImageNet wnids in sorted order; got {len(wnids)}")
    if not (len(names) == len(source) == len(target)):
        raise MalformedData("one source and one target list per superclass name are needed")
    return {"names": list(names), "source": [[wnids[i] for i in s] for s in source],
            "target": [[wnids[i] for i in t] for t in target]}


def breeds_paths(data_root, name: str) -> tuple[Path, Path]:
    """``(ImageNet folder, split file)`` of BREEDS task ``name`` (``living17`` or ``entity30``) under ``data_root``."""
    if name not in NAMES:
        raise ValueError(f"unknown BREEDS task {name!r}; known: {list(NAMES)}")
    root = Path(data_root)
    return root / LAYOUT["imagenet"], root / LAYOUT["breeds"] / f"{name}.json"


def load(data_root, name: str, *, n_val: int | None = None, image_size: int = 224, load_size: int | None = None,
         cache_dir=None, max_train: int | None = None, max_eval: int | None = None) -> Task:
    """BREEDS task ``name`` from ``data_root``: images stored at ``load_size`` (else ``image_size``), capped to
    ``max_train`` / ``max_eval`` images for smoke runs (:meth:`~lpft.task.Task.capped`)."""
    return breeds_task(*breeds_paths(data_root, name), name=NAMES[name], size=load_size or image_size, n_val=n_val,
                       cache_dir=cache_dir).capped(max_train, max_eval)


def missing(data_root, name: str) -> list[str]:
    """One line per kind of absent input of BREEDS task ``name`` (empty when all are there): the split file, and the
    ImageNet class folders it names (train and val)."""
    imagenet, split_file = breeds_paths(data_root, name)
    if not split_file.is_file():
        return absent(f"BREEDS {NAMES[name]} split file", [split_file], HOW_TO_GET["BREEDS"])
    split = read_breeds_split(split_file)
    wnids = [w for ws in split["source"] for w in ws], [w for ws in split["target"] for w in ws]
    folders = [imagenet / "train" / w for w in wnids[0]] + [imagenet / "val" / w for w in wnids[0] + wnids[1]]
    return absent(f"ImageNet class folders of {NAMES[name]}", [f for f in folders if not f.is_dir()],
                   HOW_TO_GET_IMAGENET)


def write_synthetic(data_root, name: str, *, n_classes: int | None = None, n_sub: int = 2, n_train: int = 30,
                           n_val: int = 10, size: tuple[int, int] = (44, 52), seed: int = 0) -> dict:
    """A BREEDS-like task ``name`` in the real layout under ``data_root``: JPEG files in ``imagenet/{train,val}/<wnid>``
    and the split ``breeds/<name>.json``. Each of ``n_classes`` superclasses is a random coloured wave pattern
    (:func:`lpft.scale.imagedata.pattern_images`); each of its ``2 n_sub`` subclasses (made-up wnids) adds its own colour
    cast, the first ``n_sub`` are the source (ID), the rest the target (OOD): a subpopulation shift in miniature.
    Images are about ``size`` (height, width): each photograph's sides are drawn within ±25% of it, so, as in
    ImageNet, shapes differ and the loader's resizes and the crops drawn on each photograph's shape are exercised. By
    default
    Living-17 gets 4 superclasses and Entity-30 6, each task its own random stream. Returns counts."""
    imagenet, split_file = breeds_paths(data_root, name)
    n_classes = n_classes or {"living17": 4, "entity30": 6}[name]
    rng = np.random.default_rng((seed, sorted(NAMES).index(name)))
    protos = imagedata.pattern_prototypes(n_classes, rng)
    base = 9_000_000 + 1000 * sorted(NAMES).index(name)
    split = {"names": [f"superclass {c}" for c in range(n_classes)], "source": [], "target": []}
    for c in range(n_classes):
        wnids = [f"n{base + 10 * c + j:08d}" for j in range(2 * n_sub)]
        split["source"].append(wnids[:n_sub])
        split["target"].append(wnids[n_sub:])
        for j, wnid in enumerate(wnids):
            cast = rng.uniform(-0.15, 0.15, 3)
            for folder, n in (("train", n_train if j < n_sub else 0), ("val", n_val)):
                for i in range(n):
                    shape = tuple(int(round(side * rng.uniform(0.75, 1.25))) for side in size)
                    image = imagedata.pattern_images(1, shape, np.array([c]), rng, protos, cast, 0.08)
                    save_jpegs(image, [imagenet / folder / wnid / f"{wnid}_{i}.JPEG"])
    split_file.parent.mkdir(parents=True, exist_ok=True)
    split_file.write_text(json.dumps(split, indent=1))
    return {"train": n_classes * n_sub * n_train, "val (source)": n_classes * n_sub * n_val,
            "val (target)": n_classes * n_sub * n_val}
