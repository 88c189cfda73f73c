"""Self-supervised (SimCLR-style) pretraining of the digit backbone on the same pool, labels unused.

The LP-FT paper's "good features" came from supervised and from self-supervised pretraining alike (MoCo-v2,
CLIP; Kumar et al., ICLR 2022, Section 4). :func:`pretrain` is the self-supervised
counterpart of :func:`lpft.models.pretrain`: the same :class:`~lpft.models.DigitNet` backbone on the same pool
(:func:`lpft.digits.pretraining_pool`, whose labels are ignored), trained with the NT-Xent loss of SimCLR (Chen et
al., ICML 2020) on two augmented views of every image, through a small projection head that is dropped afterwards.

Augmentations (:func:`augment`), chosen for 8×8 digits: ±1 px shifts (:func:`lpft.models.random_shift`), rotations
of up to ±``max_degrees``, stroke thickening or thinning by up to ``max_stroke`` (a per-image mix with the 3×3
dilation or erosion, the ``thicken`` / ``thin`` shifts of :func:`lpft.digits.apply_shift` at a random strength) and,
with probability ``p_invert``, contrast inversion. Inversion is the analogue of SimCLR's colour distortion: it is the
only augmentation that links a digit to its inverted copy. Without it nothing in a label-free objective says that an
inverted 3 and a 3 are the same thing, while supervised pretraining learns that from the labels; with it the features
are pushed towards invariance to exactly the shift the OOD test applies. Both are measured in the extra digit chapter.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset
from tqdm import tqdm  # plain tqdm: no ipywidgets needed inside kernels

from lpft import models
from lpft.execute import atomic_write

# Bump when the augmentations, loss or training loop change: it is part of the cache key.
CONTRASTIVE_VERSION = 1
PROJECTION_DIM = 64
DEFAULTS = dict(epochs=20, lr=1e-3, temperature=0.2, batch_size=256, max_degrees=15.0, max_stroke=0.5,
                p_invert=0.5, seed=0, norm="group")


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
    x = models.random_shift(x, generator)
    a = ((2 * torch.rand(n, generator=generator) - 1) * max_stroke).view(n, 1, 1, 1)
    dilated, eroded = F.max_pool2d(x, 3, stride=1, padding=1), -F.max_pool2d(-x, 3, stride=1, padding=1)
    x = x + a.clamp(min=0) * (dilated - x) + (-a).clamp(min=0) * (eroded - x)
    flip = (torch.rand(n, generator=generator) < p_invert).view(n, 1, 1, 1)
    return torch.where(flip, 1.0 - x, x).clamp(0.0, 1.0)


class Projection(nn.Module):
    """SimCLR's projection head on the 128-d features: Linear-ReLU-Linear to :data:`PROJECTION_DIM`; dropped after
    pretraining (LP and FT use the features before it, as in SimCLR)."""

    def __init__(self, dim: int = models.FEATURE_DIM, out: int = PROJECTION_DIM):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, out))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


def _train(pool: TensorDataset, config: dict, progress: bool) -> models.DigitNet:
    """NT-Xent on two augmented views per image: Adam, shuffled batches, everything seeded by ``config["seed"]``."""
    torch.manual_seed(config["seed"])
    model = models.DigitNet(config["n_classes"], config["norm"]).train()
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


def config_of(pool: TensorDataset, **options) -> dict:
    """The full configuration (cache key material) of a contrastive pretraining run: :data:`DEFAULTS` updated by
    ``options``, plus the version, the pool's digest and the number of classes of the (unused) head."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown contrastive pretraining options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    c = {**DEFAULTS, **options}
    if c["norm"] not in models.NORMS:
        raise ValueError(f"norm must be one of {models.NORMS}; got {c['norm']!r}")
    for k in ("epochs", "batch_size", "seed"):
        c[k] = int(c[k])
    for k in ("lr", "temperature", "max_degrees", "max_stroke", "p_invert"):
        c[k] = float(c[k])
        if not math.isfinite(c[k]):
            raise ValueError(f"{k} must be finite; got {c[k]!r}")
    return {**c, "kind": "contrastive", "version": CONTRASTIVE_VERSION, "projection_dim": PROJECTION_DIM,
            "n_classes": int(pool.tensors[1].max()) + 1, "pool": models.dataset_digest(pool)}


def pretrain(pool: TensorDataset, *, cache_dir: Path, progress: bool = False, **options) -> models.DigitNet:
    """A ``DigitNet`` whose backbone was pretrained by NT-Xent on ``pool``'s images (labels ignored), read from
    ``cache_dir`` when already computed; ``options`` override :data:`DEFAULTS`.

    The projection head is dropped; the returned head is PyTorch's default initialisation (LP and FT replace it).
    Cached as ``<key>.json`` (config) and ``<key>.pt`` (state_dict), both written atomically, key = sha256 of
    :func:`config_of`; a checkpoint that exists but cannot be read or does not match raises ``RuntimeError``
    (the checks of :func:`lpft.models.pretrain`), never silently retrained or partly loaded.
    """
    config = config_of(pool, **options)
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    cache_dir = Path(cache_dir)
    pt, js = cache_dir / f"contrastive-{key}.pt", cache_dir / f"contrastive-{key}.json"
    if pt.exists():
        return models._load_checkpoint(pt, js, config)  # the same refusals as the supervised cache
    model = _train(pool, config, progress)
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(js, lambda p: Path(p).write_text(json.dumps(config, indent=2, sort_keys=True)))  # .json first
    atomic_write(pt, lambda p: torch.save(model.state_dict(), p))
    return model
