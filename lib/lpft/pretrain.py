"""Pretraining the digit backbone on the pool of both domains: supervised, or self-supervised (SimCLR-style); one cache.

The LP-FT paper's "good features" came from supervised and self-supervised pretraining alike (MoCo-v2, CLIP; Kumar et
al., ICLR 2022, Section 4). Both stand-ins train the same :class:`~lpft.digits.DigitNet` on the same pool
(:func:`lpft.digits.pretraining_pool`), computed once and then read back from a cache folder:

* :func:`supervised`: cross-entropy on the pool's digit labels, Adam, ±1 px random shifts (:func:`random_shift`);
* :func:`contrastive`: the pool's labels unused, SimCLR's NT-Xent loss (Chen et al., ICML 2020, :func:`nt_xent`) on
  two augmented views of every image, through a small projection head that is dropped afterwards.

Contrastive augmentations (:func:`augment`), chosen for 8×8 digits: ±1 px shifts, rotations of up to
±``max_degrees``, stroke thickening or thinning by up to ``max_stroke`` (a per-image mix with the 3×3 dilation or
erosion, the ``thicken`` / ``thin`` shifts of :func:`lpft.digits.apply_shift` at a random strength) and, with
probability ``p_invert``, contrast inversion. Inversion is the analogue of SimCLR's colour distortion: it is the only
augmentation that links a digit to its inverted copy. Without it nothing in a label-free objective says that an
inverted 3 and a 3 are the same thing, while supervised pretraining learns that from the labels; with it the features
are pushed towards invariance to exactly the shift the OOD test applies. Both are measured in the extra digit chapter.

Each cached backbone is ``<key>.json`` (its config) and ``<key>.pt`` (its state_dict), stored and checked by
:mod:`lpft.checkpoints`; key = sha256 of the config, which includes a digest of the pool's tensors and the recipe's
version. A checkpoint that exists but cannot be read, or whose config or parameters do not match, raises
``RuntimeError``: it is never silently retrained over or partly loaded.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset
from tqdm import tqdm  # plain tqdm: no ipywidgets needed inside kernels

from lpft import checkpoints
from lpft.digits import FEATURE_DIM, NORMS, DigitNet
from lpft.records import canonical, digest

# Bump when a recipe changes: the version is part of the cache key, so stale weights are never read back.
PRETRAIN_VERSION = 1         # supervised: the architecture or the recipe
CONTRASTIVE_VERSION = 1      # contrastive: the augmentations, the loss or the loop
PROJECTION_DIM = 64
DEFAULTS = dict(epochs=20, lr=1e-3, temperature=0.2, batch_size=256, max_degrees=15.0, max_stroke=0.5,
                p_invert=0.5, seed=0, norm="group")


# ---- supervised ----

def random_shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by an independent random (dy, dx) ∈ {−1, 0, 1}², zero-filled: the ±1 px augmentation."""
    n, _, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1))
    dy, dx = torch.randint(0, 3, (2, n, 1), generator=generator)
    rows = (torch.arange(h) + dy)[:, :, None]           # (n, h, 1)
    cols = (torch.arange(w) + dx)[:, None, :]           # (n, 1, w)
    return padded[torch.arange(n)[:, None, None], 0, rows, cols][:, None]


def _train_supervised(pool: TensorDataset, config: dict, progress: bool) -> DigitNet:
    """Supervised pretraining: Adam, cross-entropy, ±1 px random shifts, shuffled mini-batches, seeded."""
    torch.manual_seed(config["seed"])
    model = DigitNet(config["n_classes"], config["norm"]).train()
    generator = torch.Generator().manual_seed(config["seed"])
    x, y = pool.tensors
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    for _ in tqdm(range(config["epochs"]), desc="pretrain", disable=not progress):
        for idx in torch.randperm(len(y), generator=generator).split(config["batch_size"]):
            loss = F.cross_entropy(model(random_shift(x[idx], generator)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def supervised(pool: TensorDataset, *, epochs: int, lr: float, seed: int, norm: str, cache_dir: Path,
               batch_size: int = 128, progress: bool = False) -> DigitNet:
    """A ``DigitNet`` pretrained on ``pool`` (labels = digit classes), read from ``cache_dir`` when already computed
    (the cache of the module's docstring; the key includes :data:`PRETRAIN_VERSION`)."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}; got {norm!r}")
    y = pool.tensors[1]
    config = {"version": PRETRAIN_VERSION, "epochs": int(epochs), "lr": float(lr), "seed": int(seed), "norm": norm,
              "batch_size": int(batch_size), "n_classes": int(y.max()) + 1,
              "pool": checkpoints.tensors_digest(pool.tensors)}
    return _cached(config, Path(cache_dir), "", lambda: _train_supervised(pool, config, progress))


def _cached(config: dict, cache_dir: Path, prefix: str, train) -> DigitNet:
    """The backbone of ``config`` from ``cache_dir`` (``<prefix><key>.pt`` / ``.json``, :mod:`lpft.checkpoints`), else
    ``train()`` it and store it."""
    key = digest(canonical(config))
    pt, js = cache_dir / f"{prefix}{key}.pt", cache_dir / f"{prefix}{key}.json"
    if pt.exists():
        model = DigitNet(config["n_classes"], config["norm"])
        checkpoints.load(js, pt, model, lambda saved: saved == config, "pretraining checkpoint")
        return model.eval()
    model = train()
    checkpoints.save(js, config, pt, model)
    return model


# ---- contrastive (SimCLR-style) ----

def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent loss of two views ``z1``, ``z2`` (N, d) of the same N images.

    The 2N embeddings are L2-normalised; for each one, its positive is the other view of the same image and the
    2N − 2 remaining embeddings are its negatives: loss = mean over the 2N anchors of
    −log(exp(s⁺/τ) / Σ_{k ≠ anchor} exp(s_k/τ)), s = cosine similarity, τ = ``temperature``.
    """
    if z1.shape != z2.shape or z1.dim() != 2 or len(z1) < 2:
        raise ValueError(f"z1 and z2 must both be (N, d) with N >= 2; got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive; got {temperature!r}")
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))  # an anchor is not its own pair
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(logits, target)


def _rotate_each(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate image i of ``x`` by ``degrees[i]`` (bilinear, zero fill), as :func:`lpft.digits.apply_shift` does."""
    t = torch.deg2rad(degrees.to(x.dtype))
    c, s, zero = torch.cos(t), torch.sin(t), torch.zeros_like(t)
    theta = torch.stack([torch.stack([c, -s, zero], 1), torch.stack([s, c, zero], 1)], 1)   # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def augment(x: torch.Tensor, generator: torch.Generator, *, max_degrees: float = DEFAULTS["max_degrees"],
            max_stroke: float = DEFAULTS["max_stroke"], p_invert: float = DEFAULTS["p_invert"]) -> torch.Tensor:
    """One random view of each image of ``x`` (N, 1, H, W) in [0, 1]; the result is in [0, 1] with the same shape.

    Per image, independently: a rotation by U(−``max_degrees``, ``max_degrees``)°, a ±1 px shift, a stroke change
    a ~ U(−``max_stroke``, ``max_stroke``) (a > 0: (1 − a)·x + a·dilate(x); a < 0: the same with erode), then
    contrast inversion 1 − x with probability ``p_invert``. All randomness comes from ``generator``.
    """
    if x.dim() != 4:
        raise ValueError(f"x must have shape (N, C, H, W); got {tuple(x.shape)}")
    if not 0.0 <= p_invert <= 1.0:
        raise ValueError(f"p_invert must be in [0, 1]; got {p_invert!r}")
    n = len(x)
    degrees = (2 * torch.rand(n, generator=generator) - 1) * max_degrees
    x = _rotate_each(x, degrees) if max_degrees > 0 else x
    x = random_shift(x, generator)
    a = ((2 * torch.rand(n, generator=generator) - 1) * max_stroke).view(n, 1, 1, 1)
    dilated, eroded = F.max_pool2d(x, 3, stride=1, padding=1), -F.max_pool2d(-x, 3, stride=1, padding=1)
    x = x + a.clamp(min=0) * (dilated - x) + (-a).clamp(min=0) * (eroded - x)
    flip = (torch.rand(n, generator=generator) < p_invert).view(n, 1, 1, 1)
    return torch.where(flip, 1.0 - x, x).clamp(0.0, 1.0)


class Projection(nn.Module):
    """SimCLR's projection head on the 128-d features: Linear-ReLU-Linear to :data:`PROJECTION_DIM`; dropped after
    pretraining (LP and FT use the features before it, as in SimCLR)."""

    def __init__(self, dim: int = FEATURE_DIM, out: int = PROJECTION_DIM):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, out))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


def _train_contrastive(pool: TensorDataset, config: dict, progress: bool) -> DigitNet:
    """NT-Xent on two augmented views per image: Adam, shuffled batches, everything seeded by ``config["seed"]``."""
    torch.manual_seed(config["seed"])
    model = DigitNet(config["n_classes"], config["norm"]).train()
    projection = Projection()
    generator = torch.Generator().manual_seed(config["seed"])
    aug = {k: config[k] for k in ("max_degrees", "max_stroke", "p_invert")}
    x = pool.tensors[0]
    opt = torch.optim.Adam([*model.backbone.parameters(), *projection.parameters()], lr=config["lr"])
    for _ in tqdm(range(config["epochs"]), desc="contrastive pretrain", disable=not progress):
        for idx in torch.randperm(len(x), generator=generator).split(config["batch_size"]):
            if len(idx) < 2:
                continue
            views = torch.cat([augment(x[idx], generator, **aug), augment(x[idx], generator, **aug)])
            z = projection(model.features(views))
            loss = nt_xent(z[: len(idx)], z[len(idx):], config["temperature"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def contrastive_config(pool: TensorDataset, **options) -> dict:
    """The full configuration (cache key material) of a contrastive pretraining run: :data:`DEFAULTS` updated by
    ``options``, plus the version, the pool's digest and the number of classes of the (unused) head."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown contrastive pretraining options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    c = {**DEFAULTS, **options}
    if c["norm"] not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}; got {c['norm']!r}")
    for k in ("epochs", "batch_size", "seed"):
        c[k] = int(c[k])
    for k in ("lr", "temperature", "max_degrees", "max_stroke", "p_invert"):
        c[k] = float(c[k])
        if not math.isfinite(c[k]):
            raise ValueError(f"{k} must be finite; got {c[k]!r}")
    return {**c, "kind": "contrastive", "version": CONTRASTIVE_VERSION, "projection_dim": PROJECTION_DIM,
            "n_classes": int(pool.tensors[1].max()) + 1, "pool": checkpoints.tensors_digest(pool.tensors)}


def contrastive(pool: TensorDataset, *, cache_dir: Path, progress: bool = False, **options) -> DigitNet:
    """A ``DigitNet`` whose backbone was pretrained by NT-Xent on ``pool``'s images (labels ignored), read from
    ``cache_dir`` when already computed; ``options`` override :data:`DEFAULTS`.

    The projection head is dropped; the returned head is PyTorch's default initialisation (LP and FT replace it).
    Cached as ``contrastive-<key>`` (the cache of the module's docstring, key from :func:`contrastive_config`).
    """
    config = contrastive_config(pool, **options)
    return _cached(config, Path(cache_dir), "contrastive-", lambda: _train_contrastive(pool, config, progress))
