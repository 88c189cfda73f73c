"""Pretrained backbones for the paper-scale experiments, read from local checkpoint files only (reference Section 3.2).

The LP-FT paper (Kumar et al., ICLR 2022) uses a MoCo-v2 ResNet-50 (800 epochs) for CIFAR-10 → STL-10 / CIFAR-10.1
and BREEDS; torchvision's supervised ImageNet ResNet-50 is the common alternative. :class:`ResNet` is the torchvision
ResNet architecture written out here with torchvision's parameter names, so both files load into it without
torchvision (whose PyPI wheels are built against CUDA torch and do not load with the CPU torch the book pins):

* ``source="torchvision"``: a plain ``state_dict`` as torchvision saves ImageNet weights (``resnet50-0676ba61.pth``,
  ``resnet50-11ad3fa6.pth``); the 1000-way ``fc`` is dropped;
* ``source="moco_v2"``: MoCo's training checkpoint (``moco_v2_800ep_pretrain.pth.tar``): a dict whose
  ``"state_dict"`` holds the query encoder under ``module.encoder_q.`` (the key encoder, queue and MLP projection
  ``fc`` are dropped).

Files are read with ``torch.load(..., weights_only=True)`` (no code runs). A checkpoint that does not match the
architecture is refused with the number and the first names of its missing and unexpected parameters; nothing is
loaded partially. CLIP backbones (DomainNet: RN50, ImageNet: ViT-B/16) are not implemented: ``open_clip`` needs
torchvision (see above), and CLIP's modified ResNet is another architecture.
``arch`` picks ResNet-18/34/50; ``width`` (64 in torchvision) shrinks every layer for smoke tests on a CPU.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch
from torch import nn

from lpft.execute import atomic_write

SOURCES = ("torchvision", "moco_v2")
ARCHS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
         "resnet50": ("bottleneck", (3, 4, 6, 3))}
MOCO_PREFIX = "module.encoder_q."
HOW_TO_GET = {
    "torchvision": "save torchvision's ImageNet ResNet-50 weights as a state_dict file, e.g. the file "
                   "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "moco_v2": "download moco_v2_800ep_pretrain.pth.tar from the MoCo repository (facebookresearch/moco, "
               "'Models' section: https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v2_800ep/"
               "moco_v2_800ep_pretrain.pth.tar)",
}


class MissingCheckpoint(FileNotFoundError):
    """The checkpoint file is not there; the message says what to put where."""


class CheckpointMismatch(ValueError):
    """The checkpoint file does not hold the expected weights (wrong format, architecture or values)."""


# ---- the architecture (torchvision's layout and parameter names) --------------------------------------------------

def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = _bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = _bn(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (the stride sits on the 3×3 convolution), as in torchvision."""
    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = _bn(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """torchvision's ResNet without its classifier: ``forward`` returns the pooled penultimate features
    (2048-d for ResNet-50 at ``width`` 64), which LP probes and the feature-change measurement compares."""

    def __init__(self, arch: str = "resnet50", width: int = 64):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {list(ARCHS)}; got {arch!r}")
        kind, depths = ARCHS[arch]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        self.arch, self.width = arch, width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = _bn(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = width
        for i, depth in enumerate(depths):
            planes, stride = width * 2 ** i, 1 if i == 0 else 2
            blocks = []
            for j in range(depth):
                down = None
                if j == 0 and (stride != 1 or c_in != planes * block.expansion):
                    down = nn.Sequential(nn.Conv2d(c_in, planes * block.expansion, 1, stride, bias=False),
                                         _bn(planes * block.expansion))
                blocks.append(block(c_in, planes, stride if j == 0 else 1, down))
                c_in = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = c_in
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class Classifier(nn.Module):
    """A backbone and a linear head: ``features`` are the penultimate features, ``forward`` the logits."""

    def __init__(self, backbone: nn.Module, n_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.feature_dim, n_classes)

    def features(self, x):
        return self.backbone(x)

    def forward(self, x):
        return self.head(self.backbone(x))


# ---- checkpoint files ---------------------------------------------------------------------------------------------

def file_digest(path) -> str:
    """sha256 (16 hex digits) of a file's bytes: results are keyed on the weights, not on the file's name."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _names(keys, n: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f", … ({len(keys) - n} more)" if len(keys) > n else "")


def _extract(obj, source: str, path: Path) -> dict:
    """The backbone's state_dict inside a loaded checkpoint object of ``source``'s format, classifier dropped."""
    if not isinstance(obj, dict):
        raise CheckpointMismatch(f"{path} holds a {type(obj).__name__}, not a state_dict or checkpoint dict")
    if source == "moco_v2":
        state = obj.get("state_dict")
        if not isinstance(state, dict):
            raise CheckpointMismatch(f"{path} is not a MoCo checkpoint: it has no 'state_dict' entry "
                                     f"(top-level keys: {_names(map(str, obj))})")
        if not any(str(k).startswith(MOCO_PREFIX) for k in state):
            raise CheckpointMismatch(f"{path} is not a MoCo checkpoint: no parameter starts with '{MOCO_PREFIX}'")
        state = {k[len(MOCO_PREFIX):]: v for k, v in state.items() if k.startswith(MOCO_PREFIX)}
    else:
        if "state_dict" in obj and isinstance(obj["state_dict"], dict):
            raise CheckpointMismatch(f"{path} is a training checkpoint (it has a 'state_dict' entry), not a plain "
                                     f"torchvision state_dict; for MoCo files use source='moco_v2'")
        state = obj
    return {k: v for k, v in state.items() if not (k == "fc" or k.startswith("fc."))}


def check_state(state: dict, model: nn.Module, path) -> None:
    """Refuse ``state`` unless it holds exactly ``model``'s parameters and buffers with the right shapes and finite
    values (BatchNorm's ``num_batches_tracked`` may be absent, as in torchvision's older files)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointMismatch(
            f"{path} does not match {getattr(model, 'arch', type(model).__name__)} (width "
            f"{getattr(model, 'width', '?')}): {len(missing)} missing keys ({_names(missing) or 'none'}), "
            f"{len(unexpected)} unexpected keys ({_names(unexpected) or 'none'}); nothing was loaded")
    for k, v in state.items():
        if not isinstance(v, torch.Tensor) or v.shape != expected[k].shape:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise CheckpointMismatch(f"{path}: {k} has shape {shape}, expected {tuple(expected[k].shape)}")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointMismatch(f"{path}: {k} has non-finite values")


def load_backbone(path, source: str, arch: str = "resnet50", width: int = 64) -> ResNet:
    """The ``arch`` backbone with the weights of the local checkpoint ``path`` in ``source``'s format (one of
    :data:`SOURCES`), in ``eval()`` mode on the CPU. Missing file: :class:`MissingCheckpoint`; wrong or partial
    file: :class:`CheckpointMismatch` naming the counts of missing and unexpected keys."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}; got {source!r} (CLIP backbones are not implemented)")
    path = Path(path)
    if not path.is_file():
        raise MissingCheckpoint(f"no checkpoint at {path}: {HOW_TO_GET[source]}, and pass its path. "
                                f"No weights are downloaded at run time.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated files, pickles with code, foreign formats
        raise CheckpointMismatch(f"{path} cannot be read as a weights-only torch file "
                                 f"({type(e).__name__}: {str(e).splitlines()[0]})") from e
    model = ResNet(arch, width)
    state = _extract(obj, source, path)
    check_state(state, model, path)
    model.load_state_dict(state, strict=False)  # strict key check done above (num_batches_tracked may be absent)
    return model.eval()


def save_checkpoint(model: ResNet, path, source: str) -> None:
    """Write ``model``'s weights atomically in ``source``'s file format: a torchvision state_dict (with a 1000-way
    ``fc`` as torchvision's files have) or a MoCo-v2 training checkpoint (query and key encoders with the MLP
    projection, queue, epoch, arch, optimizer). Used by the tests and the quick profile to make real-format files;
    the same weights give the same bytes."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}; got {source!r}")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dim = model.feature_dim
    if source == "torchvision":
        obj = {**state, "fc.weight": torch.zeros(1000, dim), "fc.bias": torch.zeros(1000)}
    else:
        mlp = {"fc.0.weight": torch.zeros(dim, dim), "fc.0.bias": torch.zeros(dim),
               "fc.2.weight": torch.zeros(128, dim), "fc.2.bias": torch.zeros(128)}
        encoder = {**state, **mlp}
        obj = {"epoch": 800, "arch": model.arch, "optimizer": {"state": {}, "param_groups": []},
               "state_dict": {**{MOCO_PREFIX + k: v for k, v in encoder.items()},
                              **{"module.encoder_k." + k: v.clone() for k, v in encoder.items()},
                              "module.queue": torch.zeros(128, 16), "module.queue_ptr": torch.zeros(1, dtype=torch.long)}}
    buffer = io.BytesIO()  # saved through a buffer: torch names the archive's root after the file, which is random
    torch.save(obj, buffer)
    atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
