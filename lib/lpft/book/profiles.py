"""What the ``quick`` and ``full`` profiles mean for each chapter, and validation of the papermill parameters.

A chapter's code is the same in both profiles; only the sizes, step counts and numbers of repeats below differ.
``quick`` is what CI executes on a 2-core CPU; ``full`` is the paper-faithful run (larger sweeps, more instances).
"""
from __future__ import annotations

import os
import random
import warnings
from types import SimpleNamespace

import numpy as np

PROFILES = ("quick", "full")
DEVICES = ("auto", "cpu", "cuda")

# chapter name (= notebooks/<name>.py) -> profile -> settings. The order is the book's order (the front page first).
CHAPTERS: dict[str, dict[str, dict]] = {
    # the front page: the mechanism figure's instance (lpft.theory.Setting fields), then the claims table, read from
    # the other chapters' executed notebooks (lpft.book.claims); lpft-run executes it after every other chapter
    "findings": {
        "quick": dict(d=20, k=2, m=8, n=10, eps=0.05),
        "full": dict(d=20, k=2, m=8, n=10, eps=0.05),
    },
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
        # LP-FT's learning-rate grid is FT's divided by 100, the ratio of the official code's April 2022 grids; the
        # label-free backbone (contrastive_epochs) is the same in both profiles, so the quick run is comparable to
        # the archived full run
        "quick": dict(n_seeds=3, jobs=2, epochs=10, pretrain_epochs=15, contrastive_epochs=30, lp_C=(0.01, 0.1, 1.0), ft_lr=(3e-3, 1e-2),
                      lpft_lr=(3e-5, 1e-4), wise_alpha=(0.25, 0.5, 0.75), l2sp_weight=(0.01,), surgical=("last",),
                      strengths=(0.0, 0.15, 0.3, 0.7, 0.85, 1.0)),
        "full": dict(n_seeds=10, jobs=2, epochs=20, pretrain_epochs=15, contrastive_epochs=30, lp_C=(0.001, 0.01, 0.1, 1.0, 10.0, 100.0),
                     ft_lr=(1e-3, 3e-3, 1e-2, 3e-2), lpft_lr=(1e-5, 3e-5, 1e-4, 3e-4),
                     wise_alpha=(0.1, 0.25, 0.5, 0.75, 0.9), l2sp_weight=(0.001, 0.01, 0.1),
                     surgical=("first", "middle", "last"), strengths=(0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0)),
    },
    "experiments-digits-extra": {
        # the digit chapter's grids, sizes and backbone (CHAPTERS["experiments-digits"]); p_invert: the other
        # values of the contrastive backbone's inversion augmentation (one backbone each); labels: labelled images per
        # class of the fewer-labels study (trained for the same number of steps as all the labels). The quick profile
        # trains no other backbone: the page states the no-inversion backbone's result from the archived full run
        "quick": dict(n_seeds=3, jobs=2, p_invert=(), labels=(10,)),
        "full": dict(n_seeds=10, jobs=2, p_invert=(0.0,), labels=(3, 10, 30)),
    },
    "experiments-digits-imagenet": {
        # EfficientNet-Lite0 with ImageNet weights (lpft.protocol.imagenet_conditions): the digits upsampled to
        # `resolution` pixels; LP, FT and LP-FT with the digit chapter's protocol. Grids fixed before any OOD result
        # was seen: LP's C as the digit chapter's middle decades, FT's learning rates around the official code's
        # selected 1e-3 to 1e-2, LP-FT's 10× smaller (the official code's rule: 10-100× smaller). quick: a smoke run
        # of the same code at a smaller resolution, two epochs and one setting per method (the page's verdicts come
        # from the archived full run)
        "quick": dict(n_seeds=2, jobs=2, resolution=32, epochs=2, lp_C=(0.1, 1.0), ft_lr=(3e-3,), lpft_lr=(3e-4,)),
        "full": dict(n_seeds=6, jobs=2, resolution=48, epochs=10, lp_C=(0.01, 0.1, 1.0, 10.0), ft_lr=(1e-3, 3e-3, 1e-2),
                     lpft_lr=(1e-4, 3e-4, 1e-3)),
    },
    # The paper-scale chapters: which experiments (lpft.scale.experiments.EXPERIMENTS) and how many seeds; every other
    # setting is the experiment's. full: the paper's settings (override None); quick: their named "smoke" override
    # (generated images in the real file formats, small random-weight networks saved in the real checkpoint formats,
    # 3 epochs, small grids: a smoke test of the same code path on a CPU; lpft.scale.experiments.smoke).
    "experiments-cifar-stl": {
        "quick": dict(experiments=("cifar-stl",), n_seeds=2, override="smoke"),
        "full": dict(experiments=("cifar-stl",), n_seeds=3, override=None),
    },
    "experiments-breeds-domainnet": {
        "quick": dict(experiments=("living17", "entity30", "domainnet"), n_seeds=2, override="smoke"),
        "full": dict(experiments=("living17", "entity30", "domainnet"), n_seeds=3, override=None),
    },
    "experiments-fmow-imagenet": {
        "quick": dict(experiments=("fmow", "imagenet"), n_seeds=2, override="smoke"),
        "full": dict(experiments=("fmow", "imagenet"), n_seeds=3, override=None),
    },
    "fixed-point": {
        # the models are the digit chapter's (same grids and seeds, from CHAPTERS["experiments-digits"])
        "quick": dict(n_seeds=3, jobs=2, n_calibration=512, n_sigmas=41, n_samples=20000, n_kernel_cases=300),
        "full": dict(n_seeds=10, jobs=2, n_calibration=512, n_sigmas=241, n_samples=200000, n_kernel_cases=3000),
    },
}


# Chapters that read what another chapter computes (its cached backbones and fitted models, :data:`lpft.book.paths`):
# when both are in one ``lpft-run``, the reader starts only after that chapter has finished, so that the work is done
# once instead of twice at the same time. Alone, each chapter computes what it misses.
NEEDS: dict[str, tuple[str, ...]] = {
    "experiments-digits-extra": ("experiments-digits",),
    "fixed-point": ("experiments-digits", "experiments-digits-imagenet"),
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
    """The first call of every chapter: warn when the kernel is not in the book's numeric environment
    (:mod:`lpft.numeric`), validate parameters, seed, set the figure style, return the config.

    The returned namespace holds the chapter's settings for ``profile`` plus ``profile``, ``seed`` and the resolved
    ``device``.
    """
    from lpft import numeric
    from lpft.book import plotting

    problems = numeric.problems()
    if problems:  # shown in the chapter's output, so a notebook regression test fails on it too
        warnings.warn("this kernel does not run in the book's numeric environment, so its numbers may differ from "
                      "the book's: " + "; ".join(problems) + ". To fix: " + numeric.fix(), stacklevel=2)
    resolved = check_parameters(chapter, profile, seed, device)
    seed_everything(int(seed))
    plotting.set_style()
    cfg = SimpleNamespace(chapter=chapter, profile=profile, seed=int(seed), device=resolved,
                          **CHAPTERS[chapter][profile])
    return cfg
