"""The paper's file-based shifts: BREEDS subpopulations on an ImageNet folder, and DomainNet from file lists.

Reference Section 3.1 (LP-FT paper, Kumar et al., ICLR 2022):

* **BREEDS Living-17 / Entity-30**: each class is a superclass of ImageNet classes; the ID domain is one set of its
  subclasses ("source"), the OOD domain another ("target"). :func:`breeds_task` reads the split from a JSON file
  ``{"names": [...], "source": [[wnid, ...], ...], "target": [[wnid, ...], ...]}`` (one list of ImageNet wnids per
  superclass, e.g. written out from the ``robustness`` library's ``make_living17`` / ``make_entity30``) and the images
  from an ImageNet folder ``<imagenet>/{train,val}/<wnid>/*.JPEG``. ID train is ImageNet-train of the source classes,
  ID test ImageNet-val of the source classes, OOD ImageNet-val of the target classes.
* **DomainNet** (the 40-class subset of the SENTRY file lists): :func:`domainnet_task` reads ``<lists>/<domain>_<split>
  _mini.txt`` (lines ``<path relative to the DomainNet root> <label>``) for sketch (ID) and real / painting / clipart
  (OOD); labels are mapped to 0..K-1 in sorted order of the ID training list's labels.

Images are decoded with Pillow, resized (shorter side to ``size``) and centre-cropped to ``size``×``size``, and kept as
uint8 :class:`~lpft.imagedata.ImageSet`s, so they feed the same training code as CIFAR. **Not done yet**: the paper's
training augmentation for these sets (BREEDS: RandomResizedCrop + flip; DomainNet: random crop + flip) and their
sweeps and chapter; so far these are loaders only. Missing files raise :class:`~lpft.imagedata.MissingData` naming
them; malformed lists raise :class:`~lpft.imagedata.MalformedData`.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from lpft.imagedata import ImageSet, ImageTask, MalformedData, MissingData

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
DOMAINNET_OOD = ("real", "painting", "clipart")
HOW_TO_GET = {
    "ImageNet": "point imagenet_root at an ImageNet (ILSVRC-2012) folder with train/<wnid>/ and val/<wnid>/ class "
                "folders (val sorted into class folders)",
    "BREEDS": "write the split of robustness.tools.breeds_helpers.make_living17 / make_entity30 (BREEDS hierarchy "
              "files from the BREEDS-Benchmarks repository) as JSON {names, source, target}",
    "DomainNet": "download DomainNet (http://ai.bu.edu/M3SDA/) into domainnet_root, and the SENTRY 40-class file lists "
                 "(<domain>_<split>_mini.txt, github.com/virajprabhu/SENTRY, data/DomainNet/txt/) into lists_root",
}


def load_image(path: Path, size: int) -> np.ndarray:
    """One image as uint8 (3, size, size): RGB, shorter side resized to ``size`` (bilinear), centre crop."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = size / min(w, h)
            im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()
    except OSError as e:
        raise MalformedData(f"{path} is not a readable image ({e})") from e


def load_images(paths: list[Path], labels: list[int], size: int, workers: int = 8) -> ImageSet:
    """Decode ``paths`` (in order, ``workers`` threads) into an :class:`ImageSet` with ``labels``."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        images = list(pool.map(lambda p: load_image(p, size), paths))
    x = torch.from_numpy(np.stack(images)) if images else torch.empty((0, 3, size, size), dtype=torch.uint8)
    return ImageSet(x, torch.tensor(labels, dtype=torch.int64))


# ---- BREEDS -------------------------------------------------------------------------------------------------------

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
                          f"{HOW_TO_GET['ImageNet']}.")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise MalformedData(f"ImageNet: {d} holds no image files")
    return files


def _breeds_set(folder: Path, groups: list[list[str]], size: int, workers: int) -> ImageSet:
    paths, labels = [], []
    for label, wnids in enumerate(groups):
        for wnid in wnids:
            files = _class_images(folder, wnid)
            paths += files
            labels += [label] * len(files)
    return load_images(paths, labels, size, workers)


def breeds_task(imagenet_root, split_file, *, name: str, size: int = 224, n_val: int | None = None,
                split_seed: int = 0, workers: int = 8) -> ImageTask:
    """A BREEDS task (Living-17, Entity-30, ...): ID train = ImageNet-train of the source subclasses (minus a fixed
    ``n_val`` held out as ID-val, when given; otherwise the ID test set doubles as ID-val, which a report must
    state), ID test = ImageNet-val of the source subclasses, OOD = ImageNet-val of the target subclasses."""
    split = read_breeds_split(split_file)
    root = Path(imagenet_root)
    train = _breeds_set(root / "train", split["source"], size, workers)
    test = _breeds_set(root / "val", split["source"], size, workers)
    ood = _breeds_set(root / "val", split["target"], size, workers)
    if n_val:
        train, val = train.hold_out(n_val, split_seed)
    else:
        val = test
    sizes = {"ID train (source, ImageNet train)": len(train), "ID-val": len(val),
             "ID test (source, ImageNet val)": len(test), f"OOD ({name} target, ImageNet val)": len(ood)}
    return ImageTask(name, train, val, test, {f"{name} target": ood}, n_classes=len(split["names"]), sizes=sizes)


# ---- DomainNet ----------------------------------------------------------------------------------------------------

def read_file_list(path) -> tuple[list[str], list[int]]:
    """A DomainNet file list: one ``<relative path> <integer label>`` per line."""
    path = Path(path)
    if not path.is_file():
        raise MissingData(f"DomainNet: expected the file list {path} (not found). To obtain it, "
                          f"{HOW_TO_GET['DomainNet']}.")
    rel, labels = [], []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise MalformedData(f"DomainNet: {path} line {i} is not '<path> <label>': {line!r}")
        rel.append(parts[0])
        labels.append(int(parts[1]))
    if not rel:
        raise MalformedData(f"DomainNet: {path} lists no images")
    return rel, labels


def domainnet_task(domainnet_root, lists_root, *, id_domain: str = "sketch", ood_domains=DOMAINNET_OOD,
                   size: int = 224, n_val: int | None = None, split_seed: int = 0, workers: int = 8) -> ImageTask:
    """DomainNet sketch → real / painting / clipart (reference 3.1; the paper's OOD number is the mean over the three):
    ID train / test from ``<id_domain>_{train,test}_mini.txt``, each OOD set from ``<domain>_test_mini.txt``. Labels
    are mapped to 0..K-1 by the sorted labels of the ID training list; a label absent from it is an error."""
    lists, root = Path(lists_root), Path(domainnet_root)
    files = {(d, s): read_file_list(lists / f"{d}_{s}_mini.txt")
             for d, s in [(id_domain, "train"), (id_domain, "test"), *((d, "test") for d in ood_domains)]}
    classes = sorted(set(files[(id_domain, "train")][1]))
    index = {c: i for i, c in enumerate(classes)}

    def load(key) -> ImageSet:
        rel, labels = files[key]
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise MalformedData(f"DomainNet: {key[0]}_{key[1]}_mini.txt has labels {unknown[:5]} that the ID "
                                f"training list does not")
        paths = [root / r for r in rel]
        absent = [p for p in paths if not p.is_file()]
        if absent:
            raise MissingData(f"DomainNet: {len(absent)} images of {key[0]}_{key[1]}_mini.txt are missing, e.g. "
                              f"{absent[0]}. To obtain them, {HOW_TO_GET['DomainNet']}.")
        return load_images(paths, [index[c] for c in labels], size, workers)

    train, test = load((id_domain, "train")), load((id_domain, "test"))
    if n_val:
        train, val = train.hold_out(n_val, split_seed)
    else:
        val = test
    ood = {d: load((d, "test")) for d in ood_domains}
    sizes = {f"ID train ({id_domain})": len(train), "ID-val": len(val), f"ID test ({id_domain})": len(test),
             **{f"OOD ({d})": len(v) for d, v in ood.items()}}
    return ImageTask("domainnet", train, val, test, ood, n_classes=len(classes), sizes=sizes)
