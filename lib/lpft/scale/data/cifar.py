"""CIFAR-10 → STL-10 and CIFAR-10.1 from the datasets' own files: CIFAR-10 (ID), STL-10 and CIFAR-10.1 (OOD).

The LP-FT paper (Kumar et al., ICLR 2022; Section 4 of its ICLR submission) trains on CIFAR-10 and evaluates out of
distribution on STL-10 and on CIFAR-10.1; as in the official code (github.com/AnanyaKumar/transfer_learning,
``unlabeled_extrapolation/datasets/stl_cifar_style.py``), STL-10's "monkey" class is dropped and its labels are mapped
to CIFAR-10's. Nothing is downloaded: every loader reads from a ``data_root`` laid out as the datasets' own archives
unpack::

    data_root/
      cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch   # cifar-10-python.tar.gz
      stl10_binary/train_X.bin, train_y.bin, test_X.bin, test_y.bin   # stl10_binary.tar.gz
      cifar10.1/cifar10.1_v6_data.npy, cifar10.1_v6_labels.npy         # CIFAR-10.1 repository, datasets/

Images are held in memory as stored (CIFAR 32×32, STL 96×96). :func:`write_cifar10`, :func:`write_stl10` and
:func:`write_cifar101` write the same formats, and :func:`write_synthetic_root` fills a ``data_root`` with small
generated images in them (the tests and the chapters' quick profile read those through the same loaders). The
registry's interface (:mod:`lpft.scale.data`) is :func:`load`, :func:`missing` and :func:`write_synthetic`.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch

from lpft.scale.imagedata import ImageSet, MalformedData, MissingData, pattern_images, pattern_prototypes
from lpft.task import Task

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")  # labels 1..10
# STL-10 label (1-based, as in the *_y.bin files) -> CIFAR-10 label; "monkey" (8) has no CIFAR class and is dropped.
# CIFAR's "frog" (6) has no STL class: a model may still predict it, which counts as an error on STL.
STL_TO_CIFAR = {1: 0, 2: 2, 3: 1, 4: 3, 5: 4, 6: 5, 7: 7, 9: 8, 10: 9}

CIFAR10_DIR, STL10_DIR, CIFAR101_DIR = "cifar-10-batches-py", "stl10_binary", "cifar10.1"
CIFAR101_VERSION = "v6"
STL_SIZE = 96

HOW_TO_GET = {
    "CIFAR-10": "download the python version, cifar-10-python.tar.gz, from https://www.cs.toronto.edu/~kriz/cifar.html "
                "and extract it into data_root (it creates cifar-10-batches-py/)",
    "STL-10": "download stl10_binary.tar.gz from https://cs.stanford.edu/~acoates/stl10/ and extract it into data_root "
              "(it creates stl10_binary/)",
    "CIFAR-10.1": "copy cifar10.1_v6_data.npy and cifar10.1_v6_labels.npy from the datasets/ folder of "
                  "https://github.com/modestyachts/CIFAR-10.1 into data_root/cifar10.1/",
}


def _require(path: Path, dataset: str) -> Path:
    if not path.is_file():
        raise MissingData(f"{dataset}: expected the file {path} (not found). To obtain it, {HOW_TO_GET[dataset]}. "
                          f"No data is downloaded at run time.")
    return path


def required_files(data_root) -> dict[str, list[Path]]:
    """Every file the CIFAR-10 → STL-10 / CIFAR-10.1 task reads, per dataset (see the layout above)."""
    root = Path(data_root)
    return {"CIFAR-10": [root / CIFAR10_DIR / n for n in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")],
            "STL-10": [root / STL10_DIR / n for n in ("test_X.bin", "test_y.bin")],
            "CIFAR-10.1": [root / CIFAR101_DIR / f"cifar10.1_{CIFAR101_VERSION}_{k}.npy" for k in ("data", "labels")]}


def missing_files(data_root) -> list[str]:
    """One message per dataset with absent files (empty when all are there): which files, where, how to get them."""
    out = []
    for dataset, paths in required_files(data_root).items():
        absent = [p for p in paths if not p.is_file()]
        if absent:
            out.append(f"{dataset}: {len(absent)} of its files are missing ({', '.join(str(p) for p in absent)}). "
                       f"To obtain them, {HOW_TO_GET[dataset]}.")
    return out


# ---- CIFAR-10 -----------------------------------------------------------------------------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only: a CIFAR batch file cannot run code when it is read."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"),
               ("_codecs", "encode")}  # how Python 3 writes bytes at protocol 2 (the real files are Python 2's)

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as e:  # truncated files and foreign pickles raise many types
        raise MalformedData(f"CIFAR-10: {path} is not a CIFAR-10 python batch file ({type(e).__name__}: {e})") from e
    if not isinstance(batch, dict):
        raise MalformedData(f"CIFAR-10: {path} holds a {type(batch).__name__}, expected the batch dict")
    get = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in get or "labels" not in get:
        raise MalformedData(f"CIFAR-10: {path} lacks the 'data' or 'labels' entry (has {sorted(get)})")
    data, labels = np.asarray(get["data"]), np.asarray(get["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise MalformedData(f"CIFAR-10: {path} 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    if labels.shape != (len(data),) or labels.size and (labels.min() < 0 or labels.max() > 9):
        raise MalformedData(f"CIFAR-10: {path} has {labels.shape} labels for {len(data)} images, or labels outside 0-9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(data_root, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 ``split`` ("train": data_batch_1..5, 50,000 images; "test": test_batch, 10,000) as
    ``(uint8 (N, 3, 32, 32), int64 (N,))``."""
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    if split not in names:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    folder = Path(data_root) / CIFAR10_DIR
    parts = [_read_cifar_batch(_require(folder / n, "CIFAR-10")) for n in names[split]]
    return torch.from_numpy(np.concatenate([p[0] for p in parts])), torch.from_numpy(np.concatenate([p[1] for p in parts]))


def write_cifar10(data_root, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write ``images`` (uint8 (N, 3, 32, 32)) and ``labels`` in CIFAR-10's python format (train: 5 batches)."""
    folder = Path(data_root) / CIFAR10_DIR
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    chunks = np.array_split(np.arange(len(images)), len(names))
    for name, idx in zip(names, chunks):
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels[idx]],
                 b"data": np.ascontiguousarray(images[idx], dtype=np.uint8).reshape(len(idx), -1),
                 b"filenames": [f"{i}.png".encode() for i in idx]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


# ---- STL-10 -------------------------------------------------------------------------------------------------------

def load_stl10(data_root, split: str, *, drop_monkey: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """STL-10 labelled ``split`` ("train" 5,000 / "test" 8,000 images, 96×96) as ``(uint8 (N, 3, 96, 96), int64)``.

    The binary files store each image channel by channel, each channel column-major; labels are 1..10. With
    ``drop_monkey`` (the paper's setting) "monkey" images are removed and labels are mapped to CIFAR-10's
    (:data:`STL_TO_CIFAR`); otherwise the labels are STL's own, 0-based.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    folder = Path(data_root) / STL10_DIR
    xp, yp = _require(folder / f"{split}_X.bin", "STL-10"), _require(folder / f"{split}_y.bin", "STL-10")
    raw, y = np.fromfile(xp, dtype=np.uint8), np.fromfile(yp, dtype=np.uint8).astype(np.int64)
    per_image = 3 * STL_SIZE * STL_SIZE
    if raw.size % per_image or raw.size // per_image != y.size:
        raise MalformedData(f"STL-10: {xp} has {raw.size} bytes, expected {y.size} images × {per_image} bytes "
                            f"(one per label in {yp})")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise MalformedData(f"STL-10: {yp} has labels outside 1-10")
    x = raw.reshape(-1, 3, STL_SIZE, STL_SIZE).transpose(0, 1, 3, 2)  # column-major channels -> (row, column)
    if drop_monkey:
        keep = y != 8
        x, y = x[keep], np.array([STL_TO_CIFAR[int(v)] for v in y[keep]], dtype=np.int64)
    else:
        y = y - 1
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)


def write_stl10(data_root, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write ``images`` (uint8 (N, 3, 96, 96)) and STL's 1-based ``labels`` as ``<split>_X.bin`` / ``<split>_y.bin``."""
    folder = Path(data_root) / STL10_DIR
    folder.mkdir(parents=True, exist_ok=True)
    np.ascontiguousarray(np.asarray(images, dtype=np.uint8).transpose(0, 1, 3, 2)).tofile(folder / f"{split}_X.bin")
    np.asarray(labels, dtype=np.uint8).tofile(folder / f"{split}_y.bin")


# ---- CIFAR-10.1 ---------------------------------------------------------------------------------------------------

def load_cifar101(data_root) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10.1 (v6, 2,000 images, CIFAR-10's labels) as ``(uint8 (N, 3, 32, 32), int64 (N,))``."""
    folder = Path(data_root) / CIFAR101_DIR
    dp = _require(folder / f"cifar10.1_{CIFAR101_VERSION}_data.npy", "CIFAR-10.1")
    lp = _require(folder / f"cifar10.1_{CIFAR101_VERSION}_labels.npy", "CIFAR-10.1")
    try:
        data, labels = np.load(dp, allow_pickle=False), np.load(lp, allow_pickle=False)
    except ValueError as e:
        raise MalformedData(f"CIFAR-10.1: {dp} or {lp} is not a plain .npy array ({e})") from e
    if data.dtype != np.uint8 or data.ndim != 4 or data.shape[1:] != (32, 32, 3):
        raise MalformedData(f"CIFAR-10.1: {dp} is {data.dtype} {data.shape}, expected uint8 (N, 32, 32, 3)")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer) or \
            labels.size and (labels.min() < 0 or labels.max() > 9):
        raise MalformedData(f"CIFAR-10.1: {lp} must hold one integer label 0-9 per image of {dp}")
    return (torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2))),
            torch.from_numpy(labels.astype(np.int64)))


def write_cifar101(data_root, images: np.ndarray, labels: np.ndarray) -> None:
    """Write ``images`` (uint8 (N, 3, 32, 32)) and ``labels`` as CIFAR-10.1's two ``.npy`` files (images NHWC)."""
    folder = Path(data_root) / CIFAR101_DIR
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"cifar10.1_{CIFAR101_VERSION}_data.npy", np.asarray(images, dtype=np.uint8).transpose(0, 2, 3, 1))
    np.save(folder / f"cifar10.1_{CIFAR101_VERSION}_labels.npy", np.asarray(labels, dtype=np.int64))


def cifar_task(data_root, *, ood=("STL-10", "CIFAR-10.1"), n_val: int | None = None, split_seed: int = 0,
               max_train: int | None = None, max_eval: int | None = None) -> Task:
    """CIFAR-10 → STL-10 / CIFAR-10.1 (the paper's Section 4). ID test is CIFAR-10's test batch. With ``n_val=None``
    (the official code: ``configs/adaptation/datasets_cifar_stl.yaml`` trains on all of CIFAR-10 train and early-stops
    on ``cifar10-test``) ID train is
    all 50,000 training images and the ID test set doubles as ID-val; with a number, ID-val is a fixed random
    ``n_val`` images held out of the training batches (by ``split_seed``, independent of the run seed) and the rest is
    ID train. ``max_train`` / ``max_eval`` cap the sizes (fixed subsets) for smoke runs."""
    known = {"STL-10": lambda: load_stl10(data_root, "test"), "CIFAR-10.1": lambda: load_cifar101(data_root)}
    unknown = [o for o in ood if o not in known]
    if unknown:
        raise ValueError(f"unknown OOD set(s) {unknown}; known: {list(known)}")
    x, y = load_cifar10(data_root, "train")
    if n_val is not None and not 0 < n_val < len(y):
        raise ValueError(f"n_val must be None (ID-val = ID test, as the paper) or lie in 1..{len(y) - 1}; got {n_val}")
    test = ImageSet(*load_cifar10(data_root, "test"))
    train, val = (ImageSet(x, y), test) if n_val is None else ImageSet(x, y).hold_out(n_val, split_seed)
    ood_sets = {name: ImageSet(*known[name]()) for name in ood}
    val_name = "ID-val (the ID test set, as the paper)" if n_val is None else "ID-val (held out of CIFAR-10 train)"
    sizes = {"ID train (CIFAR-10 train)": len(train), val_name: len(val),
             "ID test (CIFAR-10 test)": len(test), **{f"OOD ({k})": len(v) for k, v in ood_sets.items()}}
    task = Task("cifar10", train, val, test, ood_sets, n_classes=10, sizes=sizes)
    return task.capped(max_train, max_eval, split_seed)


def write_synthetic_root(data_root, *, n_train: int = 400, n_test: int = 200, n_stl: int = 200, n_c101: int = 100,
                         seed: int = 0) -> dict:
    """Fill ``data_root`` with small generated images in the exact CIFAR-10, STL-10 and CIFAR-10.1 file formats.

    Each of 10 classes (and STL's "monkey") is a fixed random pair of coloured plane waves. CIFAR-10.1 is the same
    distribution with a little more noise (a small shift); STL-10 is drawn at 96×96 with a colour cast and more noise
    (a larger shift). Nothing here is real data: it exercises the loaders and the pipeline end to end. Returns the
    number of images written per file set.
    """
    rng = np.random.default_rng(seed)
    protos = pattern_prototypes(11, rng)  # 10 CIFAR classes + a monkey class (index 10)
    y_train, y_test, y_c101 = (rng.integers(0, 10, n) for n in (n_train, n_test, n_c101))
    write_cifar10(data_root, "train", pattern_images(n_train, 32, y_train, rng, protos, 0.0, 0.08), y_train)
    write_cifar10(data_root, "test", pattern_images(n_test, 32, y_test, rng, protos, 0.0, 0.08), y_test)
    write_cifar101(data_root, pattern_images(n_c101, 32, y_c101, rng, protos, 0.0, 0.12), y_c101)
    cifar_to_stl = {c: s for s, c in STL_TO_CIFAR.items()}
    stl_labels = rng.choice([*cifar_to_stl.values(), 8], n_stl)              # STL's own 1-based labels, monkey = 8
    proto_index = np.array([10 if s == 8 else STL_TO_CIFAR[int(s)] for s in stl_labels])
    for split in ("train", "test"):
        write_stl10(data_root, split, pattern_images(n_stl, STL_SIZE, proto_index, rng, protos, 0.08, 0.15), stl_labels)
    return {"CIFAR-10 train": n_train, "CIFAR-10 test": n_test, "CIFAR-10.1": n_c101, "STL-10 train/test": n_stl}


# ---- the registry's interface ----------------------------------------------------------------------------------

OOD = ("STL-10", "CIFAR-10.1")


def load(data_root, *, n_val: int | None = None, image_size: int = 224, load_size: int | None = None, cache_dir=None,
         max_train: int | None = None, max_eval: int | None = None) -> Task:
    """CIFAR-10 → STL-10 / CIFAR-10.1 (:func:`cifar_task`; the images are small and held in
    memory as stored: ``image_size``, ``load_size`` and ``cache_dir`` are not used), capped to ``max_train`` /
    ``max_eval`` images for smoke runs."""
    return cifar_task(data_root, ood=OOD, n_val=n_val, max_train=max_train, max_eval=max_eval)


def missing(data_root) -> list[str]:
    """One line per kind of absent file (empty when all are there), with where to get it."""
    return missing_files(data_root)


def write_synthetic(data_root):
    """Small generated CIFAR-10, STL-10 and CIFAR-10.1 files in the real formats
    (:func:`write_synthetic_root`)."""
    return write_synthetic_root(data_root)
