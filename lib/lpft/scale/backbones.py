"""Pretrained backbones for the paper-scale experiments (MoCo-v2, CLIP, MoCo-TP: the paper's Section 4), read from
local checkpoint files only.

The LP-FT paper (Kumar et al., ICLR 2022) uses a MoCo-v2 ResNet-50 (800 epochs) for CIFAR-10 → STL-10 / CIFAR-10.1
and BREEDS; torchvision's supervised ImageNet ResNet-50 is the common alternative. :class:`ResNet` is the torchvision
ResNet architecture written out here with torchvision's parameter names, so both files load into it without
torchvision (whose PyPI wheels are built against CUDA torch and do not load with the CPU torch the book pins).
DomainNet uses CLIP's ResNet-50 and ImageNet CLIP's ViT-B/16: :mod:`lpft.scale.clip` writes out both image towers with
OpenAI's / open_clip's parameter names (``open_clip`` cannot be installed beside this torch either). Sources:

* ``source="torchvision"``: a plain ``state_dict`` as torchvision saves ImageNet weights (``resnet50-0676ba61.pth``,
  ``resnet50-11ad3fa6.pth``); the 1000-way ``fc`` is dropped;
* ``source="moco_v2"``: MoCo's training checkpoint (``moco_v2_800ep_pretrain.pth.tar``): a dict whose
  ``"state_dict"`` holds the query encoder under ``module.encoder_q.`` (the key encoder, queue and MLP projection
  ``fc`` are dropped). FMoW's MoCo-TP file (``mocotp_checkpoint_0200.pth.tar``) has the same layout: it is written
  by the geography-aware SSL code's ``moco_fmow/main_moco_tp.py`` (MoCo wrapped in DistributedDataParallel, saved as
  ``{"epoch", "arch", "state_dict", "optimizer"}``), and the LP-FT code reads it as ``mocov2`` by keeping exactly the
  ``module.encoder_q.`` entries other than ``fc``, as here;
* ``source="clip"`` (``arch`` "RN50" or "ViT-B-16"): either the whole CLIP model's plain ``state_dict`` as open_clip
  saves it (``open_clip_pytorch_model.bin`` on the Hugging Face hub), or OpenAI's original TorchScript archive
  (``RN50.pt``, ``ViT-B-16.pt``); the image tower under ``visual.`` is kept, the text tower dropped.

Files are read with ``torch.load(..., weights_only=True)`` (no code runs), except OpenAI's TorchScript archives, which
``torch.load`` refuses with ``weights_only=True``: those are recognised by their layout and, for ``source="clip"``
only, read with ``torch.jit.load`` (see :func:`read_torchscript_state`). A checkpoint that does not match the architecture is refused with the number and the
first names of its missing and unexpected parameters; nothing is loaded partially. ``arch`` picks ResNet-18/34/50
(or the CLIP tower); ``width`` (64 in torchvision) shrinks every layer for smoke tests on a CPU.
"""
from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from lpft.scale import clip
from lpft.records import atomic_write
from lpft.scale.transforms import IMAGENET_MEAN, IMAGENET_STD

SOURCES = ("torchvision", "moco_v2", "clip")
ARCHS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
         "resnet50": ("bottleneck", (3, 4, 6, 3))}
MOCO_PREFIX = "module.encoder_q."
CLIP_PREFIX = "visual."
CLIP_FILES = {  # open_clip's Hugging Face hub repository and OpenAI's original archive, per image tower
    "RN50": ("timm/resnet50_clip.openai", "https://openaipublic.azureedge.net/clip/models/"
             "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt"),
    "ViT-B-16": ("timm/vit_base_patch16_clip_224.openai", "https://openaipublic.azureedge.net/clip/models/"
                 "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt"),
}


def clip_how_to_get(arch: str) -> str:
    """Which file to get from where for the CLIP image tower ``arch``."""
    hub, url = CLIP_FILES[arch]
    return (f"download open_clip's file open_clip_pytorch_model.bin from the Hugging Face hub repository {hub} "
            f"(https://huggingface.co/{hub}/resolve/main/open_clip_pytorch_model.bin), or OpenAI's TorchScript "
            f"archive {url.rsplit('/', 1)[1]} ({url})")


HOW_TO_GET = {
    "torchvision": "save torchvision's ImageNet ResNet-50 weights as a state_dict file, e.g. the file "
                   "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "moco_v2": "download moco_v2_800ep_pretrain.pth.tar from the MoCo repository (facebookresearch/moco, "
               "'Models' section: https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v2_800ep/"
               "moco_v2_800ep_pretrain.pth.tar)",
    "clip": "for CLIP RN50 (DomainNet) " + clip_how_to_get("RN50") + "; for CLIP ViT-B/16 (ImageNet) "
            + clip_how_to_get("ViT-B-16"),
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
    (2048-d for ResNet-50 at ``width`` 64), which LP probes and the feature-change measurement compares. Inputs are
    expected normalised with ImageNet's constants (``input_mean``/``input_std``)."""
    input_mean, input_std = IMAGENET_MEAN, IMAGENET_STD

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


def clip_visual_state(obj: dict, path) -> dict:
    """The image tower's state_dict inside a whole CLIP model's state_dict (open_clip's and OpenAI's parameter
    names): the ``visual.`` entries with the prefix removed; the text tower, ``logit_scale`` and OpenAI's
    ``input_resolution`` / ``context_length`` / ``vocab_size`` entries are dropped."""
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        raise CheckpointMismatch(f"{path} is a training checkpoint (it has a 'state_dict' entry), not a CLIP model's "
                                 f"plain state_dict; save its 'state_dict' (without a 'module.' prefix) as the file")
    state = {k[len(CLIP_PREFIX):]: v for k, v in obj.items() if str(k).startswith(CLIP_PREFIX)}
    if not state:
        bare = any(str(k).split(".")[0] in ("attnpool", "class_embedding", "ln_post", "proj") for k in obj)
        hint = (" (it looks like a bare image tower: CLIP files keep it under 'visual.')" if bare else "")
        raise CheckpointMismatch(f"{path} is not a CLIP model's state_dict: no parameter starts with "
                                 f"'{CLIP_PREFIX}'{hint} (keys: {_names(map(str, obj))})")
    return state


def _extract(obj, source: str, path: Path) -> dict:
    """The backbone's state_dict inside a loaded checkpoint object of ``source``'s format, classifier dropped."""
    if not isinstance(obj, dict):
        raise CheckpointMismatch(f"{path} holds a {type(obj).__name__}, not a state_dict or checkpoint dict")
    if source == "clip":
        return clip_visual_state(obj, path)
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


def is_torchscript_archive(path) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``'s zip, with compiled ``code/`` and
    ``constants.pkl``), as OpenAI's CLIP files are, rather than a ``torch.save`` file."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/__torch__/" in n for n in archive.namelist())


def read_torchscript_state(path) -> dict:
    """The ``state_dict`` of the TorchScript module in the archive ``path`` (OpenAI's ``RN50.pt``, ``ViT-B-16.pt``),
    on the CPU. ``torch.jit.load`` deserialises TorchScript (compiled TorchScript code, run by TorchScript's
    interpreter, and the module's tensors), not arbitrary pickled Python objects; the module's code is not called
    here, only its parameters and buffers are read."""
    with warnings.catch_warnings():  # torch >= 2.9 deprecates torch.jit (Deprecation/FutureWarning); reading works
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated")
        module = torch.jit.load(str(path), map_location="cpu")
    return dict(module.state_dict())


def _read(path: Path, source: str):
    if is_torchscript_archive(path):
        if source != "clip":
            raise CheckpointMismatch(f"{path} is a TorchScript archive, not a {source} weights file (only "
                                     f"source='clip' reads TorchScript, for OpenAI's CLIP archives)")
        try:
            return read_torchscript_state(path)
        except Exception as e:
            raise CheckpointMismatch(f"{path} looks like a TorchScript archive but cannot be read with torch.jit.load "
                                     f"({type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}); TorchScript "
                                     f"is deprecated in torch, so use open_clip's plain state_dict instead, "
                                     f"open_clip_pytorch_model.bin from the Hugging Face hub repository "
                                     f"{' or '.join(hub for hub, _ in CLIP_FILES.values())}") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated files, pickles with code, foreign formats
        raise CheckpointMismatch(f"{path} cannot be read as a weights-only torch file "
                                 f"({type(e).__name__}: {str(e).splitlines()[0]})") from e


def _check_arch(source: str, arch: str, clip_config: dict) -> None:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}; got {source!r}")
    if source == "clip" and arch not in clip.CLIP_ARCHS:
        raise ValueError(f"source='clip' takes a CLIP arch, one of {list(clip.CLIP_ARCHS)}; got {arch!r}")
    if source != "clip" and clip_config:
        raise TypeError(f"{sorted(clip_config)} only apply to CLIP backbones (source='clip')")


def build_backbone(source: str, arch: str = "resnet50", width: int | None = None, **clip_config) -> nn.Module:
    """The architecture that ``source``'s files hold, with random weights: a :class:`ResNet` (``width`` default 64),
    or for ``source="clip"`` a CLIP image tower from :func:`lpft.scale.clip.build` (``arch`` "RN50" or "ViT-B-16";
    ``width`` and ``clip_config`` (``layers``, ``heads``, ``image_size``, ``output_dim``, ``patch_size``,
    ``act_layer``) override its published configuration, e.g. for tiny test versions)."""
    _check_arch(source, arch, clip_config)
    if source == "clip":
        return clip.build(arch, width=width, **clip_config)
    return ResNet(arch, 64 if width is None else width)


def load_backbone(path, source: str, arch: str = "resnet50", width: int | None = None, **clip_config) -> nn.Module:
    """The ``arch`` backbone with the weights of the local checkpoint ``path`` in ``source``'s format (one of
    :data:`SOURCES`), in ``eval()`` mode on the CPU, as float32. Missing file: :class:`MissingCheckpoint`; wrong or
    partial file: :class:`CheckpointMismatch` naming the counts of missing and unexpected keys. ``source="clip"``:
    ``arch`` "RN50" or "ViT-B-16"; ``width=None`` is the published width; ``clip_config`` as in
    :func:`build_backbone`. CLIP files may be open_clip's plain state_dict of the whole model or OpenAI's
    TorchScript archive (see :func:`read_torchscript_state`); OpenAI's half-precision weights become float32."""
    _check_arch(source, arch, clip_config)
    path = Path(path)
    if not path.is_file():
        how = clip_how_to_get(arch) if source == "clip" else HOW_TO_GET[source]
        raise MissingCheckpoint(f"no checkpoint at {path}: {how}, and pass its path. "
                                f"No weights are downloaded at run time.")
    state = _extract(_read(path, source), source, path)
    model = build_backbone(source, arch, width, **clip_config)
    check_state(state, model, path)
    model.load_state_dict(state, strict=False)  # strict key check done above (num_batches_tracked may be absent)
    return model.eval()


_CLIP_TEXT_DUMMY = {  # a few of the text tower's entries, tiny, as the real files have them beside visual.*
    "positional_embedding": (77, 8), "text_projection": (8, None), "token_embedding.weight": (16, 8),
    "ln_final.weight": (8,), "ln_final.bias": (8,), "transformer.resblocks.0.ln_1.weight": (8,)}


def save_checkpoint(model: nn.Module, path, source: str) -> None:
    """Write ``model``'s weights atomically in ``source``'s file format: a torchvision state_dict (with a 1000-way
    ``fc`` as torchvision's files have), a MoCo-v2 training checkpoint (query and key encoders with the MLP
    projection, queue, epoch, arch, optimizer), or for a CLIP tower open_clip's plain state_dict of the whole model
    (the tower under ``visual.``, a ``logit_scale`` and a few tiny dummy text-tower entries). Used by the tests and
    the quick profile to make real-format files; the same weights give the same bytes."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}; got {source!r}")
    is_clip = isinstance(model, (clip.ModifiedResNet, clip.VisionTransformer))
    if is_clip != (source == "clip") or not (is_clip or isinstance(model, ResNet)):
        raise ValueError(f"a {type(model).__name__} cannot be saved in {source!r}'s format")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dim = model.feature_dim
    if source == "clip":
        text = {k: torch.zeros(*(dim if n is None else n for n in shape)) for k, shape in _CLIP_TEXT_DUMMY.items()}
        obj = {**{CLIP_PREFIX + k: v for k, v in state.items()}, **text, "logit_scale": torch.tensor(4.6052)}
    elif source == "torchvision":
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
