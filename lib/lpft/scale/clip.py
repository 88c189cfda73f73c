"""CLIP's image towers (Radford et al. 2021), written out with the parameter names of OpenAI's CLIP and open_clip.

The LP-FT paper's official code fine-tunes CLIP ResNet-50 on DomainNet and CLIP ViT-B/16 on ImageNet.
``open_clip`` cannot be installed beside the CPU torch the book pins (it needs torchvision and timm), so the two
architectures are written out here. Every parameter and buffer has the name it has under ``visual.`` in OpenAI's and
open_clip's checkpoints, so their files load into these modules (:func:`lpft.scale.backbones.load_backbone` with
``source="clip"``):

* :class:`ModifiedResNet`: CLIP's ResNet ("RN50"): a 3-convolution stem with an average pool, anti-aliased
  bottlenecks (every convolution at stride 1; a stride-2 average pool after the 3×3 convolution and at the start of
  the shortcut) and a multi-head attention pool (``attnpool``) instead of the global average pool;
* :class:`VisionTransformer`: CLIP's ViT ("ViT-B-16"): patch embedding without bias, class token, learned positional
  embedding, ``ln_pre``, pre-norm residual blocks with ``nn.MultiheadAttention`` and a QuickGELU MLP, ``ln_post`` on
  the class token and the projection ``proj``.

``forward(x)`` returns the image embedding, what ``encode_image`` returns (not L2-normalised): the penultimate
features that LP probes and on which FT puts a fresh head. Inputs are expected normalised with CLIP's constants
(``input_mean``/``input_std``), at ``image_size`` pixels (the positional embeddings are fixed). :data:`CLIP_ARCHS`
holds the two published configurations; :func:`build` makes one, with overrides for tiny test versions.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HEAD_WIDTH = 64  # both published towers use 64 channels per attention head

# open_clip's model configurations "RN50" and "ViT-B-16" (their vision_cfg and embed_dim).
CLIP_ARCHS = {
    "RN50": {"kind": "resnet", "layers": (3, 4, 6, 3), "width": 64, "heads": 32, "output_dim": 1024,
             "image_size": 224},
    "ViT-B-16": {"kind": "vit", "layers": 12, "width": 768, "heads": 12, "patch_size": 16, "output_dim": 512,
                 "image_size": 224},
}


class QuickGELU(nn.Module):
    """x·sigmoid(1.702·x), the GELU approximation OpenAI's CLIP weights were trained with."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back to the input's dtype (as in CLIP, for half-precision inputs)."""

    def forward(self, x):
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(),
                            self.eps).to(x.dtype)


def _check_size(module: nn.Module, x: torch.Tensor) -> None:
    if x.shape[-2:] != (module.image_size, module.image_size):
        raise ValueError(f"CLIP {module.arch} takes {module.image_size}×{module.image_size} inputs (its positional "
                         f"embedding is fixed); got {tuple(x.shape[-2:])}")


# ---- CLIP's ResNet ------------------------------------------------------------------------------------------------

class Bottleneck(nn.Module):
    """CLIP's bottleneck: every convolution at stride 1; a stride-``s`` average pool follows the 3×3 convolution and
    starts the shortcut (``downsample``: children "-1" AvgPool2d, "0" 1×1 convolution, "1" BatchNorm)."""
    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or c_in != c_out:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(c_in, c_out, 1, bias=False)),
                ("1", nn.BatchNorm2d(c_out)),
            ]))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.avgpool(self.relu(self.bn2(self.conv2(out))))
        return self.relu(self.bn3(self.conv3(out)) + shortcut)


class AttentionPool2d(nn.Module):
    """CLIP's attention pool: the mean of the final feature map is prepended to its H·W positions, a learned positional
    embedding added, and multi-head attention from the mean token alone (query) over all tokens (keys, values),
    followed by the output projection ``c_proj``."""

    def __init__(self, grid: int, embed_dim: int, heads: int, output_dim: int):
        super().__init__()
        if embed_dim % heads:
            raise ValueError(f"the attention pool's {embed_dim} channels do not split into {heads} heads")
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.heads = heads

    def forward(self, x):
        n, c = x.shape[:2]
        tokens = x.flatten(2).transpose(1, 2)  # (N, H·W, C)
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        tokens = tokens + self.positional_embedding.to(tokens.dtype)

        def heads(t):  # (N, L, C) -> (N, heads, L, C / heads)
            return t.reshape(n, t.shape[1], self.heads, c // self.heads).transpose(1, 2)

        q, k, v = heads(self.q_proj(tokens[:, :1])), heads(self.k_proj(tokens)), heads(self.v_proj(tokens))
        pooled = F.scaled_dot_product_attention(q, k, v)  # (N, heads, 1, C / heads), scaled by (C / heads)^-1/2
        return self.c_proj(pooled.transpose(1, 2).reshape(n, c))


class ModifiedResNet(nn.Module):
    """CLIP's ResNet image tower (OpenAI CLIP / open_clip ``ModifiedResNet``). RN50: ``layers`` (3, 4, 6, 3),
    ``width`` 64, ``heads`` 32, ``output_dim`` 1024, ``image_size`` 224. ``forward`` returns the image embedding
    (``output_dim``-d, before CLIP's L2 normalisation)."""
    input_mean, input_std = CLIP_MEAN, CLIP_STD

    def __init__(self, layers=(3, 4, 6, 3), output_dim: int = 1024, heads: int = 32, image_size: int = 224,
                 width: int = 64, arch: str = "RN50"):
        super().__init__()
        if len(layers) != 4 or image_size % 32:
            raise ValueError(f"ModifiedResNet takes 4 stages and an image size divisible by 32; got layers {layers}, "
                             f"image_size {image_size}")
        self.arch, self.width, self.image_size, self.feature_dim = arch, width, image_size, output_dim
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        c_in = width
        for i, depth in enumerate(layers):
            planes = width * 2 ** i
            blocks = [Bottleneck(c_in, planes, 1 if i == 0 else 2)]
            c_in = planes * Bottleneck.expansion
            blocks += [Bottleneck(c_in, planes) for _ in range(depth - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.attnpool = AttentionPool2d(image_size // 32, width * 32, heads, output_dim)
        # CLIP's initialisation: attention-pool projections at std embed_dim^-1/2, each block's last BN scale at 0
        std = self.attnpool.c_proj.in_features ** -0.5
        for proj in (self.attnpool.q_proj, self.attnpool.k_proj, self.attnpool.v_proj, self.attnpool.c_proj):
            nn.init.normal_(proj.weight, std=std)
        for name, p in self.named_parameters():
            if name.startswith("layer") and name.endswith("bn3.weight"):
                nn.init.zeros_(p)

    def forward(self, x):
        _check_size(self, x)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.avgpool(self.relu(self.bn3(self.conv3(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


# ---- CLIP's Vision Transformer ------------------------------------------------------------------------------------

class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)), the MLP ``c_fc`` (4× wide) → act →
    ``c_proj``."""

    def __init__(self, width: int, heads: int, act_layer=QuickGELU):
        super().__init__()
        self.ln_1 = LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)),
            ("gelu", act_layer()),
            ("c_proj", nn.Linear(4 * width, width)),
        ]))

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, act_layer=QuickGELU):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, act_layer) for _ in range(layers)])

    def forward(self, x):  # (N, L, width)
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    """CLIP's ViT image tower (OpenAI CLIP / open_clip ``VisionTransformer`` with class-token pooling). ViT-B/16:
    ``width`` 768, ``layers`` 12, ``heads`` 12, ``patch_size`` 16, ``output_dim`` 512, ``image_size`` 224.
    ``act_layer`` is the MLP's activation: QuickGELU for OpenAI's weights (``nn.GELU`` for open_clip models trained
    without ``quick_gelu``). ``forward`` returns the image embedding (before CLIP's L2 normalisation)."""
    input_mean, input_std = CLIP_MEAN, CLIP_STD

    def __init__(self, width: int = 768, layers: int = 12, heads: int = 12, patch_size: int = 16,
                 output_dim: int = 512, image_size: int = 224, act_layer=QuickGELU, arch: str = "ViT-B-16"):
        super().__init__()
        if image_size % patch_size or width % heads:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size} and width "
                             f"{width} a multiple of heads {heads}")
        self.arch, self.width, self.image_size, self.feature_dim = arch, width, image_size, output_dim
        self.conv1 = nn.Conv2d(3, width, patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((image_size // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, act_layer)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        # CLIP's initialisation of the transformer (its text tower's scheme, which open_clip also applies here)
        attn_std, fc_std = width ** -0.5, (2 * width) ** -0.5
        proj_std = attn_std * (2 * layers) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)

    def forward(self, x):
        _check_size(self, x)
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (N, grid², width)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj.to(x.dtype)


# ---- configurations -----------------------------------------------------------------------------------------------

def build(arch: str, *, width: int | None = None, layers=None, heads: int | None = None,
          image_size: int | None = None, output_dim: int | None = None, patch_size: int | None = None,
          act_layer=QuickGELU) -> nn.Module:
    """The CLIP image tower ``arch`` (a key of :data:`CLIP_ARCHS`) with random weights. Overrides make tiny versions
    for tests: ``width`` (heads then default to width·32/64 for RN, width/64 for ViT, at least 1), ``layers`` (a
    4-tuple for RN, an int for ViT), ``heads``, ``image_size``, ``output_dim``; ``patch_size`` and ``act_layer``
    (ViT only)."""
    if arch not in CLIP_ARCHS:
        raise ValueError(f"CLIP arch must be one of {list(CLIP_ARCHS)}; got {arch!r}")
    cfg = dict(CLIP_ARCHS[arch])
    kind = cfg.pop("kind")
    if width is not None and width != cfg["width"]:
        cfg["width"] = width
        cfg["heads"] = max(1, (width * 32 if kind == "resnet" else width) // HEAD_WIDTH)
    for key, value in (("layers", layers), ("heads", heads), ("image_size", image_size),
                       ("output_dim", output_dim), ("patch_size", patch_size)):
        if value is not None:
            cfg[key] = tuple(value) if key == "layers" and kind == "resnet" else value
    if kind == "resnet":
        if act_layer is not QuickGELU or "patch_size" in cfg:
            raise ValueError("patch_size and act_layer apply to the ViT only (CLIP's ResNet has neither)")
        return ModifiedResNet(arch=arch, **cfg)
    return VisionTransformer(arch=arch, act_layer=act_layer, **cfg)
