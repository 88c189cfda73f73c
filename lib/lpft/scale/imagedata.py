"""The paper's CIFAR-10 shifts from their standard on-disk files: CIFAR-10 (ID), STL-10 and CIFAR-10.1 (OOD).

The LP-FT paper (Kumar et al., ICLR 2022; Section 4 of its ICLR submission) trains on CIFAR-10 and evaluates out of
distribution on STL-10 and on CIFAR-10.1; as in the official code (github.com/AnanyaKumar/transfer_learning,
``unlabeled_extrapolation/datasets/stl_cifar_style.py``), STL-10's "monkey" class is dropped and its labels are mapped
to CIFAR-10's. Nothing is
downloaded: every loader reads from a ``data_root`` laid out as the datasets' own archives unpack::

    data_root/
      cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch   # cifar-10-python.tar.gz
      stl10_binary/train_X.bin, train_y.bin, test_X.bin, test_y.bin   # stl10_binary.tar.gz
      cifar10.1/cifar10.1_v6_data.npy, cifar10.1_v6_labels.npy         # CIFAR-10.1 repository, datasets/

A missing file raises :class:`MissingData` (a ``FileNotFoundError``) naming the file, where it was expected and how to
obtain it; a file that is there but malformed raises :class:`MalformedData` (a ``ValueError``). Images are kept as
``uint8`` tensors ``(N, 3, H, W)`` (CIFAR 32×32, STL 96×96); resizing and normalisation happen per batch on the
training device (:func:`prepare`). :func:`write_cifar10`, :func:`write_stl10` and :func:`write_cifar101` write the
same formats, and :func:`write_synthetic_root` fills a ``data_root`` with small generated images in them (the tests and
the chapter's ``quick`` profile read those through the same loaders).
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lpft.task import Task

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")  # labels 1..10
# STL-10 label (1-based, as in the *_y.bin files) -> CIFAR-10 label; "monkey" (8) has no CIFAR class and is dropped.
# CIFAR's "frog" (6) has no STL class: a model may still predict it, which counts as an error on STL.
STL_TO_CIFAR = {1: 0, 2: 2, 3: 1, 4: 3, 5: 4, 6: 5, 7: 7, 9: 8, 10: 9}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

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


class MissingData(FileNotFoundError):
    """A dataset file is not where the loader expects it; the message says where and how to obtain it."""


class MalformedData(ValueError):
    """A dataset file exists but does not have the expected format (shape, type, labels)."""


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


# ---- the task -----------------------------------------------------------------------------------------------------

@dataclass
class ImageSet:
    """Images (uint8 ``(N, 3, H, W)``) and int64 labels of one split; indexable by a batch of indices.

    ``classes``: the labels the set can have, when it covers only some of the model's classes (ImageNet-R and -A:
    200 of ImageNet's 1000); a prediction is then the argmax over those classes' logits
    (:func:`lpft.task.predict`), as the paper evaluates them. ``digest``: a sha256 of ``x``, ``y`` (and ``photo_hw``) computed when the images were
    decoded (a disk cache of a large set stores it), so that a run need not hash them again; None: not known.

    ``photo_hw``: int64 ``(N, 2)``, each photograph's height and width, when ``x`` stores the *whole* photograph
    resized to H×W without keeping its aspect ratio (BREEDS training images): crops are then drawn in the
    photograph's own coordinates and mapped onto ``x`` (:func:`onto_stored`), so RandomResizedCrop sees the whole
    photograph with its true shape, and the evaluation view is the photograph's centre (:func:`centre_boxes`).
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


def prepare(x: torch.Tensor, size: int, device="cpu", mean=IMAGENET_MEAN, std=IMAGENET_STD,
            channels_last: bool = False, centre_crop: bool = False) -> torch.Tensor:
    """A batch of uint8 images as the network's float input (the evaluation transform): moved to ``device``, scaled to
    [0, 1], with ``centre_crop`` cut to its central ``size``×``size`` pixels when larger (BREEDS: images stored at 256,
    then CenterCrop 224), resized to ``size``×``size`` (bilinear, antialiased when shrinking; skipped when already that
    size) and normalised per channel. The official CIFAR→STL transform is the resize to 224 alone
    (``configs/adaptation/datasets_cifar_stl.yaml``)."""
    x = x.to(device, non_blocking=True).float().div_(255.0)
    h, w = x.shape[-2:]
    if centre_crop and min(h, w) > size:
        top, left = (h - size) // 2, (w - size) // 2
        x = x[..., top:top + size, left:left + size]
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > size)
    return _normalise(x, mean, std, channels_last)


def _normalise(x: torch.Tensor, mean, std, channels_last: bool) -> torch.Tensor:
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    x = (x - m) / s
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# ---- training augmentation (official configs: BREEDS RandomResizedCrop + flip, DomainNet random crop + flip) ----------

AUGMENTATIONS = ("none", "random-resized-crop", "random-crop")
RRC_SCALE, RRC_RATIO, RRC_TRIES = (0.08, 1.0), (3 / 4, 4 / 3), 10


def augmentation_generator(seed: int, stream: int, epoch: int = 0) -> torch.Generator:
    """The random stream of one run's augmentation draws, fixed by (``seed``, ``stream``, ``epoch``): stream 1 is
    training (one draw per epoch, so a resumed run sees the same crops), stream 2 the LP features' augmented view."""
    state = np.random.SeedSequence((seed, stream, epoch)).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def crop_boxes(n: int, height, width, kind: str, size: int, generator: torch.Generator) -> torch.Tensor:
    """One crop per image, float64 ``(n, 5)``: ``top, left, h, w`` in pixels and a horizontal ``flip`` flag (0 or 1,
    probability 1/2). ``height`` and ``width``: the images' size, one number for all or a tensor of ``n`` (one per
    image: photographs of different shapes, :attr:`ImageSet.photo_hw`).

    ``"random-resized-crop"`` is RandomResizedCrop's rule: up to 10 tries of an area fraction uniform in (0.08, 1) and a
    log-uniform aspect ratio in (3/4, 4/3), the first box that fits kept at a uniformly random place; where none fits,
    the whole image with its aspect ratio clamped to that range, centred. ``"random-crop"`` is a ``size``×``size``
    box at a uniformly random place (DomainNet: 224 out of 256)."""
    if kind not in AUGMENTATIONS[1:]:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS[1:]}; got {kind!r}")
    g = generator
    if kind == "random-crop":
        if not np.isscalar(height) or not np.isscalar(width):
            raise ValueError("random-crop draws on the stored image: it needs one image size, not one per image")
        if size > min(height, width):
            raise ValueError(f"random-crop of {size} px needs images of at least that size; got {height}×{width}")
        top = torch.randint(0, height - size + 1, (n,), generator=g).double()
        left = torch.randint(0, width - size + 1, (n,), generator=g).double()
        h = w = torch.full((n,), float(size), dtype=torch.float64)
    else:
        height = torch.as_tensor(height, dtype=torch.float64).expand(n)
        width = torch.as_tensor(width, dtype=torch.float64).expand(n)
        area = (height * width)[:, None]
        scale = torch.empty(n, RRC_TRIES, dtype=torch.float64).uniform_(*RRC_SCALE, generator=g)
        log_ratio = torch.empty(n, RRC_TRIES, dtype=torch.float64).uniform_(*np.log(RRC_RATIO), generator=g)
        ratio = log_ratio.exp()
        ws, hs = (area * scale * ratio).sqrt().round(), (area * scale / ratio).sqrt().round()
        fits = (ws >= 1) & (ws <= width[:, None]) & (hs >= 1) & (hs <= height[:, None])
        first = fits.double().argmax(1)  # the first try that fits (0 where none does: replaced below)
        w, h = ws.gather(1, first[:, None])[:, 0], hs.gather(1, first[:, None])[:, 0]
        u = torch.rand(n, 2, dtype=torch.float64, generator=g)
        top, left = (u[:, 0] * (height - h + 1)).floor(), (u[:, 1] * (width - w + 1)).floor()
        none = ~fits.any(1)
        if none.any():  # the whole image, aspect ratio clamped, centred
            aspect = width / height
            fw = torch.where(aspect <= RRC_RATIO[1], width, (height * RRC_RATIO[1]).round())
            fh = torch.where(aspect >= RRC_RATIO[0], height, (width / RRC_RATIO[0]).round())
            w, h = torch.where(none, fw, w), torch.where(none, fh, h)
            top = torch.where(none, ((height - fh) / 2).floor(), top)
            left = torch.where(none, ((width - fw) / 2).floor(), left)
    flip = (torch.rand(n, generator=g) < 0.5).double()
    return torch.stack([top, left, h, w, flip], 1)


def centre_boxes(photo_hw: torch.Tensor, fraction: float) -> torch.Tensor:
    """The evaluation view of each photograph (no flip), float64 ``(n, 5)`` boxes in its own pixels: the central
    square whose side is ``fraction`` of the shorter side, i.e. Resize(s) + CenterCrop(``fraction``·s) (BREEDS: 224 of
    256, ``fraction`` 0.875), before :func:`onto_stored`."""
    hw = photo_hw.double()
    side = hw.min(1).values * fraction
    top, left = (hw[:, 0] - side) / 2, (hw[:, 1] - side) / 2
    return torch.stack([top, left, side, side, torch.zeros_like(side)], 1)


def onto_stored(boxes: torch.Tensor, photo_hw: torch.Tensor, stored_hw: tuple[int, int]) -> torch.Tensor:
    """Boxes drawn in photograph pixels (:func:`crop_boxes`, :func:`centre_boxes`) as boxes on the stored copies
    (each photograph resized to ``stored_hw``, aspect ratio not kept): every edge scaled by stored / photograph size
    along its axis and rounded to a whole pixel, each box at least one pixel wide and inside the image. Cutting
    that box and resizing it to the input size is the photograph's crop at the stored copy's resolution."""
    out = boxes.clone()
    for axis, (start, length) in enumerate(((0, 2), (1, 3))):
        stored = stored_hw[axis]
        scale = stored / photo_hw[:, axis].double()
        first = (boxes[:, start] * scale).round().clamp(0, stored - 1)
        last = ((boxes[:, start] + boxes[:, length]) * scale).round()
        last = torch.maximum(last.clamp(max=stored), first + 1)
        out[:, start], out[:, length] = first, last - first
    return out


def augment(x: torch.Tensor, boxes: torch.Tensor, size: int, device="cpu", mean=IMAGENET_MEAN, std=IMAGENET_STD,
            channels_last: bool = False) -> torch.Tensor:
    """A batch of uint8 images as augmented network inputs (the training transform): each image's crop box
    (:func:`crop_boxes`, integer pixels) cut out and resized to ``size``×``size`` as torchvision's ``resized_crop``
    does (bilinear, antialiased when shrinking), mirrored where its flag is set, on ``device``, then normalised. A
    ``size`` crop is copied exactly."""
    x = x.to(device, non_blocking=True)
    out = torch.empty(len(x), 3, size, size, device=x.device)
    for i, (top, left, h, w, flip) in enumerate(boxes.long().tolist()):
        crop = x[i:i + 1, :, top:top + h, left:left + w].float().div_(255.0)
        if (h, w) != (size, size):
            crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[i] = crop[0].flip(-1) if flip else crop[0]
    return _normalise(out, mean, std, channels_last)


# ---- small generated data in the real formats ---------------------------------------------------------------------

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
