"""An integer-only EfficientNet-Lite0 (:class:`FixedPointLite0`), built from a float :mod:`lpft.efficientnet` model the
F8Net way (Jin et al., ICLR 2022): BatchNorm folded into each convolution's weight and bias, 8-bit weights and
activations at per-layer fractional lengths (FLs) chosen on calibration images, int32 accumulation, shift-only
requantisation. Beyond the kernels of :mod:`lpft.fixedpoint.kernel`, the mobile block needs three integer operations,
each with a plain int64 reference for the tests: the depthwise convolution (:func:`integer_depthwise`, one
multiply-accumulate per tap; :func:`reference_depthwise`), the residual add of two FLs aligned by a shift, and the
global average as one int32 sum and one rounding shift (:func:`pooled_relu6`).

Tensors between layers are kept channels-last (B, H, W, C): a 1×1 convolution is then one integer GEMM on a view
(B·H·W, C) and a depthwise convolution a sum of k² strided slices scaled per channel.

ReLU6 and the FL. After a ReLU6 the value lies in [0, 6]; its 8-bit code at FL is saturated to
``[0, min(255, 6·2^FL)]``: for FL ≤ 5 the clamp at ``6·2^FL`` (< 255) is ReLU6 exactly; for FL ≥ 6 the format's own
saturation at ``255·2^-FL`` (3.98 at FL 6) is below 6 and replaces it. The FL is not forced to 5: it comes from the
activation rule on the calibration tensor (``"std"``: F8Net's σ rule, c = 70, on the tensor before the ReLU6;
``"search"``: the brute-force MSE-optimal FL of the tensor after it), so a layer whose values rarely approach 6
trades the clip for a finer grid, as F8Net's σ rule does for a plain ReLU.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from lpft.efficientnet import DigitBackbone, Lite0Features
from lpft.fixedpoint.kernel import (INT32_MAX, fold_batchnorm, int_mm, integer_linear, max_abs_product, requantize,
                                    residual_add)
from lpft.fixedpoint.network import PIXEL_FL, quantize_image
from lpft.fixedpoint.qformat import choose_fl, dequantize, fl_grid_search, fl_std_rule, quantize
from lpft.task import Classifier

RELU6 = 6.0


# ---- the integer operations ----------------------------------------------------------------------------------------

def same_pads(h: int, w: int, kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TensorFlow's "same" padding as ``(left, right, top, bottom)`` (:class:`lpft.efficientnet.SameConv`'s rule:
    total ``max((ceil(n/s) − 1)·s + k − n, 0)`` per axis, the smaller half first)."""
    pads = []
    for n in (w, h):
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


def integer_depthwise(x_q: torch.Tensor, w_q: torch.Tensor, b_q: torch.Tensor, stride: int) -> torch.Tensor:
    """A depthwise convolution's int32 accumulator, channels-last: ``x_q`` uint8/int8 (B, H, W, C), ``w_q`` int8
    (C, 1, k, k), ``b_q`` int32 (C,); TF "same" zero padding (the value 0 at any FL), stride ``stride``. Returns
    int32 (B, H', W', C) at ``FL_x + FL_w``: the bias plus, for each of the k² taps, the strided slice of the padded
    input times that tap's per-channel weight. |acc| ≤ k²·255·128 + |b|, far below 2^31 for k ≤ 7."""
    b, h, w, c = x_q.shape
    k = w_q.shape[-1]
    left, right, top, bottom = same_pads(h, w, k, stride)
    x = F.pad(x_q.to(torch.int32), (0, 0, left, right, top, bottom))
    h_out, w_out = -(-h // stride), -(-w // stride)
    taps = w_q.to(torch.int32).reshape(c, k * k).t()                         # (k², C)
    acc = b_q.expand(b, h_out, w_out, c)
    for i in range(k):
        for j in range(k):
            window = x[:, i:i + stride * (h_out - 1) + 1:stride, j:j + stride * (w_out - 1) + 1:stride]
            acc = acc + window * taps[i * k + j]
    return acc


def reference_depthwise(x_q: torch.Tensor, w_q: torch.Tensor, b_q: torch.Tensor, stride: int) -> torch.Tensor:
    """The same accumulator the obvious way, for tests: int64 patches (``unfold``) times the kernel, summed (int64)."""
    b, h, w, c = x_q.shape
    k = w_q.shape[-1]
    left, right, top, bottom = same_pads(h, w, k, stride)
    x = F.pad(x_q.to(torch.int64).permute(0, 3, 1, 2), (left, right, top, bottom))
    patches = x.unfold(2, k, stride).unfold(3, k, stride)                     # (B, C, H', W', k, k)
    acc = (patches * w_q.to(torch.int64)[None, :, 0, None, None]).sum((-1, -2)) + b_q.to(torch.int64)[None, :, None, None]
    return acc.permute(0, 2, 3, 1)


def integer_pointwise(x_q: torch.Tensor, w_q: torch.Tensor, b_q: torch.Tensor) -> torch.Tensor:
    """A 1×1 convolution's int32 accumulator, channels-last: (B, H, W, C) → (B, H, W, O), one integer GEMM
    (:func:`lpft.fixedpoint.kernel.integer_linear`) on the (B·H·W, C) view; ``w_q`` int8 (O, C, 1, 1)."""
    b, h, w, c = x_q.shape
    acc = integer_linear(x_q.reshape(b * h * w, c), w_q.reshape(w_q.shape[0], c), b_q)
    return acc.reshape(b, h, w, -1)


def integer_stem(x_q: torch.Tensor, w_q: torch.Tensor, b_map: torch.Tensor, stride: int) -> torch.Tensor:
    """A full k×k convolution with TF "same" zero padding, channels-last, on image patches: ``x_q`` uint8
    (B, H, W, C), ``w_q`` int8 (O, C, k, k), ``b_map`` int32 (H', W', O), a bias per output position (see
    :class:`FixedPointLite0`). Returns int32 (B, H', W', O)."""
    b, h, w, c = x_q.shape
    o, _, k, _ = w_q.shape
    left, right, top, bottom = same_pads(h, w, k, stride)
    x = F.pad(x_q, (0, 0, left, right, top, bottom))
    patches = x.unfold(1, k, stride).unfold(2, k, stride)                     # (B, H', W', C, k, k)
    h_out, w_out = patches.shape[1:3]
    acc = int_mm(patches.reshape(b * h_out * w_out, c * k * k), w_q.reshape(o, c * k * k))
    return acc.reshape(b, h_out, w_out, o) + b_map


def relu6_codes(acc: torch.Tensor, shift: int, fl_y: int) -> torch.Tensor:
    """ReLU6 of an int32 accumulator, as uint8 codes at ``fl_y``: :func:`~lpft.fixedpoint.kernel.requantize` (round
    half to even, clamp to [0, 255]: the ReLU) then the clamp at ``6·2^fl_y`` when that is below 255."""
    y = requantize(acc, shift, out_signed=False)
    return y.clamp(max=int(RELU6 * 2**fl_y)) if RELU6 * 2**fl_y < 255 else y


def pooled_relu6(acc: torch.Tensor, fl_acc: int, log2_positions: int, fl_y: int, clip: int) -> torch.Tensor:
    """ReLU6 + global average pooling of the last convolution's int32 accumulator (B, H, W, C) at ``fl_acc``, rounded
    once (F8Net's ``FXQAvgPool2d``): each value clamped to ``[0, clip]`` (ReLU6: ``clip = 6·2^fl_acc``, times the
    folded factor below), summed over the positions in int32 (the FL rises by ``log2_positions`` without rounding),
    then requantised once to uint8 at ``fl_y``. With P positions, not a power of two, the caller folds ``2^k / P``
    (k = round(log2 P)) into the last convolution's weights, bias and ``clip``, as F8Net folds 64/49."""
    total = acc.clamp(0, clip).sum(dim=(1, 2), dtype=torch.int32)
    return requantize(total, fl_acc + log2_positions - fl_y, out_signed=False)


def reference_pooled_relu6(acc: torch.Tensor, fl_acc: int, log2_positions: int, fl_y: int, clip: int):
    """The same in float64 (exact: integers below 2^53 divided by powers of two) with NumPy's half-to-even round."""
    total = acc.to(torch.int64).clamp(0, clip).sum(dim=(1, 2)).double()
    y = (total.numpy() / 2.0 ** (fl_acc + log2_positions - fl_y)).round().clip(0, 255)
    return torch.from_numpy(y).to(torch.uint8)


# ---- the network ---------------------------------------------------------------------------------------------------

def _parts(model: nn.Module) -> tuple[Lite0Features, nn.Linear | None]:
    """(the Lite0 features, the linear head or None) of a :class:`~lpft.task.Classifier` or a bare backbone."""
    backbone, head = (model.backbone, model.head) if isinstance(model, Classifier) else (model, None)
    if not isinstance(backbone, Lite0Features):
        raise TypeError(f"expected an lpft.efficientnet model (Lite0Features, or a Classifier around one); got "
                        f"{type(backbone).__name__}")
    return backbone, head


def images01(x: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """The float preprocessing before the integer network: images in [0, 1], (B, 3, R, R). For a
    :class:`~lpft.efficientnet.DigitBackbone` (``resolution`` R), its 8×8 digits upsampled bilinearly and copied to
    three channels (its adapter without the final 2·x − 1, which the stem absorbs; bilinear weights are convex, so
    the result lies in [0, 1] up to float32 rounding, which a clamp removes); for a plain
    :class:`~lpft.efficientnet.Lite0Features` (``resolution=None``), inputs in the network's convention [-1, 1]
    mapped back by (x + 1)/2."""
    if resolution is None:
        return ((x + 1) / 2).clamp(0, 1)
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"expected grey digits (N, 1, H, W); got {tuple(x.shape)}")
    x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return x.clamp(0, 1).expand(-1, 3, -1, -1)          # the clamp removes float32 overshoots of about 1e-7


@torch.no_grad()
def _trace(backbone: Lite0Features, v: torch.Tensor) -> dict[str, torch.Tensor]:
    """The float network on inputs ``v`` in its convention, every tensor an FL is chosen for, by layer name: the
    pre-activation (BN output) of the stem, each block's ``e``xpand and ``d``epthwise convolution and the head; each
    block's ``p``rojection output after its residual add; the pooled features."""
    t = {}
    t["stem"] = backbone._bn0(backbone._conv_stem(v))
    x = F.relu6(t["stem"])
    for i, block in enumerate(backbone._blocks):
        h = x
        if hasattr(block, "_expand_conv"):
            t[f"{i}e"] = block._bn0(block._expand_conv(h))
            h = F.relu6(t[f"{i}e"])
        t[f"{i}d"] = block._bn1(block._depthwise_conv(h))
        p = block._bn2(block._project_conv(F.relu6(t[f"{i}d"])))
        x = t[f"{i}p"] = p + x if block.residual else p
    t["head"] = backbone._bn1(backbone._conv_head(x))
    t["pooled"] = F.relu6(t["head"]).mean(dim=(2, 3))
    return t


def _convs(backbone: Lite0Features):
    """(name, conv, bn, kind) in execution order; kind ∈ stem / expand / depthwise / project / head."""
    out = [("stem", backbone._conv_stem, backbone._bn0, "stem")]
    for i, block in enumerate(backbone._blocks):
        if hasattr(block, "_expand_conv"):
            out.append((f"{i}e", block._expand_conv, block._bn0, "expand"))
        out += [(f"{i}d", block._depthwise_conv, block._bn1, "depthwise"),
                (f"{i}p", block._project_conv, block._bn2, "project")]
    return out + [("head", backbone._conv_head, backbone._bn1, "head")]


def _fake(y: torch.Tensor, fl: int, lo: int, hi: int) -> torch.Tensor:
    """``clamp(round_half_even(y·2^FL), lo, hi)·2^-FL`` in float64 (the simulation of one requantisation)."""
    return torch.round(y * 2.0**fl).clamp(lo, hi) * 2.0**-fl


class FixedPointLite0(nn.Module):
    """A float EfficientNet-Lite0 (an :mod:`lpft.efficientnet` backbone, or a Classifier with a linear head) run in
    integers only, after a static calibration on ``calibration_x`` (inputs of the float model), at its resolution.

    * Input: the images in [0, 1] (:func:`images01`) as F8Net's pixel codes p = round(255·x) at FL 8. The network's
      input is 2·x − 1, so the stem sees ``Σ W·(2p/255) − Σ_{taps inside the image} W``: the factor 2·256/255 is
      folded into the stem's weights, and the constant into its bias, which differs at the bottom and right border
      (TF "same" padding pads zeros in the [-1, 1] convention) and is therefore stored per output position.
    * Every convolution: BatchNorm folded (:func:`~lpft.fixedpoint.kernel.fold_batchnorm`), weight int8 at the FL of
      ``weight_rule`` on the folded weight (one FL per layer), bias int32 at ``FL_x + FL_w``, int32 accumulation.
    * ReLU6 outputs: uint8 codes saturated at ``min(255, 6·2^FL)`` (:func:`relu6_codes`; module docstring).
    * A block's projection (no activation): int8 at a signed FL; with a residual, the int32 accumulator and the block
      input are aligned by a left shift and added in int32 (:func:`~lpft.fixedpoint.kernel.residual_add`), then
      requantised once.
    * Head convolution: not requantised; ReLU6 on the int32 accumulator, summed over the P positions and rounded
      once to the features' FL (:func:`pooled_relu6`); for P not a power of two, 2^round(log2 P)/P is folded into the
      head convolution's weight, bias and ReLU6 bound (the bound then rounded to an integer: exact only for P a power
      of two).
    * Classifier (when the model has one): int8 weight, int32 bias, int32 logits at ``FL_features + FL_classifier``.

    Activation FLs: ``activation_rule="std"`` (F8Net's σ rule, c = 70 on the pre-ReLU6 tensor for unsigned codes,
    c = 40 for signed block outputs, on the pooled features for the classifier input) or ``"search"``
    (brute-force MSE-optimal FL of the tensor as quantised). :meth:`simulate` recomputes the same network in float64,
    optionally with chosen layers left in float, for measuring where the error comes from.
    """

    def __init__(self, model: nn.Module, calibration_x: torch.Tensor, *, weight_rule: str = "std",
                 activation_rule: str = "std"):
        super().__init__()
        if activation_rule not in ("std", "search"):
            raise ValueError(f"activation_rule must be 'std' or 'search'; got {activation_rule!r}")
        backbone, head = _parts(model.eval())
        self.resolution = backbone.resolution if isinstance(backbone, DigitBackbone) else None
        x01 = images01(calibration_x, self.resolution)
        acts = _trace(backbone, 2 * x01 - 1)

        def act_fl(name: str, relu6: bool) -> int:
            t = acts[name].double()
            if activation_rule == "std":
                return fl_std_rule(t.std().item(), signed=not relu6)
            return fl_grid_search(t.clamp(0, RELU6) if relu6 else t, signed=not relu6)

        self.layers, self.exact = [], {}          # per layer: dict of Python ints; float64 (W, b) for simulate
        fl_x = PIXEL_FL
        for name, conv, bn, kind in _convs(backbone):
            w, b = (t.detach() for t in fold_batchnorm(copy.deepcopy(conv).double(), copy.deepcopy(bn).double()))
            layer = {"name": name, "kind": kind, "stride": conv.stride[0], "groups": conv.groups, "fl_x": fl_x,
                     "block_start": kind == "expand" or (kind == "depthwise" and f"{name[:-1]}e" not in acts)}
            if kind == "stem":   # the input 2p/255 − 1: scale into the weight, the constant into a positional bias
                ones = torch.ones_like(x01[:1]).double()
                pads = same_pads(*x01.shape[2:], conv.kernel_size[0], conv.stride[0])
                b = b[:, None, None] - F.conv2d(F.pad(ones, pads), w, None, conv.stride)[0]     # (O, H', W')
                w = w * (2 * 256 / 255)
            if kind == "head":
                positions = acts["head"].shape[2] * acts["head"].shape[3]
                layer["log2_positions"] = round(math.log2(positions))
                fold = 2 ** layer["log2_positions"] / positions
                w, b = w * fold, b * fold
            layer["fl_w"] = fl_w = choose_fl(w, signed=True, rule=weight_rule)
            layer["fl_acc"] = fl_acc = fl_x + fl_w
            self.register_buffer(f"w_{name}", quantize(w, fl_w, True))
            k = w[0].numel()
            if kind == "head":
                layer["clip"] = round(RELU6 * 2**fl_acc * fold)
                if positions * layer["clip"] > INT32_MAX:
                    raise ValueError(f"{positions} positions of ReLU6 at FL {fl_acc} overflow the int32 pooled sum; "
                                     "use a smaller input resolution or a weight FL rule giving smaller FLs")
                layer["fl_y"] = act_fl("pooled", True) if activation_rule == "std" else \
                    fl_grid_search(acts["pooled"].double(), signed=False)
            else:
                layer["relu6"] = kind != "project"
                layer["residual"] = kind == "project" and backbone._blocks[int(name[:-1])].residual
                layer["fl_y"] = act_fl(name, layer["relu6"])
            bound = INT32_MAX // (positions if kind == "head" else 1) - k * max_abs_product(torch.uint8)
            b_q = torch.round(b * 2.0**fl_acc).clamp(-bound, bound).to(torch.int32)
            self.register_buffer(f"b_{name}", b_q.permute(1, 2, 0).contiguous() if kind == "stem" else b_q)
            self.exact[name] = (w, b)
            self.layers.append(layer)
            fl_x = layer["fl_y"]
        self.fl_features = fl_x
        self.has_classifier = head is not None
        if head is not None:
            self.fl_classifier = choose_fl(head.weight, signed=True, rule=weight_rule)
            self.register_buffer("w_classifier", quantize(head.weight, self.fl_classifier, True))
            bound = INT32_MAX - head.in_features * max_abs_product(torch.uint8)
            self.register_buffer("b_classifier", torch.round(head.bias.double() * 2.0**(fl_x + self.fl_classifier))
                                 .clamp(-bound, bound).to(torch.int32))
            self.exact["classifier"] = (head.weight.detach().double(), head.bias.detach().double())

    # -- integers --

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixel codes (B, R, R, 3), channels-last, at FL 8 from the float model's inputs ``x``."""
        return quantize_image(images01(x, self.resolution)).permute(0, 2, 3, 1).contiguous()

    def integer_features(self, q: torch.Tensor) -> torch.Tensor:
        """uint8 pooled features (B, 1280) at ``fl_features`` from uint8 pixel codes (B, R, R, 3)."""
        x, block_in, fl_in = q, q, 0
        for layer in self.layers:
            name, kind = layer["name"], layer["kind"]
            w, b = getattr(self, f"w_{name}"), getattr(self, f"b_{name}")
            if layer["block_start"]:
                block_in, fl_in = x, layer["fl_x"]
            if kind == "stem":
                acc = integer_stem(x, w, b, layer["stride"])
            elif kind == "depthwise":
                acc = integer_depthwise(x, w, b, layer["stride"])
            else:
                acc = integer_pointwise(x, w, b)
            if kind == "head":
                return pooled_relu6(acc, layer["fl_acc"], layer["log2_positions"], layer["fl_y"], layer["clip"])
            if layer["relu6"]:
                x = relu6_codes(acc, layer["fl_acc"] - layer["fl_y"], layer["fl_y"])
            elif layer["residual"]:
                total, fl = residual_add(acc, layer["fl_acc"], block_in.to(torch.int32), fl_in)
                x = requantize(total, fl - layer["fl_y"], out_signed=True)
            else:
                x = requantize(acc, layer["fl_acc"] - layer["fl_y"], out_signed=True)
        raise AssertionError("the last layer is the head convolution")

    def integer_logits(self, q: torch.Tensor) -> torch.Tensor:
        """int32 logits at ``fl_features + fl_classifier`` from uint8 pixel codes."""
        if not self.has_classifier:
            raise ValueError("this network was built from a backbone without a head; use integer_features")
        return integer_linear(self.integer_features(q), self.w_classifier, self.b_classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The float model's inputs in, int32 logits out (the preprocessing of :func:`images01` and the pixel
        quantisation are the only float operations)."""
        return self.integer_logits(self.quantize_input(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features as real numbers (dequantised), comparable with the float backbone's output."""
        return dequantize(self.integer_features(self.quantize_input(x)), self.fl_features)

    # -- the same network in float64 --

    @torch.no_grad()
    def simulate(self, x: torch.Tensor, exact=()) -> torch.Tensor:
        """Logits (or pooled features, without a classifier) of the same network computed in float64, NCHW, with
        ``F.conv2d``: every requantisation as :func:`_fake`. With ``exact`` empty it equals the integer network
        exactly (every value is a small integer times a power of two, so float64 sums are exact); a layer named in
        ``exact`` uses its float folded weight and bias and leaves its output unquantised (ReLU6 kept), so the next
        layer quantises a float input. Names: ``stem``, ``<block>e`` / ``d`` / ``p``, ``head``, ``classifier``."""
        exact = set(exact)
        unknown = exact - set(self.exact)
        if unknown:
            raise ValueError(f"unknown layer names {sorted(unknown)}; choose from {list(self.exact)}")
        x = quantize_image(images01(x, self.resolution)).double() * 2.0**-PIXEL_FL
        block_in = x
        for layer in self.layers:
            name, kind, fl_y = layer["name"], layer["kind"], layer["fl_y"]
            if name in exact:
                w, b = self.exact[name]
            else:
                w = dequantize(getattr(self, f"w_{name}"), layer["fl_w"]).double()
                b = getattr(self, f"b_{name}").double() * 2.0**-layer["fl_acc"]
                b = b.permute(2, 0, 1) if kind == "stem" else b
            if layer["block_start"]:
                block_in = x
            pads = same_pads(*x.shape[2:], w.shape[-1], layer["stride"])
            y = F.conv2d(F.pad(x, pads), w, None, layer["stride"], 0, 1, layer["groups"])
            y = y + (b if kind == "stem" else b[:, None, None])
            if kind == "head":
                clip = (layer["clip"] * 2.0**-layer["fl_acc"]) if name not in exact else RELU6 * 2 ** \
                    layer["log2_positions"] / (y.shape[2] * y.shape[3])
                pooled = y.clamp(0, clip).sum(dim=(2, 3)) * 2.0**-layer["log2_positions"]
                x = pooled if name in exact else _fake(pooled, fl_y, 0, 255)
            elif layer["relu6"]:
                x = y.clamp(0, RELU6) if name in exact else _fake(y, fl_y, 0, min(255, int(RELU6 * 2**fl_y)))
            else:
                y = y + block_in if layer["residual"] else y
                x = y if name in exact else _fake(y, fl_y, -127, 127)
        if not self.has_classifier:
            return x
        if "classifier" in exact:
            w, b = self.exact["classifier"]
        else:
            w = dequantize(self.w_classifier, self.fl_classifier).double()
            b = self.b_classifier.double() * 2.0**-(self.fl_features + self.fl_classifier)
        return x @ w.T + b

    def fls(self) -> list[dict]:
        """Every layer's FLs and shifts (a table)."""
        keys = ("name", "kind", "fl_x", "fl_w", "fl_acc", "fl_y")
        return [{k: layer[k] for k in keys} for layer in self.layers]
