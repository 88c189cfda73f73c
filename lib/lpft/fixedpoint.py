"""8-bit fixed-point arithmetic after F8Net (Jin et al., ICLR 2022, arXiv 2202.05239; official code
github.com/snap-research/F8Net), and integer-only LP / FT / LP-FT digit networks.

A fixed-point number with fractional length FL is ``x = q · 2^-FL``, ``q`` an 8-bit integer: signed ``q ∈ [-127, 127]``
(FL ∈ 0..7) or unsigned ``q ∈ [0, 255]`` (FL ∈ 0..8, used after a ReLU). A layer multiplies 8-bit integers, sums them
exactly in int32 at ``FL_x + FL_w``, and moves the sum to the next layer's FL by a bit shift with round-half-to-even
and saturation: no floating point and no int32 multiplier at inference (F8Net's integer-only mode,
``int_op_only_fix_quant`` in its ``models/fix_quant_ops.py``).

The module has four parts: the format (:func:`quantize`, the σ rule :func:`fl_std_rule`, :func:`fl_grid_search`);
the kernel (:func:`fixed_point_linear`, written so that ``torch.compile`` fuses its requantisation epilogue into one
loop, and :func:`fixed_point_conv2d` on top of it); a plain int64 / float64 oracle (:func:`reference_linear`) used to
check the kernel bit for bit; and :class:`FixedPointDigitNet`, the integer-only version of a trained
:class:`~lpft.digits.DigitNet`.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from lpft import finetune, protocol
from lpft.records import code_fingerprint, parallel_map, run_once
from lpft.digits import DigitNet

INT32_MAX = 2**31 - 1
STD_RULE_C = {True: 40.0, False: 70.0}  # the σ rule's constant: signed / unsigned tensors (F8Net's ``std`` metric)
MIN_SHIFT, MAX_SHIFT = -23, 31          # left shifts up to 23 bits, right shifts up to 31


# ---- the format ----------------------------------------------------------------------------------------------------

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


# ---- the kernel ----------------------------------------------------------------------------------------------------

def _max_abs_product(x_dtype: torch.dtype) -> int:
    # |x| ≤ 255 for uint8 and ≤ 128 for int8 (-128 is never produced by the format, but may be passed in); |w| ≤ 128.
    return (255 if x_dtype == torch.uint8 else 128) * 128


def max_reduction_length(x_dtype: torch.dtype) -> int:
    """Largest K for which ``x_q @ w_qᵀ`` cannot overflow int32: 65,793 for uint8 inputs, 131,071 for int8."""
    return INT32_MAX // _max_abs_product(x_dtype)


def _check_shift(shift) -> None:
    if isinstance(shift, bool) or not isinstance(shift, int) or not MIN_SHIFT <= shift <= MAX_SHIFT:
        raise ValueError(f"shift must be a Python int in [{MIN_SHIFT}, {MAX_SHIFT}]; got {shift!r}")


def _check_linear(x_q: torch.Tensor, w_q: torch.Tensor, b_q: torch.Tensor, shift) -> None:
    # Shape, dtype and range checks only: static under torch.compile (no data-dependent branch).
    if x_q.dtype not in (torch.int8, torch.uint8):
        raise TypeError(f"x_q must be int8 or uint8; got {x_q.dtype} (quantize it with lpft.fixedpoint.quantize)")
    if w_q.dtype != torch.int8 or b_q.dtype != torch.int32:
        raise TypeError(f"w_q must be int8 and b_q int32; got {w_q.dtype} and {b_q.dtype}")
    if x_q.dim() != 2 or w_q.dim() != 2 or b_q.dim() != 1:
        raise ValueError(f"expected x_q (M, K), w_q (N, K), b_q (N,); got shapes {tuple(x_q.shape)}, "
                         f"{tuple(w_q.shape)}, {tuple(b_q.shape)}")
    (m, k), (n, k_w) = x_q.shape, w_q.shape
    if k != k_w or b_q.shape[0] != n:
        raise ValueError(f"shapes do not match: x_q (M, K) = {(m, k)}, w_q (N, K) = {(n, k_w)}, b_q (N,) = "
                         f"{tuple(b_q.shape)}")
    _check_shift(shift)
    if k > max_reduction_length(x_q.dtype):
        raise ValueError(f"K = {k} is too long for an int32 accumulator with {x_q.dtype} inputs (|x·w| up to "
                         f"{_max_abs_product(x_q.dtype)} per term): at most {max_reduction_length(x_q.dtype)}; "
                         "split the reduction into chunks and add the int32 partial sums with a saturating add")


def int_mm(x_q: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
    """``x_q @ w_qᵀ`` accumulated exactly in int32 by ``torch._int_mm`` (x (M, K) int8/uint8, w (N, K) int8).

    On CPU ``_int_mm`` takes uint8 or int8 inputs in any shape (oneDNN with AVX512-VNNI; a slow loop otherwise), and
    the weight goes in as a column-major view. On CUDA it takes int8 only with M > 16 and K, N multiples of 8: uint8
    inputs become ``x - 128`` with ``128 · Σ_k w`` added back, and the operands are zero-padded (exact). The CUDA path
    follows ``_int_mm``'s documented rules but has not been run on a GPU yet.
    """
    if x_q.device.type != "cuda":
        if x_q.shape[1] == 1:  # torch 2.13's CPU _int_mm returns wrong sums for K = 1: an outer product instead
            return x_q.to(torch.int32) * w_q.to(torch.int32).t()
        return torch._int_mm(x_q, w_q.t())
    m, k = x_q.shape
    n = w_q.shape[0]
    correction = None
    if x_q.dtype == torch.uint8:
        correction = 128 * w_q.to(torch.int32).sum(1)
        x_q = (x_q.to(torch.int16) - 128).to(torch.int8)
    pad_m, pad_k, pad_n = max(17 - m, 0), (-k) % 8, (-n) % 8
    x_p = F.pad(x_q, (0, pad_k, 0, pad_m))
    w_p = F.pad(w_q, (0, pad_k, 0, pad_n)).contiguous()
    acc = torch._int_mm(x_p, w_p.t())[:m, :n]
    return acc if correction is None else acc + correction


def requantize(acc: torch.Tensor, shift: int, out_signed: bool = True) -> torch.Tensor:
    """``clamp(round_half_even(acc / 2^shift))`` as int8 in [-127, 127] or uint8 in [0, 255], as
    F8Net's ``int_op_only_fix_quant``.

    A right shift (``shift > 0``) splits ``acc`` into floor quotient and remainder and rounds up when the remainder is
    above one half, or exactly one half with an odd quotient; it never adds to ``acc``, so it cannot overflow. A left
    shift (``shift < 0``) first clamps ``acc`` to ±128, beyond which the result saturates anyway. ``shift`` is a
    Python int, so ``torch.compile`` bakes it in as a constant.
    """
    _check_shift(shift)
    lo, hi = qrange(out_signed)
    if shift > 0:
        quotient = acc >> shift                                   # arithmetic shift = floor(acc / 2^shift)
        remainder = acc & ((1 << shift) - 1)                      # acc - quotient · 2^shift, in [0, 2^shift)
        half = 1 << (shift - 1)
        round_up = (remainder > half) | ((remainder == half) & ((quotient & 1) == 1))
        y = quotient + round_up.to(acc.dtype)
    elif shift < 0:
        y = acc.clamp(-128, 128) << (-shift)
    else:
        y = acc
    return y.clamp(lo, hi).to(torch.int8 if out_signed else torch.uint8)


def integer_linear(x_q: torch.Tensor, w_q: torch.Tensor, b_q: torch.Tensor) -> torch.Tensor:
    """The int32 accumulator ``x_q @ w_qᵀ + b_q`` at ``FL_x + FL_w`` (checked against int32 overflow)."""
    _check_linear(x_q, w_q, b_q, 0)
    if not torch.compiler.is_compiling():  # the bias check reads data; under compile the converter guarantees it
        bound = INT32_MAX - x_q.shape[1] * _max_abs_product(x_q.dtype)
        if b_q.numel() and b_q.to(torch.int64).abs().max().item() > bound:
            raise ValueError(f"|b_q| must be at most {bound} for K = {x_q.shape[1]} so that the int32 accumulator "
                             "cannot overflow; quantize the bias at a smaller FL")
    return int_mm(x_q, w_q) + b_q


def fixed_point_linear(x_q: torch.Tensor, w_q: torch.Tensor, b_q: torch.Tensor, shift: int, *,
                       out_signed: bool = True) -> torch.Tensor:
    """F8Net's fixed-point linear layer: ``clamp(round_half_even((x_q @ w_qᵀ + b_q) / 2^shift))``.

    ``x_q`` int8 or uint8 (M, K) at FL_x, ``w_q`` int8 (N, K) at FL_w, ``b_q`` int32 (N,) at FL_x + FL_w, ``shift =
    FL_x + FL_w - FL_y`` a Python int (right shift when positive, left when negative). Returns int8 in [-127, 127]
    (``out_signed=True``) or uint8 in [0, 255] at FL_y; with unsigned output the clamp is the ReLU. Raises
    ``ValueError`` for shapes whose int32 accumulator could overflow. Works eagerly and under
    ``torch.compile(fullgraph=True)``, where the epilogue after the integer GEMM becomes one fused loop.
    """
    _check_linear(x_q, w_q, b_q, shift)
    return requantize(integer_linear(x_q, w_q, b_q), shift, out_signed)


def integer_conv2d(x_q: torch.Tensor, w_q: torch.Tensor, b_q: torch.Tensor, *, padding: int = 0) -> torch.Tensor:
    """A stride-1 convolution's int32 accumulator at ``FL_x + FL_w``: im2col (zero padding is the value 0 at any FL),
    then :func:`integer_linear`. ``x_q`` (B, C, H, W), ``w_q`` (O, C, kh, kw), ``b_q`` (O,); returns (B, O, H', W')."""
    if x_q.dim() != 4 or w_q.dim() != 4 or x_q.shape[1] != w_q.shape[1]:
        raise ValueError(f"expected x_q (B, C, H, W) and w_q (O, C, kh, kw) with equal C; got {tuple(x_q.shape)} "
                         f"and {tuple(w_q.shape)}")
    b, c = x_q.shape[:2]
    o, _, kh, kw = w_q.shape
    x = F.pad(x_q, (padding,) * 4)
    patches = x.unfold(2, kh, 1).unfold(3, kw, 1)                  # (B, C, H', W', kh, kw)
    h_out, w_out = patches.shape[2:4]
    cols = patches.permute(0, 2, 3, 1, 4, 5).reshape(b * h_out * w_out, c * kh * kw)
    acc = integer_linear(cols, w_q.reshape(o, c * kh * kw), b_q)
    return acc.reshape(b, h_out, w_out, o).permute(0, 3, 1, 2)


def fixed_point_conv2d(x_q: torch.Tensor, w_q: torch.Tensor, b_q: torch.Tensor, shift: int, *, padding: int = 0,
                       out_signed: bool = True) -> torch.Tensor:
    """A stride-1 convolution in fixed point: :func:`integer_conv2d`, then :func:`requantize` by ``shift``."""
    return requantize(integer_conv2d(x_q, w_q, b_q, padding=padding), shift, out_signed)


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution, with the running statistics (eval mode): F8Net folds
    BatchNorm before quantising the weight, ``W' = W·γ/σ``, ``b' = (b - μ)·γ/σ + β``, σ = √(var + eps)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return conv.weight * scale[:, None, None, None], (bias - bn.running_mean) * scale + bn.bias


def residual_add(a: torch.Tensor, fl_a: int, b: torch.Tensor, fl_b: int) -> tuple[torch.Tensor, int]:
    """Sum of two int32 tensors at different FLs (F8Net's residual blocks): the one with the smaller FL is shifted
    left to the larger FL, and the sum saturates at ±(2^31 - 1). Returns ``(sum, FL)``; computed in int64, so the
    alignment shift itself cannot wrap."""
    fl = max(fl_a, fl_b)
    total = (a.to(torch.int64) << (fl - fl_a)) + (b.to(torch.int64) << (fl - fl_b))
    return total.clamp(-INT32_MAX, INT32_MAX).to(torch.int32), fl


# ---- the oracle ----------------------------------------------------------------------------------------------------

def reference_linear(x_q: torch.Tensor, w_q: torch.Tensor, b_q: torch.Tensor, shift: int, *,
                     out_signed: bool = True) -> torch.Tensor:
    """The same function computed the obvious way, for tests: the sum in int64, the division by 2^shift in float64
    (exact: the sum is below 2^53 and the divisor a power of two), NumPy's ``rint`` (half to even), then clip."""
    acc = x_q.cpu().to(torch.int64) @ w_q.cpu().to(torch.int64).T + b_q.cpu().to(torch.int64)
    lo, hi = qrange(out_signed)
    y = (acc.numpy().astype("float64") / 2.0**shift).round().clip(lo, hi)   # numpy round = half to even
    return torch.from_numpy(y).to(torch.int8 if out_signed else torch.uint8)


# ---- integer-only building blocks for the digit network ------------------------------------------------------------

def round_half_even_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``round_half_even(a / b)`` for int64 tensors with ``b > 0``, in integer arithmetic."""
    quotient = torch.div(a, b, rounding_mode="floor")
    twice_remainder = 2 * (a - quotient * b)                       # in [0, 2b)
    round_up = (twice_remainder > b) | ((twice_remainder == b) & ((quotient & 1) == 1))
    return quotient + round_up.to(a.dtype)


@torch.library.custom_op("lpft::isqrt", mutates_args=())
def isqrt(d: torch.Tensor) -> torch.Tensor:
    """``floor(sqrt(d))`` for an int64 tensor with ``1 <= d < 2^62``: Newton's method from 2^31, where each step can
    only decrease the estimate, for a fixed 40 steps (enough from 2^31 down to 1).

    A custom op, so that ``torch.compile`` calls it as one opaque function: inlining 40 dependent steps into one
    fused loop would duplicate the expression at every step (each step reads the estimate three times).
    """
    x = torch.full_like(d, 1 << 31)
    for _ in range(40):
        x = torch.minimum(x, (x + torch.div(d, x, rounding_mode="floor")) >> 1)
    return x


@isqrt.register_fake
def _(d: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(d)


def max_pool2d_int(q: torch.Tensor, k: int = 2) -> torch.Tensor:
    """k×k max pooling with stride k: exact on integers."""
    return q.unfold(2, k, k).unfold(3, k, k).amax(dim=(-1, -2))


def _group_norm_fraction(q: torch.Tensor, groups: int, fl_in: int, gamma_q: torch.Tensor, fl_gamma: int,
                         beta_q: torch.Tensor, fl_out: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GroupNorm's output at ``fl_out`` as an exact fraction ``N / D`` of int64 tensors, N (B, C, H·W), D (B, C, 1) > 0.

    With n elements per (example, group), S1 = Σq and S2 = Σq², ``(x - μ) / sqrt(var + eps) = (n·q - S1) /
    sqrt(n·S2 - S1² + n²·eps·4^FL_in)`` exactly; the square root is :func:`isqrt`. γ is 8-bit at ``fl_gamma``, β a
    32-bit integer at ``fl_out``: ``N = γ·(n·q - S1)·2^fl_out + β·D``, ``D = isqrt(...)·2^fl_gamma``.
    """
    if q.dtype != torch.int8 or q.dim() != 4 or q.shape[1] % groups:
        raise ValueError(f"expected int8 q (B, C, H, W) with C divisible by {groups} groups; got {q.dtype} "
                         f"{tuple(q.shape)}")
    b, c, h, w = q.shape
    n = (c // groups) * h * w
    e = max(1, round(n * n * eps * 4.0**fl_in))
    g = q.to(torch.int64).reshape(b, groups, n)
    s1 = g.sum(-1, keepdim=True)
    s2 = (g * g).sum(-1, keepdim=True)
    root = isqrt(n * s2 - s1 * s1 + e)                              # (B, G, 1)
    centred = (n * g - s1).reshape(b, c, h * w)                     # n · (q - μ), per channel
    denominator = root.repeat_interleave(c // groups, dim=1) << fl_gamma        # (B, C, 1)
    numerator = (gamma_q.to(torch.int64)[None, :, None] * centred << fl_out) \
        + beta_q.to(torch.int64)[None, :, None] * denominator
    return numerator, denominator


def group_norm_int(q: torch.Tensor, groups: int, fl_in: int, gamma_q: torch.Tensor, fl_gamma: int,
                   beta_q: torch.Tensor, fl_out: int, eps: float) -> torch.Tensor:
    """GroupNorm + ReLU in integer arithmetic: int8 ``q`` (B, C, H, W) at ``fl_in`` to uint8 at ``fl_out``.

    F8Net has no such layer: it folds BatchNorm's running statistics into the weights. GroupNorm normalises each
    example by its own statistics, so it is computed here, exactly up to one rounding: ``N / D`` of
    :func:`_group_norm_fraction` rounded half to even by :func:`round_half_even_div`, then saturated to [0, 255]
    (the ReLU). Beyond F8Net's integer multiply-accumulate, shift and clamp this takes int64 products, one integer
    square root per (example, group) and one integer division per element.
    """
    numerator, denominator = _group_norm_fraction(q, groups, fl_in, gamma_q, fl_gamma, beta_q, fl_out, eps)
    lo, hi = qrange(False)
    return round_half_even_div(numerator, denominator).clamp(lo, hi).to(torch.uint8).reshape(q.shape)


def group_norm_mean_int(q: torch.Tensor, groups: int, fl_in: int, gamma_q: torch.Tensor, fl_gamma: int,
                        beta_q: torch.Tensor, fl_out: int, eps: float) -> torch.Tensor:
    """GroupNorm + ReLU + global average pooling, uint8 (B, C) at ``fl_out``, rounded **once**.

    F8Net's average pool (``FXQAvgPool2d`` in its code) sums the last layer's int32 outputs without requantising them
    and rounds once, when the sum reaches the classifier's input FL. Here the last layer's exact output is ``N / D``
    (:func:`_group_norm_fraction`), with one ``D`` per (example, channel): the mean over the P positions of
    ``relu(N / D)`` is ``Σ relu(N) / (P·D)``, rounded half to even and saturated.
    """
    numerator, denominator = _group_norm_fraction(q, groups, fl_in, gamma_q, fl_gamma, beta_q, fl_out, eps)
    total = numerator.clamp(min=0).sum(-1, keepdim=True)                         # Σ_p relu(N_p), (B, C, 1)
    positions = q.shape[2] * q.shape[3]
    lo, hi = qrange(False)
    return round_half_even_div(total, positions * denominator).clamp(lo, hi).to(torch.uint8)[..., 0]


def global_average_int(acc: torch.Tensor, shift: int) -> torch.Tensor:
    """ReLU + global average pooling of an int32 accumulator (B, C, H, W), rounded once, as F8Net's ``FXQAvgPool2d``
    does: the H·W values (a power of two) are summed in int32, which raises the FL by log2(H·W) without rounding, and
    the sum is requantised by ``shift + log2(H·W)`` bits to uint8 (B, C). The caller keeps the int32 sum in range."""
    positions = acc.shape[2] * acc.shape[3]
    if positions & (positions - 1):
        raise ValueError(f"the global average needs a power-of-two number of positions; got {tuple(acc.shape[2:])}")
    total = acc.clamp(min=0).sum(dim=(2, 3), dtype=torch.int32)                  # (B, C), at FL + log2(H·W)
    return requantize(total, shift + positions.bit_length() - 1, out_signed=False)


# ---- an integer-only DigitNet --------------------------------------------------------------------------------------

def _convs(model: DigitNet) -> list[tuple[nn.Conv2d, nn.GroupNorm | None, bool]]:
    """(conv, groupnorm or None, max-pool after it) for each of the five conv layers, in order."""
    out = []
    for block in (model.backbone.first, model.backbone.middle, model.backbone.last):
        layers = list(block)
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.Conv2d):
                norm = layers[i + 1] if isinstance(layers[i + 1], nn.GroupNorm) else None
                # the pool follows the ReLU after this conv (and its norm)
                after = layers[i + 2 + (norm is not None):]
                pool = bool(after) and isinstance(after[0], nn.MaxPool2d)
                out.append((layer, norm, pool))
    return out


@torch.no_grad()
def _calibration_tensors(model: DigitNet, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """Float activations on calibration images: each conv's output, each norm's output (before the ReLU) and the
    pooled features (the classifier's input)."""
    seen: dict[str, list[torch.Tensor]] = {"conv": [], "norm": [], "features": []}
    hooks = [model.backbone.register_forward_hook(lambda m, i, o: seen["features"].append(o))]
    for conv, norm, _ in _convs(model):
        hooks.append(conv.register_forward_hook(lambda m, i, o: seen["conv"].append(o)))
        if norm is not None:
            hooks.append(norm.register_forward_hook(lambda m, i, o: seen["norm"].append(o)))
    try:
        model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


IMAGE_FORMATS = ("pixels", "sigma")
POOLINGS = ("once", "twice")
PIXEL_FL = 8  # F8Net's input format: pixel codes round(255·x) read at FL 8


def quantize_image(x: torch.Tensor) -> torch.Tensor:
    """F8Net's input format for images in [0, 1]: the unsigned pixel codes ``round(255·x)`` (uint8), read at FL 8."""
    if not torch.compiler.is_compiling() and x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"images must lie in [0, 1]; got values in [{x.min().item()}, {x.max().item()}]")
    return torch.round(x.double() * 255).to(torch.uint8)


class FixedPointDigitNet(nn.Module):
    """A trained :class:`~lpft.digits.DigitNet` run in integers only, after a static calibration on images.

    Every tensor between layers is 8-bit at a per-tensor FL (all FLs are Python ints). The image enters as F8Net's
    pixel codes ``round(255·x)`` at FL 8 (:func:`quantize_image`; the factor 256/255 this leaves is folded into the
    first convolution's weights). Each conv's output is uint8 after the ReLU, or int8 before a GroupNorm, which then
    outputs uint8 (:func:`group_norm_int`); max pooling is exact. The last layer is not requantised before the global
    average: it is pooled and rounded once, to the classifier's input FL (:func:`global_average_int`,
    :func:`group_norm_mean_int`). The head returns int32 logits at ``FL_features + FL_head`` (argmax is exact).
    Weights are int8 with FL from ``weight_rule``; activation FLs come from ``activation_rule`` on the calibration
    activations: ``"std"``, F8Net's σ rule (for a tensor followed by a ReLU, σ of the tensor before it, c = 70), or
    ``"search"``, the brute-force FL of the tensor after the ReLU (F8Net's choice in its configurations without PACT).

    ``image="sigma"`` and ``pool="twice"`` give the two departures from F8Net this module used before, kept to
    measure what removing them changed: the image at the σ rule's FL (no fold), and the last layer requantised to
    8 bits at the classifier's input FL before the average, which is then rounded again.
    """

    def __init__(self, model: DigitNet, calibration_x: torch.Tensor, weight_rule: str = "std", *,
                 activation_rule: str = "std", image: str = "pixels", pool: str = "once"):
        super().__init__()
        if image not in IMAGE_FORMATS or pool not in POOLINGS or activation_rule not in ("std", "search"):
            raise ValueError(f"image must be one of {IMAGE_FORMATS}, pool one of {POOLINGS} and activation_rule "
                             f"'std' or 'search'; got {image!r}, {pool!r}, {activation_rule!r}")
        model = model.eval()
        acts = _calibration_tensors(model, calibration_x)

        def act_fl(t: torch.Tensor, signed: bool) -> int:
            if activation_rule == "std":
                return fl_std_rule(t.double().std().item(), signed)
            return fl_grid_search(t if signed else t.relu(), signed)

        self.image, self.pool = image, pool
        self.fl_input = PIXEL_FL if image == "pixels" else choose_fl(calibration_x, signed=False, rule="std")
        self.fl_features = act_fl(acts["features"][0], signed=False)
        convs = _convs(model)
        self.layers = []          # per conv: dict of Python ints and flags
        fl_x = self.fl_input
        for i, ((conv, norm, pool_after), out) in enumerate(zip(convs, acts["conv"])):
            if conv.stride != (1, 1) or conv.kernel_size[0] != conv.kernel_size[1]:
                raise ValueError("FixedPointDigitNet handles square stride-1 convolutions only")
            last = i == len(convs) - 1
            weight = conv.weight * (256 / 255) if i == 0 and image == "pixels" else conv.weight
            fl_w = choose_fl(weight, signed=True, rule=weight_rule)
            layer = {"padding": conv.padding[0], "pool": pool_after, "norm": norm is not None, "fl_w": fl_w}
            self.register_buffer(f"w{i}", quantize(weight, fl_w, True))
            # the last layer's int32 outputs are summed over the positions: its bias leaves room for that
            positions = out.shape[2] * out.shape[3] if last and norm is None else 1
            self.register_buffer(f"b{i}", self._bias(conv.bias, fl_x + fl_w, conv.weight[0].numel(), positions))
            fl_y = self.fl_features if last else act_fl(acts["norm" if norm is not None else "conv"][i], False)
            if norm is None:
                layer["shift"], layer["out_signed"] = fl_x + fl_w - fl_y, False
            else:
                fl_g, fl_gamma = act_fl(out, signed=True), choose_fl(norm.weight, signed=True, rule="search")
                layer.update(shift=fl_x + fl_w - fl_g, out_signed=True, fl_g=fl_g, fl_gamma=fl_gamma,
                             groups=norm.num_groups, eps=norm.eps)
                self.register_buffer(f"gamma{i}", quantize(norm.weight, fl_gamma, True))
                self.register_buffer(f"beta{i}", torch.round(norm.bias.double() * 2.0**fl_y).to(torch.int32))
            layer["fl_y"] = fl_y
            self.layers.append(layer)
            fl_x = fl_y
        self.fl_head = choose_fl(model.head.weight, signed=True, rule=weight_rule)
        self.register_buffer("w_head", quantize(model.head.weight, self.fl_head, True))
        self.register_buffer("b_head", self._bias(model.head.bias, fl_x + self.fl_head, model.head.in_features))

    @staticmethod
    def _bias(bias: torch.Tensor, fl: int, k: int, positions: int = 1) -> torch.Tensor:
        """The bias as int32 at ``fl``, saturated so that neither the accumulator (inputs ≤ 255) nor a sum of
        ``positions`` accumulators can overflow."""
        bound = INT32_MAX // positions - k * _max_abs_product(torch.uint8)
        return torch.round(bias.double() * 2.0**fl).clamp(-bound, bound).to(torch.int32)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 codes of float images in [0, 1] at ``fl_input``."""
        return quantize_image(x) if self.image == "pixels" else quantize(x, self.fl_input, signed=False)

    def integer_features(self, q: torch.Tensor) -> torch.Tensor:
        """uint8 penultimate features (B, 128) at ``fl_features`` from uint8 input images (B, 1, 8, 8)."""
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            acc = integer_conv2d(q, getattr(self, f"w{i}"), getattr(self, f"b{i}"), padding=layer["padding"])
            if last and self.pool == "once" and not layer["norm"]:
                return global_average_int(acc, layer["shift"])
            q = requantize(acc, layer["shift"], layer["out_signed"])
            if layer["norm"]:
                norm_args = (layer["groups"], layer["fl_g"], getattr(self, f"gamma{i}"), layer["fl_gamma"],
                             getattr(self, f"beta{i}"), layer["fl_y"], layer["eps"])
                if last and self.pool == "once":
                    return group_norm_mean_int(q, *norm_args)
                q = group_norm_int(q, *norm_args)
            if layer["pool"]:
                q = max_pool2d_int(q)
        return global_average_int(q.to(torch.int32), 0)             # pool="twice": the 8-bit codes, rounded again

    def integer_head(self, features: torch.Tensor) -> torch.Tensor:
        """int32 logits at ``fl_features + fl_head`` from the uint8 features of :meth:`integer_features`."""
        return integer_linear(features, self.w_head, self.b_head)

    def integer_logits(self, q: torch.Tensor) -> torch.Tensor:
        """int32 logits at ``fl_features + fl_head`` from uint8 input images."""
        return self.integer_head(self.integer_features(q))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float images in, int32 logits out (the float → uint8 input quantisation is the only float operation)."""
        return self.integer_logits(self.quantize_input(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features as real numbers (dequantised), comparable with ``DigitNet.features``."""
        return dequantize(self.integer_features(self.quantize_input(x)), self.fl_features)

    def fls(self) -> dict:
        """Every fractional length of the network (for the chapter's table)."""
        return {"input": self.fl_input, "layers": [{k: v for k, v in layer.items() if k.startswith("fl")
                                                    or k == "shift"} for layer in self.layers],
                "features": self.fl_features, "head": self.fl_head}


# ---- the experiment: LP, FT, LP-FT and the later methods deployed in fixed point ------------------------------------

DEPENDS = protocol.DEPENDS + ("fixedpoint",)  # modules a deployment record depends on


def _fixed_point_pass(fixed: FixedPointDigitNet, data) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer features (uint8 codes) of ``data``'s images and the predictions made from them."""
    with torch.no_grad():
        codes = fixed.integer_features(fixed.quantize_input(data.tensors[0]))
        return codes, fixed.integer_head(codes).argmax(1)


def _compare(pretrained: DigitNet, model: DigitNet, fixed: FixedPointDigitNet, data, codes: torch.Tensor,
             pred_fixed: torch.Tensor) -> dict:
    """Float vs fixed-point accuracy on ``data`` (``codes`` and ``pred_fixed`` from :func:`_fixed_point_pass`), the
    fraction of unchanged predictions, the feature change caused by quantisation and the one caused by fine-tuning
    (mean squared change of the penultimate features, ×100: the digit chapter's metric)."""
    x, y = data.tensors
    with torch.no_grad():
        model.eval()
        pred_float, f_float = model(x).argmax(1), model.features(x)
    f_fixed = dequantize(codes, fixed.fl_features)
    return {"float": (pred_float == y).double().mean().item(), "fixed": (pred_fixed == y).double().mean().item(),
            "agree": (pred_float == pred_fixed).double().mean().item(),
            "feature_change": 100.0 * ((f_fixed - f_float) ** 2).mean().item(),
            "tuning_change": finetune.feature_change(pretrained, model, data)}


# The departures from F8Net this module used before (pool, image) and F8Net's FL choice without PACT (activations):
# each deployed model is also run with one of them changed, to measure what it is worth.
VARIANTS = {"pool: 8-bit codes rounded again": {"pool": "twice"},
            "image: σ-rule FL": {"image": "sigma"},
            "activation FLs: grid search": {"activation_rule": "search"}}
BATCH = 64  # calibration batch for the per-batch FLs that F8Net's running average would see


def _activation_fls(fls: dict) -> list[int]:
    return [layer[k] for layer in fls["layers"] for k in ("fl_g", "fl_y") if k in layer] + [fls["features"]]


def _deviations(model: DigitNet, fixed: FixedPointDigitNet, calibration: torch.Tensor, splits: dict,
                codes: dict[str, torch.Tensor]) -> dict:
    """What the departures from F8Net are worth for one model: the fixed-point accuracy of each of :data:`VARIANTS`
    (ID and OOD; the pooling variant on every split); the fraction of pooled feature codes that differ when the last
    layer is requantised to 8 bits before the average (``pool="twice"``, same FLs; ``codes``: the faithful network's
    features per split); and the fraction of activation FLs that differ between the static calibration and the σ rule
    on single calibration batches of :data:`BATCH` images."""
    accuracy, codes_differ = {}, {}
    for name, kw in VARIANTS.items():
        net = FixedPointDigitNet(model, calibration, **kw)
        accuracy[name] = {}
        for split, data in splits.items():
            if kw.get("pool") == "twice" or split != "natural":
                variant_codes, pred = _fixed_point_pass(net, data)
                accuracy[name][split] = (pred == data.tensors[1]).double().mean().item()
                if kw.get("pool") == "twice":
                    codes_differ[split] = (variant_codes != codes[split]).double().mean().item()
    static = _activation_fls(fixed.fls())
    per_batch = [_activation_fls(FixedPointDigitNet(model, calibration[i:i + BATCH]).fls())
                 for i in range(0, len(calibration) - BATCH + 1, BATCH)]
    differ = sum(a != b for fls in per_batch for a, b in zip(fls, static)) / (len(per_batch) * len(static))
    return {"variants": accuracy, "pooled_codes_differ": codes_differ, "batch_fls_differ": differ}


def deploy_seed(setup: dict, seed: int, n_calibration: int, cache: Path, models: Path | None = None) -> dict:
    """For the task of ``seed``: train and select every method exactly as the digit chapter does, or read the digit
    chapter's selected models from the folder ``models`` (:func:`lpft.protocol.select_models`), convert each selected model to :class:`FixedPointDigitNet` calibrated on
    the first ``n_calibration`` ID training images, and compare float and fixed point on ID test, OOD test (the
    setup's shift) and the natural shift alone (strength 0); :func:`_deviations` adds what each departure from
    F8Net is worth."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    pretrained, task, chosen, hps, _ = protocol.select_models(setup, seed, protocol.pretrained_model(setup, cache),
                                                               models)
    splits = {"id": task.test_id, "ood": task.test_ood,
              "natural": protocol.make_task(setup, seed, strength=0.0).test_ood}
    calibration = task.train.tensors[0][:n_calibration]
    out = {}
    for name, model in chosen.items():
        fixed = FixedPointDigitNet(model, calibration)
        passes = {split: _fixed_point_pass(fixed, data) for split, data in splits.items()}
        out[name] = {"hp": hps[name], "fls": fixed.fls(),
                     **{split: _compare(pretrained, model, fixed, data, *passes[split])
                        for split, data in splits.items()},
                     "deviations": _deviations(model, fixed, calibration, splits,
                                               {split: p[0] for split, p in passes.items()})}
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def _deploy_record(setup: dict, seed: int, folder: Path, n_calibration: int, cache: Path,
                   models: Path | None) -> dict:
    config = {**setup, "seed": seed, "n_calibration": n_calibration}
    return run_once(folder, config, lambda: deploy_seed(setup, seed, n_calibration, cache, models),
                    name=f"seed{seed}", code=code_fingerprint(DEPENDS))


def deploy_all(setup: dict, seeds: list[int], folder: Path, *, cache: Path, models: Path | None = None,
               n_calibration: int = 512, jobs: int = 2) -> list[dict]:
    """One deployment record per seed in ``folder`` (read back when already computed), ``jobs`` processes at a time;
    the pretrained backbone is kept in the folder ``cache`` and the selected models in the folder ``models``
    (:func:`lpft.protocol.select_models`; None: not kept)."""
    protocol.pretrained_model(setup, cache)  # pretrain once before the workers start
    return parallel_map(_deploy_record, [(setup, s, Path(folder), n_calibration, Path(cache), models)
                                         for s in seeds], jobs)


def deployment_table(records: list[dict]) -> pd.DataFrame:
    """One row per (seed, method, split): float and fixed-point accuracy (%), agreement (%), feature change."""
    rows = []
    for record in records:
        for method, r in record["results"].items():
            if method == "seconds":
                continue
            for split in ("id", "ood", "natural"):
                rows.append({"seed": record["config"]["seed"], "method": method, "split": split,
                             "float": 100 * r[split]["float"], "fixed": 100 * r[split]["fixed"],
                             "agree": 100 * r[split]["agree"], "feature_change": r[split]["feature_change"]})
    df = pd.DataFrame(rows)
    df["drop"] = df["float"] - df["fixed"]
    return df


def deployment_summary(records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """What the chapter concludes from a set of deployment records (live or archived).

    Returns: the summary table (per method and split: mean float and fixed-point accuracy, the mean drop with its
    90% interval over seeds, agreement, feature change by quantisation and by fine-tuning); the table of the paper's
    orderings checked in float and in fixed point; and the numbers behind them.
    """
    df = deployment_table(records)
    order = [m for m in finetune.METHODS if m in set(df["method"])]
    tuning = pd.DataFrame([{"method": m, "split": split, "tuning_change": r["results"][m][split]["tuning_change"]}
                           for r in records for m in order for split in ("id", "ood", "natural")])
    g = df.groupby(["method", "split"], sort=False)
    summary = pd.DataFrame({"float": g["float"].mean(), "float ±": g["float"].agg(protocol.interval90),
                            "fixed": g["fixed"].mean(), "fixed ±": g["fixed"].agg(protocol.interval90),
                            "drop": g["drop"].mean(), "drop ±": g["drop"].agg(protocol.interval90),
                            "agree": g["agree"].mean(), "feature change": g["feature_change"].mean(),
                            "tuning change": tuning.groupby(["method", "split"])["tuning_change"].mean()})
    summary = summary.reindex(pd.MultiIndex.from_product([order, ["id", "ood", "natural"]],
                                                         names=["method", "split"])).round(2)
    acc = df.pivot_table(index="seed", columns=["split", "method"], values=["float", "fixed"])
    n = len(records)

    def wins(kind: str, split: str, a: str, b: str) -> int:
        return int((acc[(kind, split, a)] > acc[(kind, split, b)]).sum())

    def same_ranking(split: str) -> int:
        rank = {k: acc[k][split][order].rank(axis=1, ascending=False, method="min") for k in ("float", "fixed")}
        return int((rank["float"] == rank["fixed"]).all(axis=1).sum())

    numbers = {"n": n, "lp_ood": {k: wins(k, "ood", "LP", "FT") for k in ("float", "fixed")},
               "ft_id": {k: wins(k, "id", "FT", "LP") for k in ("float", "fixed")},
               "same_rank": {s: same_ranking(s) for s in ("id", "ood")},
               "max_drop": float(summary["drop"].abs().max()),
               "change": df.groupby("split")["feature_change"].mean().to_dict(),
               "ft_tuning_change": summary.loc[("FT", "id"), "tuning change"], "summary": summary}
    checks = pd.DataFrame([
        ("LP beats FT out of distribution", f"{numbers['lp_ood']['float']}/{n}", f"{numbers['lp_ood']['fixed']}/{n}"),
        ("FT beats LP in distribution", f"{numbers['ft_id']['float']}/{n}", f"{numbers['ft_id']['fixed']}/{n}"),
        ("ranking of all methods unchanged by quantisation, ID", "—", f"{numbers['same_rank']['id']}/{n}"),
        ("ranking of all methods unchanged by quantisation, OOD", "—", f"{numbers['same_rank']['ood']}/{n}"),
    ], columns=["seeds where it holds", "float32", "fixed point"])
    return summary, checks, numbers


def deviation_table(records: list[dict]) -> pd.DataFrame:
    """One row per (seed, method, split) of the measured effect of each departure from F8Net (in %): the float and
    fixed-point accuracy, each :data:`VARIANTS` network's accuracy, the pooled feature codes that change when the last
    layer is requantised before the average, and the activation FLs that a single calibration batch would change."""
    rows = []
    for record in records:
        for method, r in record["results"].items():
            if method == "seconds":
                continue
            d = r["deviations"]
            for split in ("id", "ood", "natural"):
                rows.append({"seed": record["config"]["seed"], "method": method, "split": split,
                             "float": 100 * r[split]["float"], "fixed": 100 * r[split]["fixed"],
                             **{name: 100 * acc[split] for name, acc in d["variants"].items() if split in acc},
                             "pooled codes differ": 100 * d["pooled_codes_differ"][split],
                             "batch FLs differ": 100 * d["batch_fls_differ"]})
    return pd.DataFrame(rows)
