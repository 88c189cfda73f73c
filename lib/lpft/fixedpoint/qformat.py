"""The 8-bit fixed-point format of F8Net (Jin et al., ICLR 2022): ``x = q · 2^-FL`` with ``q`` signed in
``[-127, 127]`` (FL ∈ 0..7) or unsigned in ``[0, 255]`` (FL ∈ 0..8, after a ReLU), round half to even, saturation; and
how the one free parameter, the fractional length FL, is chosen: F8Net's σ rule (:func:`fl_std_rule`) or a grid
search of the quantisation error (:func:`fl_grid_search`).
"""
from __future__ import annotations

import math

import pandas as pd
import torch

STD_RULE_C = {True: 40.0, False: 70.0}  # the σ rule's constant: signed / unsigned tensors (F8Net's ``std`` metric)


def qrange(signed: bool) -> tuple[int, int]:
    """Integer range of the 8-bit format: symmetric ``[-127, 127]`` when signed, ``[0, 255]`` when unsigned."""
    return (-127, 127) if signed else (0, 255)


def max_fl(signed: bool) -> int:
    """Largest fractional length: 7 signed, 8 unsigned (FL = 8 - signed)."""
    return 8 - int(signed)


def fl_std_rule(sigma: float, signed: bool) -> int:
    """F8Net's σ rule: ``FL = clamp(floor(log2(c / σ)), 0, 8 - signed)``, c = 40 signed / 70 unsigned (F8Net's
    ``metric2fraclen`` with the ``std`` metric).

    It picks the largest FL whose clip point (127 or 255 times 2^-FL) is still beyond about 3.2σ (signed) or 3.6σ.
    """
    sigma = float(sigma)
    if not sigma > 0:
        return max_fl(signed)  # a constant tensor: the finest grid
    return int(min(max(math.floor(math.log2(STD_RULE_C[signed] / sigma)), 0), max_fl(signed)))


def quantize(x: torch.Tensor, fl: int, signed: bool) -> torch.Tensor:
    """``q = clamp(round_half_even(x · 2^FL))`` as int8 (signed) or uint8; clamping before the cast (no wrap-around)."""
    lo, hi = qrange(signed)
    q = torch.round(x.double() * 2.0**fl).clamp(lo, hi)
    return q.to(torch.int8 if signed else torch.uint8)


def dequantize(q: torch.Tensor, fl: int) -> torch.Tensor:
    """The real value ``q · 2^-FL`` (float32)."""
    return q.float() * 2.0**-fl


def quantization_mse(x: torch.Tensor, fl: int, signed: bool) -> float:
    """Mean squared error of representing ``x`` with fractional length ``fl``."""
    return ((dequantize(quantize(x, fl, signed), fl).double() - x.double()) ** 2).mean().item()


def fl_grid_search(x: torch.Tensor, signed: bool) -> int:
    """The FL with the smallest quantisation MSE on ``x`` (brute force over every FL; ties go to the larger FL)."""
    errors = {fl: quantization_mse(x, fl, signed) for fl in range(max_fl(signed) + 1)}
    best = min(errors.values())
    return max(fl for fl, e in errors.items() if e == best)


def choose_fl(x: torch.Tensor, signed: bool, rule: str = "std") -> int:
    """FL for tensor ``x``: ``rule="std"`` (the σ rule on ``x``'s std) or ``"search"`` (:func:`fl_grid_search`)."""
    if rule == "std":
        return fl_std_rule(x.double().std().item(), signed)
    if rule == "search":
        return fl_grid_search(x, signed)
    raise ValueError(f"rule must be 'std' or 'search'; got {rule!r}")


def fl_rule_sweep(sigmas, n_samples: int, signed: bool, seed: int = 0) -> pd.DataFrame:
    """The σ rule against brute force on Gaussian data: for each σ, samples ``N(0, σ²)`` (passed through a
    ReLU when unsigned, with the rule applied to the pre-ReLU σ as F8Net does), every FL's relative RMS error, the
    rule's FL and the brute-force optimal FL. One row per (σ, FL)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n_samples, generator=g, dtype=torch.float64)
    rows = []
    for sigma in sigmas:
        x = z * sigma if signed else torch.relu(z * sigma)
        rms = x.pow(2).mean().sqrt().item()
        errors = {fl: math.sqrt(quantization_mse(x, fl, signed)) / rms for fl in range(max_fl(signed) + 1)}
        best = min(errors, key=lambda fl: (errors[fl], -fl))
        rule = fl_std_rule(sigma, signed)
        rows += [{"sigma": float(sigma), "FL": fl, "relative_rmse": e, "rule_FL": rule, "best_FL": best}
                 for fl, e in errors.items()]
    return pd.DataFrame(rows)
