"""An integer-only :class:`~lpft.digits.DigitNet` (:class:`FixedPointDigitNet`) and the integer operations it needs
beyond the kernels: GroupNorm computed exactly in integers (int64 sums, an integer square root, rounding integer
division), integer max pooling, F8Net's average pool (one rounding of the exact sum), the image's pixel codes.
"""
from __future__ import annotations

import torch
from torch import nn

from lpft.digits import DigitNet
from lpft.fixedpoint.kernel import INT32_MAX, integer_conv2d, integer_linear, max_abs_product, requantize
from lpft.fixedpoint.qformat import choose_fl, dequantize, fl_grid_search, fl_std_rule, qrange, quantize


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
        bound = INT32_MAX // positions - k * max_abs_product(torch.uint8)
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


@torch.no_grad()
def integer_costs(model: DigitNet) -> dict[str, int]:
    """What :class:`FixedPointDigitNet` computes per image for ``model``'s shapes (one forward pass of an 8×8 image):
    the integer divisions of its GroupNorms (one per element; the last one, pooled, once per channel), their integer
    square roots (one per group) and the convolutions' multiply-accumulates."""
    outputs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append((m, o[0]))) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.GroupNorm))]
    try:
        model(torch.zeros(1, 1, 8, 8))
    finally:
        for h in hooks:
            h.remove()
    norms = [(m, o) for m, o in outputs if isinstance(m, nn.GroupNorm)]
    return {"divisions": sum(o.numel() for m, o in norms[:-1]) + len(norms[-1][1]),
            "roots": sum(m.num_groups for m, o in norms),
            "macs": sum(o.numel() * m.weight[0].numel() for m, o in outputs if isinstance(m, nn.Conv2d))}
