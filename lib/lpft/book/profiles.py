"""What the ``quick`` and ``full`` profiles mean for each chapter, and validation of the papermill parameters.

A chapter's code is the same in both profiles; only the sizes, step counts and numbers of repeats below differ.
``quick`` is what CI executes on a 2-core CPU; ``full`` is the paper-faithful run (larger sweeps, more instances).
"""
from __future__ import annotations

import os
import random
from types import SimpleNamespace

import numpy as np

PROFILES = ("quick", "full")
DEVICES = ("auto", "cpu", "cuda")

# chapter name (= notebooks/<name>.py) -> profile -> settings. The order is the book's order.
CHAPTERS: dict[str, dict[str, dict]] = {
    "theory-invariants": {
        "quick": dict(n_instances=200, gd_lrs=(0.1, 0.05, 0.01, 0.002), gd_time=20.0),
        "full": dict(n_instances=2000, gd_lrs=(0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001), gd_time=40.0),
    },
    "theory-features": {
        "quick": dict(n_seeds=5, eps_grid=(0.0, 0.01, 0.03, 0.1, 0.3), eps_fine=12),
        "full": dict(n_seeds=50, eps_grid=(0.0, 0.01, 0.03, 0.1, 0.3), eps_fine=40),
    },
    "theory-distortion": {
        "quick": dict(n_seeds=8, eps=0.03, angles=(0, 15, 30, 60, 90, 120, 150, 180),
                      scales=(1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0), dims=(5, 10, 20, 35, 45, 50),
                      sizes=(2, 5, 10, 20, 30, 40)),
        "full": dict(n_seeds=50, eps=0.03, angles=tuple(range(0, 181, 10)),
                     scales=tuple(float(s) for s in np.geomspace(1e-3, 3.0, 15).round(6)),
                     dims=(2, 5, 10, 15, 20, 25, 30, 35, 40, 45, 48, 50),
                     sizes=(2, 3, 4, 5, 6, 8, 10, 15, 20, 25, 30, 35, 40)),
    },
    "theory-bound": {
        "quick": dict(n_instances=1000, lr_scale=0.25, steps=6000, record_every=30, compile=False, n_ode=3,
                      k1_norms=(0.25, 0.5, 1.0, 2.0, 4.0), k1_ms=(5, 20, 40)),
        "full": dict(n_instances=10000, lr_scale=0.05, steps=30000, record_every=150, compile=True, n_ode=10,
                     k1_norms=(0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 1.5, 2.5, 4.0, 6.0, 10.0),
                     k1_ms=(5, 10, 20, 30, 40, 45)),
    },
    "theory-beyond": {
        "quick": dict(n_seeds=3, eps_grid=(0.0, 0.1, 0.3), n_test=5000, lr=0.05, steps=3000, relu_k=20, relu_lr=0.2,
                      relu_steps=4000, n_large=200, batch_size=8, drift_lrs=(0.2, 0.1, 0.05, 0.02, 0.01),
                      drift_time=20.0, traj_points=25),
        "full": dict(n_seeds=20, eps_grid=(0.0, 0.03, 0.1, 0.3), n_test=50000, lr=0.05, steps=10000, relu_k=20,
                     relu_lr=0.2, relu_steps=10000, n_large=400, batch_size=8,
                     drift_lrs=(0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002), drift_time=40.0, traj_points=60),
    },
    "experiments-digits": {
        # LP-FT's learning-rate grid is FT's divided by 100, the ratio of the official code's April 2022 grids
        "quick": dict(n_seeds=3, jobs=2, epochs=10, pretrain_epochs=15, lp_C=(0.01, 0.1, 1.0), ft_lr=(3e-3, 1e-2),
                      lpft_lr=(3e-5, 1e-4), wise_alpha=(0.25, 0.5, 0.75), l2sp_weight=(0.01,), surgical=("last",),
                      strengths=(0.0, 0.15, 0.3, 0.7, 0.85, 1.0)),
        "full": dict(n_seeds=10, jobs=2, epochs=20, pretrain_epochs=15, lp_C=(0.001, 0.01, 0.1, 1.0, 10.0, 100.0),
                     ft_lr=(1e-3, 3e-3, 1e-2, 3e-2), lpft_lr=(1e-5, 3e-5, 1e-4, 3e-4),
                     wise_alpha=(0.1, 0.25, 0.5, 0.75, 0.9), l2sp_weight=(0.001, 0.01, 0.1),
                     surgical=("first", "middle", "last"), strengths=(0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0)),
    },
    "experiments-digits-extra": {
        # the digit chapter's grids and sizes (CHAPTERS["experiments-digits"]); contrastive pretraining on the same
        # pool (p_invert: the probability of the contrast-inversion augmentation; one backbone per value)
        "quick": dict(n_seeds=3, jobs=2, contrastive_epochs=10, p_invert=(0.5,), labels=(10,)),
        "full": dict(n_seeds=10, jobs=2, contrastive_epochs=30, p_invert=(0.5, 0.0), labels=(3, 10, 30)),
    },
    "experiments-cifar-stl": {
        # quick: generated images in the real file formats and a random-weight ResNet-18 of width 8 in the MoCo
        # checkpoint format (a smoke test of the same code path, on a CPU). full: the paper's CIFAR-10 -> STL-10 /
        # CIFAR-10.1 run (the official code's settings: 20 epochs, batch 64, resize to 224, the April 2022 release's LR grids).
        "quick": dict(synthetic=True, n_seeds=2, arch="resnet18", width=8, image_size=32, batch_size=32, epochs=3,
                      n_val=80, Cs=(1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0), ft_lrs=(1e-2, 3e-2), lpft_lrs=(1e-3, 3e-3),
                      wise_alphas=(0.5,), l2sp_lrs=(3e-2,), feature_n=100, progress=False),
        "full": dict(synthetic=False, n_seeds=3, arch="resnet50", width=64, image_size=224, batch_size=64, epochs=20,
                     n_val=None, Cs=tuple(float(c) for c in np.logspace(-7, 2, 50)),
                     ft_lrs=(3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2), lpft_lrs=(3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4),
                     wise_alphas=(0.25, 0.5, 0.75), l2sp_lrs=(3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2), feature_n=2000,
                     progress=True),
    },
    "experiments-breeds-domainnet": {
        # quick: generated images in the real layouts (ImageNet folders + BREEDS split files, DomainNet folders + file
        # lists), random-weight networks of width 8 saved as MoCo-v2 / CLIP checkpoints, 32 px inputs cut from images
        # stored at 40 px. full: the paper's runs; each experiment's backbone, epochs, batch, augmentation and stored
        # size come from lpft.scale.launch.EXPERIMENTS (Living-17 / Entity-30: MoCo-v2 ResNet-50, 20 epochs, batch 64;
        # DomainNet: CLIP RN50, 50 epochs, batch 32 as 2 x 16; None keeps those), the grids from the official code's
        # April 2022 release.
        "quick": dict(synthetic=True, experiments=("living17", "entity30", "domainnet"), n_seeds=2,
                      archs={"moco_v2": "resnet18", "torchvision": "resnet18", "clip": "RN50"}, width=8,
                      image_size=32, load_size=40, epochs=3, batch_size=32, Cs=(1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0),
                      ft_lrs=(3e-3, 1e-2), lpft_lrs=(3e-4, 1e-3), wise_alphas=(0.5,), l2sp_lrs=(1e-2,),
                      feature_n=100, progress=False),
        "full": dict(synthetic=False, experiments=("living17", "entity30", "domainnet"), n_seeds=3, archs=None,
                     width=None, image_size=224, load_size=None, epochs=None, batch_size=None,
                     Cs=tuple(float(c) for c in np.logspace(-7, 2, 50)),
                     ft_lrs=(3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2), lpft_lrs=(3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4),
                     wise_alphas=(0.25, 0.5, 0.75), l2sp_lrs=(3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2), feature_n=2000,
                     progress=True),
    },
    "experiments-fmow-imagenet": {
        # quick: generated images in WILDS FMoW's layout (metadata tables + PNGs) and in the ImageNet / V2 / R /
        # Sketch / A folder layouts, a random-weight ResNet-18 of width 8 saved as a MoCo checkpoint and a tiny
        # random-weight CLIP ViT (2 layers, width 16, 8-pixel patches) saved as a CLIP checkpoint, 32 px inputs.
        # full: the paper's runs; each experiment's backbone, epochs, batch, LP (ImageNet: the SGD probe) and
        # learning-rate grids come from lpft.scale.launch.EXPERIMENTS (None keeps them).
        "quick": dict(synthetic=True, experiments=("fmow", "imagenet"), n_seeds=2,
                      archs={"moco_v2": "resnet18", "torchvision": "resnet18", "clip": "ViT-B-16"}, width=16,
                      towers={"ViT-B-16": {"layers": 2, "heads": 2, "patch_size": 8, "output_dim": 32}},
                      image_size=32, load_size=None, epochs=3, batch_size=32, Cs=(1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0),
                      ft_lrs=(3e-3, 1e-2), lpft_lrs=(3e-4, 1e-3), wise_alphas=(0.5,), l2sp_lrs=(1e-2,),
                      feature_n=100, progress=False),
        "full": dict(synthetic=False, experiments=("fmow", "imagenet"), n_seeds=3, archs=None, width=None, towers=None,
                     image_size=224, load_size=None, epochs=None, batch_size=None,
                     Cs=tuple(float(c) for c in np.logspace(-7, 2, 50)), ft_lrs=None, lpft_lrs=None,
                     wise_alphas=(0.25, 0.5, 0.75), l2sp_lrs=None, feature_n=2000, progress=True),
    },
    "fixed-point": {
        # the models are the digit chapter's (same grids and seeds, from CHAPTERS["experiments-digits"])
        "quick": dict(n_seeds=3, jobs=2, n_calibration=512, n_sigmas=41, n_samples=20000, n_kernel_cases=300),
        "full": dict(n_seeds=10, jobs=2, n_calibration=512, n_sigmas=241, n_samples=200000, n_kernel_cases=3000),
    },
}


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; an explicit 'cuda' without a GPU is an error."""
    import torch

    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}; got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but torch sees no GPU; use device='cpu' or 'auto'")
    return device


def check_parameters(chapter: str, profile: str, seed: int, device: str) -> str:
    """Validate a chapter's papermill parameters; returns the resolved device. Raises ValueError naming the fix."""
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; known chapters: {', '.join(CHAPTERS)}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}; got {profile!r} (pass -p profile quick or full)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    return resolve_device(device)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and use one torch thread (two were measured erratic on 2-core machines)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def settings(chapter: str, profile: str) -> SimpleNamespace:
    """The settings of ``chapter`` in ``profile``, as attributes (e.g. the digit chapter's grids, which the chapters
    that reuse its models read)."""
    if chapter not in CHAPTERS or profile not in PROFILES:
        raise ValueError(f"unknown chapter {chapter!r} or profile {profile!r}; chapters: {', '.join(CHAPTERS)}; "
                         f"profiles: {PROFILES}")
    return SimpleNamespace(**CHAPTERS[chapter][profile])


def start_chapter(chapter: str, *, profile: str, seed: int, device: str) -> SimpleNamespace:
    """The first call of every chapter: validate parameters, seed, set the figure style, return the config.

    The returned namespace holds the chapter's settings for ``profile`` plus ``profile``, ``seed`` and the resolved
    ``device``.
    """
    from lpft.book import plotting

    resolved = check_parameters(chapter, profile, seed, device)
    seed_everything(int(seed))
    plotting.set_style()
    cfg = SimpleNamespace(chapter=chapter, profile=profile, seed=int(seed), device=resolved,
                          **CHAPTERS[chapter][profile])
    return cfg
