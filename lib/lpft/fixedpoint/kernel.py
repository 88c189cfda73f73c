"""The integer kernels of F8Net-style fixed point: ``y = clamp(round_half_even((q_x q_wᵀ + b) / 2^n))``, the 8-bit
product summed exactly in int32 at ``FL_x + FL_w`` and moved to the output's FL by a shift of ``n`` bits
(:func:`fixed_point_linear`; :func:`fixed_point_conv2d` on image patches), requantisation (:func:`requantize`), and
the plain int64 / float64 oracle (:func:`reference_linear`) the kernel is checked against bit for bit.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lpft.fixedpoint.qformat import qrange

INT32_MAX = 2**31 - 1
MIN_SHIFT, MAX_SHIFT = -23, 31          # left shifts up to 23 bits, right shifts up to 31


# ---- the kernel ----------------------------------------------------------------------------------------------------

def max_abs_product(x_dtype: torch.dtype) -> int:
    """The largest |x · w| of one 8-bit product with inputs of ``x_dtype``: 255 · 128 (uint8) or 128 · 128 (int8)."""
    # |x| ≤ 255 for uint8 and ≤ 128 for int8 (-128 is never produced by the format, but may be passed in); |w| ≤ 128.
    return (255 if x_dtype == torch.uint8 else 128) * 128


def max_reduction_length(x_dtype: torch.dtype) -> int:
    """Largest K for which ``x_q @ w_qᵀ`` cannot overflow int32: 65,793 for uint8 inputs, 131,071 for int8."""
    return INT32_MAX // max_abs_product(x_dtype)


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
                         f"{max_abs_product(x_q.dtype)} per term): at most {max_reduction_length(x_q.dtype)}; "
                         "split the reduction into chunks and add the int32 partial sums with a saturating add")


def int_mm(x_q: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
    """``x_q @ w_qᵀ`` accumulated exactly in int32 (x (M, K) int8/uint8, w (N, K) int8).

    On CPU: ATen's int32 matrix product, exact on every CPU (integer sums do not depend on their order).
    ``torch._int_mm`` is not used there: on a CPU with AVX512-VNNI it calls oneDNN, and under the book's pinned
    numeric environment (:mod:`lpft.numeric`, oneDNN capped at AVX2) oneDNN's AVX2 u8·s8 kernel adds pairs of
    products in saturating int16 and returns wrong sums (measured on an AMD EPYC with AVX-512 VNNI and torch 2.13:
    1,621 of 2,048 outputs of a random 64×96 by 96×32 product wrong); without VNNI it runs an exact but slow loop.
    On CUDA: ``torch._int_mm`` (cuBLASLt), which takes int8 only with M > 16 and K, N multiples of 8: uint8 inputs
    become ``x - 128`` with ``128 · Σ_k w`` added back, and the operands are zero-padded (exact). The CUDA path follows
    ``_int_mm``'s documented rules but has not been run on a GPU yet.
    """
    if x_q.device.type != "cuda":
        return x_q.to(torch.int32) @ w_q.to(torch.int32).t()
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
        bound = INT32_MAX - x_q.shape[1] * max_abs_product(x_q.dtype)
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
