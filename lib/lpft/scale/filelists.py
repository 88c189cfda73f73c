"""The paper's file-based shifts: BREEDS subpopulations on an ImageNet folder, and DomainNet from file lists.

The datasets of the LP-FT paper (Kumar et al., ICLR 2022; Section 4 of its ICLR submission), as the official code
(github.com/AnanyaKumar/transfer_learning, ``configs/adaptation/datasets_*.yaml``) reads them:

* **BREEDS Living-17 / Entity-30**: each class is a superclass of ImageNet classes; the ID domain is one set of its
  subclasses ("source"), the OOD domain another ("target"). :func:`breeds_task` reads the split from a JSON file
  ``{"names": [...], "source": [[wnid, ...], ...], "target": [[wnid, ...], ...]}`` (one list of ImageNet wnids per
  superclass, e.g. written out from the ``robustness`` library's ``make_living17`` / ``make_entity30``) and the images
  from an ImageNet folder ``<imagenet>/{train,val}/<wnid>/*.JPEG``. ID train is ImageNet-train of the source classes,
  ID test ImageNet-val of the source classes, OOD ImageNet-val of the target classes.
* **DomainNet** (the 40-class subset of the SENTRY file lists): :func:`domainnet_task` reads ``<lists>/<domain>_<split>
  _mini.txt`` (lines ``<path relative to the DomainNet root> <label>``) for sketch (ID) and real / painting / clipart
  (OOD); labels are mapped to 0..K-1 in sorted order of the ID training list's labels.
* **FMoW geo-shift** (WILDS FMoW v1.1, 62 classes of satellite images): :func:`fmow_task` reads WILDS's
  ``rgb_metadata.csv`` (one row per image ``images/rgb_img_<row>.png``: its split, category, country code and
  timestamp) and ``country_code_mapping.csv`` (country code → region). As in the official code
  (``datasets_fmow.yaml``: region 3, the Americas, for training; region 2, Africa, among its test sets), ID train is
  WILDS's training split (images before 2013) from the Americas, ID test the Americas images of WILDS's "val" split
  and OOD the African images of the same split. (The submission's text says "North America" for ID and "Africa and
  Europe" for OOD; ``ood_region="Europe"`` gives the other set.)

Under one ``data_root`` the experiments expect (:data:`LAYOUT`; any folder may be a symbolic link)::

    data_root/imagenet/{train,val}/<wnid>/*.JPEG           # ILSVRC-2012, val sorted into class folders
    data_root/breeds/living17.json, entity30.json           # the BREEDS splits as JSON (see above)
    data_root/domainnet/<domain>/<class>/*.jpg              # the DomainNet archives, unpacked
    data_root/domainnet/lists/<domain>_{train,test}_mini.txt  # SENTRY's 40-class file lists
    data_root/fmow_v1.1/rgb_metadata.csv, country_code_mapping.csv, images/rgb_img_<row>.png  # WILDS FMoW

Images are decoded with Pillow once, when the task is loaded, and kept as uint8 :class:`~lpft.scale.imagedata.ImageSet`s at
the size the official configs' transforms start from: BREEDS evaluation images with the shorter side resized to
256 and centre-cropped (evaluation takes the central 224), BREEDS training images whole, resized to 256×256 with their
true sizes kept (RandomResizedCrop boxes are drawn on the photograph and mapped onto that copy, see
:attr:`~lpft.scale.imagedata.ImageSet.photo_hw`), DomainNet resized to 256×256 (training,
bicubic; random 224 crops are drawn from it) and to 224×224 (evaluation, bicubic); FMoW's images are stored at
224×224 already and used as they are. Every loader takes a ``cache_dir``: sets too large for memory (Entity-30's
training images are about 30 GB) are then decoded once into a memory-mapped disk cache (:func:`decode_set`). The random
parts of the transforms run per batch on the training device (:func:`lpft.scale.imagedata.augment`). Missing files raise
:class:`~lpft.scale.imagedata.MissingData` naming them; malformed lists raise :class:`~lpft.scale.imagedata.MalformedData`.
:func:`write_synthetic_breeds`, :func:`write_synthetic_domainnet` and :func:`write_synthetic_fmow` write small generated
images in these layouts (JPEG / PNG files, split JSON, file lists, metadata tables) for the tests and the ``quick``
profile.
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

from lpft.scale import imagedata
from lpft.scale.imagedata import ImageSet, MalformedData, MissingData
from lpft.task import Task

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
DOMAINNET_OOD = ("real", "painting", "clipart")
HOW_TO_GET = {
    "ImageNet": "put an ImageNet (ILSVRC-2012) folder with train/<wnid>/ and val/<wnid>/ class folders (val sorted "
                "into class folders) at data_root/imagenet (a symbolic link will do)",
    "BREEDS": "write the split of robustness.tools.breeds_helpers.make_living17 / make_entity30 as JSON {names, source, "
              "target} to data_root/breeds/<task>.json: scripts/breeds_splits.py does it, in an environment with the "
              "robustness library and the BREEDS hierarchy files (github.com/MadryLab/BREEDS-Benchmarks)",
    "DomainNet": "download DomainNet (http://ai.bu.edu/M3SDA/) and unpack its domains into data_root/domainnet/, and put "
                 "the SENTRY 40-class file lists (<domain>_<split>_mini.txt, github.com/virajprabhu/SENTRY, "
                 "data/DomainNet/txt/) into data_root/domainnet/lists/",
    "FMoW": "download WILDS FMoW v1.1 (fmow_v1.1.tar.gz, e.g. with the wilds package: python -c \"import wilds; "
            "wilds.get_dataset('fmow', version='1.1', root_dir='/path/to/data_root', download=True)\", or from "
            "https://worksheets.codalab.org/bundles/0xaec91eb7c9d548ebb15e1b5e60f966ab) and unpack it so that "
            "data_root/fmow_v1.1/ holds rgb_metadata.csv, country_code_mapping.csv and images/",
}


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


def _write_json(path: Path, content: dict) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(content))
    os.replace(tmp, path)


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
        _write_json(sidecar, {"set": name, "size": size, "resize": resize, "labels": list(labels),
                              "classes": None if classes is None else list(classes), "digest": digest,
                              "photo_hw": None if photo_hw is None else photo_hw.tolist()})
    meta = json.loads(sidecar.read_text())
    x = torch.from_numpy(np.load(npy, mmap_mode="c"))
    if tuple(x.shape) != (len(meta["labels"]), 3, size, size):
        raise MalformedData(f"image cache: {npy} holds {tuple(x.shape)}, its sidecar {sidecar} {len(meta['labels'])} "
                            f"labels at {size} px; delete both to decode the set again")
    return ImageSet(x, torch.tensor(meta["labels"], dtype=torch.int64), meta["classes"], meta["digest"],
                    meta.get("photo_hw"))


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
                   size: int = 224, train_size: int | None = None, n_val: int | None = None, split_seed: int = 0,
                   cache_dir=None, workers: int = 8) -> Task:
    """DomainNet sketch → real / painting / clipart (the paper's Section 4; its OOD number is the mean over the three):
    ID train / test from ``<id_domain>_{train,test}_mini.txt``, each OOD set from ``<domain>_test_mini.txt``. Labels
    are mapped to 0..K-1 by the sorted labels of the ID training list; a label absent from it is an error. Training
    images are resized to ``train_size`` squared (default ``size``; the paper's 256, from which 224 crops are drawn),
    evaluation images to ``size`` squared (bicubic, as the paper). ``cache_dir``: as in :func:`breeds_task`."""
    lists, root = Path(lists_root), Path(domainnet_root)
    files = {(d, s): read_file_list(lists / f"{d}_{s}_mini.txt")
             for d, s in [(id_domain, "train"), (id_domain, "test"), *((d, "test") for d in ood_domains)]}
    classes = sorted(set(files[(id_domain, "train")][1]))
    index = {c: i for i, c in enumerate(classes)}

    def load(key, size) -> ImageSet:
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
        return decode_set(root, f"domainnet {key[0]} {key[1]}", paths, [index[c] for c in labels], size,
                          resize="square", cache_dir=cache_dir, workers=workers)

    train, test = load((id_domain, "train"), train_size or size), load((id_domain, "test"), size)
    if n_val:
        train, val = train.hold_out(n_val, split_seed)
    else:
        val = test
    ood = {d: load((d, "test"), size) for d in ood_domains}
    sizes = {f"ID train ({id_domain})": len(train), "ID-val": len(val), f"ID test ({id_domain})": len(test),
             **{f"OOD ({d})": len(v) for d, v in ood.items()}}
    return Task("domainnet", train, val, test, ood, n_classes=len(classes), sizes=sizes)


# ---- FMoW (WILDS) -------------------------------------------------------------------------------------------------

# WILDS FMoW's 62 categories; a label is the category's position in this (alphabetical) list, as in WILDS.
FMOW_CATEGORIES = (
    "airport", "airport_hangar", "airport_terminal", "amusement_park", "aquaculture", "archaeological_site", "barn",
    "border_checkpoint", "burial_site", "car_dealership", "construction_site", "crop_field", "dam", "debris_or_rubble",
    "educational_institution", "electric_substation", "factory_or_powerplant", "fire_station", "flooded_road",
    "fountain", "gas_station", "golf_course", "ground_transportation_station", "helipad", "hospital",
    "impoverished_settlement", "interchange", "lake_or_pond", "lighthouse", "military_facility",
    "multi-unit_residential", "nuclear_powerplant", "office_building", "oil_or_gas_facility", "park",
    "parking_lot_or_garage", "place_of_worship", "police_station", "port", "prison", "race_track", "railway_bridge",
    "recreational_facility", "road_bridge", "runway", "shipyard", "shopping_mall", "single-unit_residential",
    "smokestack", "solar_farm", "space_facility", "stadium", "storage_tank", "surface_mine", "swimming_pool",
    "toll_booth", "tower", "tunnel_opening", "waste_disposal", "water_treatment_facility", "wind_farm", "zoo")
# The regions in the order of the official code's region codes 0..4 (ID: Americas = 3; OOD: Africa = 2). WILDS maps
# a country code it does not know to "Other", which no task uses.
FMOW_REGIONS = ("Asia", "Europe", "Africa", "Americas", "Oceania")
# WILDS's time split: training images are from before 2013; its "val" split holds images of 2013-2015 ("val" in
# WILDS 1.x, which the official code ran with; WILDS 2 calls these "ood_val") and images before 2013 ("id_val").
FMOW_YEARS = {"train": (None, 2013), "ood": (2013, 2016), "id": (None, 2013)}
FMOW_COLUMNS = ("split", "category", "country_code", "timestamp")


def read_fmow_metadata(fmow_root):
    """WILDS FMoW's metadata, one row per image (``row``: its index, which names ``images/rgb_img_<row>.png``), with
    ``region`` from the country code, ``year`` from the timestamp and ``label`` from the category."""
    import pandas as pd

    root = Path(fmow_root)
    paths = {name: root / f"{name}.csv" for name in ("rgb_metadata", "country_code_mapping")}
    for path in paths.values():
        if not path.is_file():
            raise MissingData(f"FMoW: expected {path} (not found). To obtain it, {HOW_TO_GET['FMoW']}.")
    meta = pd.read_csv(paths["rgb_metadata"])
    codes = pd.read_csv(paths["country_code_mapping"])
    for table, path, columns in ((meta, paths["rgb_metadata"], FMOW_COLUMNS),
                                 (codes, paths["country_code_mapping"], ("alpha-3", "region"))):
        absent = [c for c in columns if c not in table.columns]
        if absent:
            raise MalformedData(f"FMoW: {path} lacks the columns {absent}")
    unknown = sorted(set(meta["category"]) - set(FMOW_CATEGORIES))
    if unknown:
        raise MalformedData(f"FMoW: rgb_metadata.csv has categories that WILDS FMoW does not: {unknown[:5]}")
    region = dict(zip(codes["alpha-3"], codes["region"]))
    meta["row"] = np.arange(len(meta))
    meta["region"] = [region.get(c, "Other") for c in meta["country_code"]]
    try:  # ISO 8601, with or without fractional seconds (the real table mixes both)
        meta["year"] = pd.to_datetime(meta["timestamp"], utc=True, format="ISO8601").dt.year
    except ValueError as e:
        raise MalformedData(f"FMoW: {paths['rgb_metadata']} has a timestamp that is not ISO 8601 ({e})") from e
    meta["label"] = [FMOW_CATEGORIES.index(c) for c in meta["category"]]
    return meta


def _fmow_rows(meta, split: str, years: tuple, region: str):
    after, before = years
    keep = (meta["split"] == split) & (meta["region"] == region) & (meta["year"] < before)
    if after is not None:
        keep &= meta["year"] >= after
    return meta[keep]


def fmow_task(fmow_root, *, id_region: str = "Americas", ood_region: str = "Africa", val: str = "ood",
              size: int = 224, n_val: int | None = None, split_seed: int = 0, cache_dir=None, workers: int = 8
              ) -> Task:
    """FMoW geo-shift (as the official ``datasets_fmow.yaml``): ID train = WILDS's training images (before 2013)
    from ``id_region``; ID test and OOD test = the ``id_region`` and ``ood_region`` images of WILDS's "val" split, whose years ``val`` chooses:
    ``"ood"`` (2013-2015: WILDS 1.x's "val", which the official code read with ``get_subset('val')``) or ``"id"``
    (before 2013: WILDS 2's default "val"). Without ``n_val`` the ID test set doubles as ID-val, as the paper's
    early stopping on Americas val; with it, ``n_val`` training images are held out. Labels index
    :data:`FMOW_CATEGORIES`; all 62 are the task's classes, whether or not the training set has them. Images
    (224×224 PNGs) are resized to ``size`` squared (bicubic; unchanged at 224). ``cache_dir``: as in
    :func:`breeds_task`."""
    for r in (id_region, ood_region):
        if r not in FMOW_REGIONS:
            raise ValueError(f"unknown FMoW region {r!r}; known: {FMOW_REGIONS}")
    if val not in ("ood", "id"):
        raise ValueError(f"val must be 'ood' (WILDS 1.x 'val', 2013-2015) or 'id' (before 2013); got {val!r}")
    root = Path(fmow_root)
    meta = read_fmow_metadata(root)

    def load(rows, what: str) -> ImageSet:
        if not len(rows):
            raise MalformedData(f"FMoW: rgb_metadata.csv has no images for {what}")
        paths = [root / "images" / f"rgb_img_{r}.png" for r in rows["row"]]
        absent = [p for p in paths if not p.is_file()]
        if absent:
            raise MissingData(f"FMoW: {len(absent)} images of {what} are missing, e.g. {absent[0]}. To obtain them, "
                              f"{HOW_TO_GET['FMoW']}.")
        return decode_set(root, f"fmow {what}", paths, rows["label"].tolist(), size, resize="square",
                          cache_dir=cache_dir, workers=workers)

    train = load(_fmow_rows(meta, "train", FMOW_YEARS["train"], id_region), f"train, {id_region}")
    test = load(_fmow_rows(meta, "val", FMOW_YEARS[val], id_region), f"val, {id_region}")
    ood = load(_fmow_rows(meta, "val", FMOW_YEARS[val], ood_region), f"val, {ood_region}")
    train, val = train.hold_out(n_val, split_seed) if n_val else (train, test)
    sizes = {f"ID train (train, {id_region})": len(train), "ID-val": len(val),
             f"ID test (val, {id_region})": len(test), f"OOD (val, {ood_region})": len(ood)}
    return Task("fmow", train, val, test, {ood_region: ood}, n_classes=len(FMOW_CATEGORIES), sizes=sizes)


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


# ---- the layout under one data_root, and what is missing from it --------------------------------------------------

BREEDS_NAMES = {"living17": "Living-17", "entity30": "Entity-30"}
LAYOUT = {"imagenet": "imagenet", "breeds": "breeds", "domainnet": "domainnet", "lists": "domainnet/lists",
          "fmow": "fmow_v1.1"}


def breeds_paths(data_root, name: str) -> tuple[Path, Path]:
    """``(ImageNet folder, split file)`` of BREEDS task ``name`` (``living17`` or ``entity30``) under ``data_root``."""
    if name not in BREEDS_NAMES:
        raise ValueError(f"unknown BREEDS task {name!r}; known: {list(BREEDS_NAMES)}")
    root = Path(data_root)
    return root / LAYOUT["imagenet"], root / LAYOUT["breeds"] / f"{name}.json"


def domainnet_paths(data_root) -> tuple[Path, Path]:
    """``(DomainNet image root, SENTRY lists folder)`` under ``data_root``."""
    root = Path(data_root)
    return root / LAYOUT["domainnet"], root / LAYOUT["lists"]


def fmow_path(data_root) -> Path:
    """The WILDS FMoW folder (``fmow_v1.1``) under ``data_root``."""
    return Path(data_root) / LAYOUT["fmow"]

def _absent(what: str, paths: list[Path], how: str) -> list[str]:
    return [f"{what}: {len(paths)} missing ({', '.join(str(p) for p in paths[:3])}"
            f"{', …' if len(paths) > 3 else ''}). To obtain them, {how}."] if paths else []


def missing_breeds(data_root, name: str) -> list[str]:
    """One line per kind of absent input of BREEDS task ``name`` (empty when all are there): the split file, and the
    ImageNet class folders it names (train and val)."""
    imagenet, split_file = breeds_paths(data_root, name)
    if not split_file.is_file():
        return _absent(f"BREEDS {BREEDS_NAMES[name]} split file", [split_file], HOW_TO_GET["BREEDS"])
    split = read_breeds_split(split_file)
    wnids = [w for ws in split["source"] for w in ws], [w for ws in split["target"] for w in ws]
    folders = [imagenet / "train" / w for w in wnids[0]] + [imagenet / "val" / w for w in wnids[0] + wnids[1]]
    return _absent(f"ImageNet class folders of {BREEDS_NAMES[name]}", [f for f in folders if not f.is_dir()],
                   HOW_TO_GET["ImageNet"])


def missing_domainnet(data_root, id_domain: str = "sketch", ood_domains=DOMAINNET_OOD) -> list[str]:
    """One line per kind of absent DomainNet input (empty when all are there): file lists and domain folders."""
    root, lists = domainnet_paths(data_root)
    names = [f"{id_domain}_train_mini.txt", f"{id_domain}_test_mini.txt", *(f"{d}_test_mini.txt" for d in ood_domains)]
    return (_absent("DomainNet file lists", [lists / n for n in names if not (lists / n).is_file()],
                    HOW_TO_GET["DomainNet"]) +
            _absent("DomainNet domain folders", [root / d for d in (id_domain, *ood_domains) if not (root / d).is_dir()],
                    HOW_TO_GET["DomainNet"]))


def missing_fmow(data_root) -> list[str]:
    """One line per kind of absent FMoW input (empty when all are there): the two tables and the image folder."""
    root = fmow_path(data_root)
    wanted = [root / "rgb_metadata.csv", root / "country_code_mapping.csv", root / "images"]
    return _absent("WILDS FMoW files", [p for p in wanted if not p.exists()], HOW_TO_GET["FMoW"])


# ---- small generated data in the real layouts ---------------------------------------------------------------------

def _save_jpegs(images: np.ndarray, paths: list[Path]) -> None:
    from PIL import Image

    for img, path in zip(images, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))).save(path, format="JPEG", quality=92)


def write_synthetic_breeds(data_root, name: str, *, n_classes: int | None = None, n_sub: int = 2, n_train: int = 30,
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
    rng = np.random.default_rng((seed, sorted(BREEDS_NAMES).index(name)))
    protos = imagedata.pattern_prototypes(n_classes, rng)
    base = 9_000_000 + 1000 * sorted(BREEDS_NAMES).index(name)
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
                    _save_jpegs(image, [imagenet / folder / wnid / f"{wnid}_{i}.JPEG"])
    split_file.parent.mkdir(parents=True, exist_ok=True)
    split_file.write_text(json.dumps(split, indent=1))
    return {"train": n_classes * n_sub * n_train, "val (source)": n_classes * n_sub * n_val,
            "val (target)": n_classes * n_sub * n_val}


def _domain_style(images: np.ndarray, domain: str) -> np.ndarray:
    """The generated domains' looks: sketch grey and high-contrast, clipart posterised, real and painting as drawn."""
    x = images.astype(np.float64)
    if domain == "sketch":
        x = np.repeat(x.mean(1, keepdims=True), 3, axis=1)
        x = (x - 128) * 1.6 + 128
    elif domain == "clipart":
        x = (x // 64) * 64 + 32
    return np.clip(x, 0, 255).round().astype(np.uint8)


def write_synthetic_domainnet(data_root, *, labels=(3, 11, 24, 37), n_train: int = 30, n_test: int = 10,
                              size: tuple[int, int] = (44, 52), seed: int = 0) -> dict:
    """A DomainNet-like task in the real layout under ``data_root``: JPEG files in ``domainnet/<domain>/<class>/`` and
    SENTRY-style lists ``domainnet/lists/<domain>_{train,test}_mini.txt`` with the original (not contiguous)
    ``labels``. Every domain draws the same class patterns in its own style (sketch: grey; painting: a colour cast
    and more noise; clipart: posterised; real: plain). Returns counts."""
    root, lists = domainnet_paths(data_root)
    rng = np.random.default_rng(seed)
    protos = imagedata.pattern_prototypes(len(labels), rng)
    casts = {"sketch": 0.0, "real": 0.0, "painting": rng.uniform(-0.15, 0.15, 3), "clipart": 0.0}
    noise = {"sketch": 0.06, "real": 0.06, "painting": 0.12, "clipart": 0.06}
    lists.mkdir(parents=True, exist_ok=True)
    for domain in ("sketch", *DOMAINNET_OOD):
        for split, n in (("train", n_train), ("test", n_test)):
            lines = []
            for k, label in enumerate(labels):
                images = imagedata.pattern_images(n, size, np.full(n, k), rng, protos, casts[domain], noise[domain])
                rel = [f"{domain}/class_{label:03d}/{domain}_{split}_{label:03d}_{i:04d}.jpg" for i in range(n)]
                _save_jpegs(_domain_style(images, domain), [root / r for r in rel])
                lines += [f"{r} {label}" for r in rel]
            (lists / f"{domain}_{split}_mini.txt").write_text("\n".join(lines) + "\n")
    return {"per domain and split": {"train": n_train * len(labels), "test": n_test * len(labels)}}


def write_synthetic_fmow(data_root, *, categories=(0, 11, 24, 45), n_train: int = 30, n_val: int = 10,
                         size: int = 40, seed: int = 0) -> dict:
    """An FMoW-like task in WILDS's layout under ``data_root``: ``fmow_v1.1/rgb_metadata.csv`` (WILDS's columns),
    ``country_code_mapping.csv`` and ``images/rgb_img_<row>.png``. Each of the ``categories`` (indices into
    :data:`FMOW_CATEGORIES`) is a random coloured wave pattern; each region adds its own colour cast (a geographic
    shift in miniature). Besides the rows the task reads (Americas and Africa; train before 2013, val 2013-2015) it
    writes rows the loader must skip: other regions, val images before 2013, test and "seq" images, and an unknown
    country code; the last category appears in val only (a class absent from ID training). Returns counts."""
    import pandas as pd
    from PIL import Image

    root = fmow_path(data_root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    protos = imagedata.pattern_prototypes(len(categories), rng)
    countries = {"Americas": "BRA", "Africa": "KEN", "Europe": "FRA", "Other": "XXX"}
    casts = {region: rng.uniform(-0.2, 0.2, 3) for region in countries}
    plan = [("train", "Americas", 2010, n_train), ("val", "Americas", 2014, n_val), ("val", "Africa", 2014, n_val),
            ("train", "Africa", 2011, 2), ("train", "Europe", 2011, 2), ("val", "Americas", 2011, 2),
            ("val", "Africa", 2012, 2),
            ("test", "Americas", 2017, 2), ("seq", "Americas", 2012, 2), ("train", "Other", 2012, 2)]
    rows = []
    for split, region, year, n in plan:
        for k, c in enumerate(categories):
            if split == "train" and k == len(categories) - 1:
                continue  # the last category is never seen in training
            images = imagedata.pattern_images(n, size, np.full(n, k), rng, protos, casts[region], 0.08)
            for img in images:
                row = len(rows)
                Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))).save(root / "images" /
                                                                                   f"rgb_img_{row}.png", format="PNG")
                rows.append({"split": split, "img_filename": f"{FMOW_CATEGORIES[c]}_{row}_rgb.jpg",
                             "category": FMOW_CATEGORIES[c], "country_code": countries[region],
                             "timestamp": f"{year}-0{1 + row % 9}-1{row % 10}T10:0{row % 10}:00"
                                          f"{'.5' * (row % 2)}Z",  # with and without fractional seconds
                             "lat": round(float(rng.uniform(-40, 50)), 4), "lon": round(float(rng.uniform(-80, 40)), 4)})
    pd.DataFrame(rows).to_csv(root / "rgb_metadata.csv", index=False)
    pd.DataFrame({"name": ["Brazil", "Kenya", "France"], "alpha-2": ["BR", "KE", "FR"],
                  "alpha-3": ["BRA", "KEN", "FRA"], "region": ["Americas", "Africa", "Europe"]}
                 ).to_csv(root / "country_code_mapping.csv", index=False)
    return {"images": len(rows), "ID train": n_train * (len(categories) - 1), "ID test": n_val * len(categories),
            "OOD": n_val * len(categories)}
