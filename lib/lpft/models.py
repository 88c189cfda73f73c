"""The network of the CPU-scale real-image experiment, and its supervised pretraining (cached on disk).

``DigitNet`` is a small CNN on 8×8 digit images: a ``backbone`` of three blocks giving the 128-d penultimate features
the LP-FT paper (Kumar et al., ICLR 2022) probes and fine-tunes, and a linear ``head``. Its blocks are named so that
surgical fine-tuning (Lee et al., ICLR 2023) can pick one: ``first`` (conv3(32)×2, pool), ``middle``
(conv3(64)×2, pool), ``last`` (conv3(128), global average pool). :func:`pretrain` stands in for the paper's
pretrained models (MoCo, CLIP): supervised training on a pool of both domains, computed once and then read back.
"""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset
from tqdm import tqdm  # plain tqdm: no ipywidgets needed inside kernels

from lpft.execute import atomic_write

NORMS = ("none", "group")
FEATURE_DIM = 128
# Bump when the architecture or the pretraining recipe changes: it is part of the cache key, so stale weights are
# never read back.
PRETRAIN_VERSION = 1


def _conv(c_in: int, c_out: int, norm: str) -> list[nn.Module]:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1)]
    if norm == "group":
        layers.append(nn.GroupNorm(8, c_out))
    return layers + [nn.ReLU()]


class DigitNet(nn.Module):
    """conv3(32)-conv3(32)-pool, conv3(64)×2-pool, conv3(128)-GAP → 128-d features → linear head (``n_classes``).

    ``norm="group"`` puts a GroupNorm (8 groups) after every convolution; ``"none"`` has no normalisation layer
    (the ablation of the digit chapter). Without BatchNorm, ``train()`` and ``eval()`` compute the same function.
    """

    def __init__(self, n_classes: int = 10, norm: str = "none"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}; got {norm!r}")
        self.norm = norm
        self.backbone = nn.Sequential(OrderedDict(
            first=nn.Sequential(*_conv(1, 32, norm), *_conv(32, 32, norm), nn.MaxPool2d(2)),      # 8×8 → 4×4
            middle=nn.Sequential(*_conv(32, 64, norm), *_conv(64, 64, norm), nn.MaxPool2d(2)),    # 4×4 → 2×2
            last=nn.Sequential(*_conv(64, FEATURE_DIM, norm), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        ))
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, 128): what LP fits its head on and what feature change measures."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def random_shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by an independent random (dy, dx) ∈ {−1, 0, 1}², zero-filled: the ±1 px augmentation."""
    n, _, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1))
    dy, dx = torch.randint(0, 3, (2, n, 1), generator=generator)
    rows = (torch.arange(h) + dy)[:, :, None]           # (n, h, 1)
    cols = (torch.arange(w) + dx)[:, None, :]           # (n, 1, w)
    return padded[torch.arange(n)[:, None, None], 0, rows, cols][:, None]


def _train_pretrain(pool: TensorDataset, config: dict, progress: bool) -> DigitNet:
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


def dataset_digest(data: TensorDataset) -> str:
    """sha256 of a dataset's tensors (dtype, shape and bytes): the pool's content enters the cache key."""
    h = hashlib.sha256()
    for t in data.tensors:
        t = t.detach().contiguous().cpu()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def pretrain(pool: TensorDataset, *, epochs: int, lr: float, seed: int, norm: str, cache_dir: Path,
             batch_size: int = 128, progress: bool = False) -> DigitNet:
    """A ``DigitNet`` pretrained on ``pool`` (labels = digit classes), read from ``cache_dir`` when already computed.

    The cache holds ``<key>.json`` (the config) and ``<key>.pt`` (the state_dict), both written atomically, key = sha256
    of the config, which includes a digest of the pool's tensors and :data:`PRETRAIN_VERSION`. A checkpoint that exists
    but cannot be read, or whose config or parameters do not match, raises ``RuntimeError``: it is never silently
    retrained over or partly loaded.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}; got {norm!r}")
    y = pool.tensors[1]
    config = {"version": PRETRAIN_VERSION, "epochs": int(epochs), "lr": float(lr), "seed": int(seed), "norm": norm,
              "batch_size": int(batch_size), "n_classes": int(y.max()) + 1, "pool": dataset_digest(pool)}
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    cache_dir = Path(cache_dir)
    pt, js = cache_dir / f"{key}.pt", cache_dir / f"{key}.json"
    if pt.exists():
        return _load_checkpoint(pt, js, config)
    model = _train_pretrain(pool, config, progress)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # The .json first: a .pt never exists without its config.
    atomic_write(js, lambda p: Path(p).write_text(json.dumps(config, indent=2, sort_keys=True)))
    atomic_write(pt, lambda p: torch.save(model.state_dict(), p))
    return model


def _load_checkpoint(pt: Path, js: Path, config: dict) -> DigitNet:
    def refuse(why: str):
        return RuntimeError(f"pretraining checkpoint {pt} is corrupt or incomplete ({why}); "
                            f"delete {pt} and {js} to retrain it")

    try:
        saved = json.loads(js.read_text())
    except (OSError, ValueError) as e:
        raise refuse(f"its config {js.name} cannot be read: {e}") from e
    if saved != config:
        raise refuse(f"its config {js.name} differs from the requested one")
    try:
        state = torch.load(pt, weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise refuse(f"torch.load failed: {e}") from e
    model = DigitNet(config["n_classes"], config["norm"])
    expected = model.state_dict()
    if not isinstance(state, dict) or state.keys() != expected.keys():
        raise refuse("its parameter names differ from DigitNet's")
    for name, value in state.items():
        if not isinstance(value, torch.Tensor) or value.shape != expected[name].shape:
            raise refuse(f"parameter {name} has the wrong shape")
        if not torch.isfinite(value).all():
            raise refuse(f"parameter {name} is not finite")
    model.load_state_dict(state)
    return model.eval()
