"""DomainNet sketch -> real / painting / clipart (domain shift) from SENTRY's 40-class file lists.

The dataset of the LP-FT paper (Kumar et al., ICLR 2022; Section 4 of its ICLR submission), as the official code
(github.com/AnanyaKumar/transfer_learning, ``configs/adaptation/datasets_domainnet.yaml``, ``version: 'sentry'``)
reads it: :func:`domainnet_task` reads ``<lists>/<domain>_<split>_mini.txt`` (lines ``<path relative to the
DomainNet root> <label>``) for sketch (ID) and real / painting / clipart (OOD); labels are mapped to 0..K-1 in sorted
order of the ID training list's labels. Under ``data_root``: ``domainnet/<domain>/`` and ``domainnet/lists/``
(:data:`lpft.scale.data.files.LAYOUT`). :func:`load`, :func:`missing` and :func:`write_synthetic` (a small generated
copy in this layout).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lpft.scale import imagedata
from lpft.scale.data.files import LAYOUT, absent, decode_set, save_jpegs
from lpft.scale.imagedata import ImageSet, MalformedData, MissingData
from lpft.task import Task

DOMAINNET_OOD = ("real", "painting", "clipart")
HOW_TO_GET = {"DomainNet": "download DomainNet (http://ai.bu.edu/M3SDA/) and unpack its domains into data_root/domainnet/, and put "
                 "the SENTRY 40-class file lists (<domain>_<split>_mini.txt, github.com/virajprabhu/SENTRY, "
                 "data/DomainNet/txt/) into data_root/domainnet/lists/"}


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


def domainnet_paths(data_root) -> tuple[Path, Path]:
    """``(DomainNet image root, SENTRY lists folder)`` under ``data_root``."""
    root = Path(data_root)
    return root / LAYOUT["domainnet"], root / LAYOUT["lists"]


def load(data_root, *, n_val: int | None = None, image_size: int = 224, load_size: int | None = None, cache_dir=None,
         max_train: int | None = None, max_eval: int | None = None) -> Task:
    """DomainNet from ``data_root``: evaluation images at ``image_size``, training images at ``load_size`` (else
    ``image_size``), capped to ``max_train`` / ``max_eval`` images for smoke runs."""
    return domainnet_task(*domainnet_paths(data_root), size=image_size, train_size=load_size, n_val=n_val,
                          cache_dir=cache_dir).capped(max_train, max_eval)


def missing(data_root, id_domain: str = "sketch", ood_domains=DOMAINNET_OOD) -> list[str]:
    """One line per kind of absent DomainNet input (empty when all are there): file lists and domain folders."""
    root, lists = domainnet_paths(data_root)
    names = [f"{id_domain}_train_mini.txt", f"{id_domain}_test_mini.txt", *(f"{d}_test_mini.txt" for d in ood_domains)]
    return (absent("DomainNet file lists", [lists / n for n in names if not (lists / n).is_file()],
                    HOW_TO_GET["DomainNet"]) +
            absent("DomainNet domain folders", [root / d for d in (id_domain, *ood_domains) if not (root / d).is_dir()],
                    HOW_TO_GET["DomainNet"]))


def _domain_style(images: np.ndarray, domain: str) -> np.ndarray:
    """The generated domains' looks: sketch grey and high-contrast, clipart posterised, real and painting as drawn."""
    x = images.astype(np.float64)
    if domain == "sketch":
        x = np.repeat(x.mean(1, keepdims=True), 3, axis=1)
        x = (x - 128) * 1.6 + 128
    elif domain == "clipart":
        x = (x // 64) * 64 + 32
    return np.clip(x, 0, 255).round().astype(np.uint8)


def write_synthetic(data_root, *, labels=(3, 11, 24, 37), n_train: int = 30, n_test: int = 10,
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
                save_jpegs(_domain_style(images, domain), [root / r for r in rel])
                lines += [f"{r} {label}" for r in rel]
            (lists / f"{domain}_{split}_mini.txt").write_text("\n".join(lines) + "\n")
    return {"per domain and split": {"train": n_train * len(labels), "test": n_test * len(labels)}}
