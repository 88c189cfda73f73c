"""CLIP image towers (lpft.scale.clip) reproduce open_clip and load from open_clip's and OpenAI's checkpoint files.

The reference fixtures in tests/fixtures/ were computed by open_clip itself (scripts/make_clip_reference.py, run in a
separate virtualenv: open_clip cannot be installed beside the pinned torch); they are committed, so these checks always
run. The other tests write real-format files from tiny towers and read them back through lpft.scale.backbones.
"""
import copy
import json
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from lpft.scale import backbones, clip
from lpft.task import Classifier
from lpft.scale.backbones import CheckpointMismatch, MissingCheckpoint
from lpft.scale.transforms import IMAGENET_MEAN, IMAGENET_STD

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = {"RN50": {"width": 8, "layers": (1, 1, 1, 1), "image_size": 64, "output_dim": 16},
        "ViT-B-16": {"width": 32, "layers": 2, "heads": 4, "patch_size": 8, "image_size": 32,
                     "output_dim": 16}}


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial values for every 1-d parameter and buffer (CLIP starts BN scales of bn3 at 0, biases at 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point() and t.ndim == 1:
                u = torch.rand(t.shape, generator=gen)  # scales, variances in [0.5, 1.5); biases, means in [-0.1, 0.1)
                t.copy_(0.5 + u if name.endswith(("running_var", "weight")) else 0.2 * u - 0.1)
    return model


def tiny(arch: str, seed: int = 0, **overrides) -> nn.Module:
    torch.manual_seed(seed)
    return randomise(clip.build(arch, **{**TINY[arch], **overrides}), seed).eval()


def image(model, n=2, seed=1):
    return torch.randn(n, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(seed))


def outputs(model, x):
    with torch.no_grad():
        return model.eval()(x)


# ---- against open_clip -------------------------------------------------------------------------------------------

def test_towers_reproduce_open_clip_encode_image(tmp_path):
    ref = torch.load(FIXTURES / "clip-openclip-reference.pt", weights_only=True)
    assert set(ref["models"]) == {"rn", "vit"}
    for name, entry in ref["models"].items():
        cfg = dict(entry["lpft"])
        arch = cfg.pop("arch")
        path = tmp_path / f"{name}.bin"
        torch.save({**entry["state_dict"], "logit_scale": torch.tensor(4.6), "text_projection": torch.zeros(8, 4)},
                   path)  # as open_clip saves a whole model (its float16 weights stored as OpenAI's are)
        x = entry["input"].float()
        model = backbones.load_backbone(path, "clip", arch, **cfg)
        assert next(model.parameters()).dtype == torch.float32 and model.feature_dim == entry["output"].shape[1]
        ours = outputs(model, x)
        assert torch.allclose(ours, entry["output"], rtol=0, atol=1e-5), (name, (ours - entry["output"]).abs().max())
        assert entry["output"].abs().mean() > 0.1  # a comparison of non-trivial outputs
        if name == "vit":  # the activation is a parameter: exact GELU is open_clip's without quick_gelu
            gelu = outputs(backbones.load_backbone(path, "clip", arch, act_layer=nn.GELU, **cfg), x)
            assert torch.allclose(gelu, entry["output_gelu"], rtol=0, atol=1e-5)
            assert (gelu - ours).abs().max() > 1e-3  # and the two activations are told apart


def test_full_size_towers_have_open_clips_keys_and_shapes():
    recorded = json.loads((FIXTURES / "clip-openclip-keys.json").read_text())
    for arch, dim in (("RN50", 1024), ("ViT-B-16", 512)):
        with torch.device("meta"):
            model = clip.build(arch)
        shapes = {f"visual.{k}": list(v.shape) for k, v in model.state_dict().items()}
        assert shapes == recorded[arch]["visual"], arch
        assert model.feature_dim == dim
        # every other entry of the whole model's state_dict (text tower, logit_scale) is dropped by the loader
        others = {k: torch.zeros(1) for k in recorded[arch]["other_keys"]}
        kept = backbones.clip_visual_state({**others, "visual.proj": torch.zeros(1)}, "x")
        assert list(kept) == ["proj"]


def test_published_configurations():
    assert clip.CLIP_ARCHS["RN50"] == {"kind": "resnet", "layers": (3, 4, 6, 3), "width": 64, "heads": 32,
                                       "output_dim": 1024, "image_size": 224}
    assert clip.CLIP_ARCHS["ViT-B-16"] == {"kind": "vit", "layers": 12, "width": 768, "heads": 12, "patch_size": 16,
                                           "output_dim": 512, "image_size": 224}
    with torch.device("meta"):
        vit = clip.build("ViT-B-16")
    assert isinstance(vit.transformer.resblocks[0].mlp.gelu, clip.QuickGELU)
    x = torch.linspace(-4, 4, 9)
    assert torch.allclose(clip.QuickGELU()(x), x * torch.sigmoid(1.702 * x))


# ---- loading and refusing files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["RN50", "ViT-B-16"])
def test_open_clip_state_dict_round_trip(tmp_path, arch):
    model = tiny(arch)
    path = tmp_path / "open_clip_pytorch_model.bin"
    backbones.save_checkpoint(model, path, "clip")
    saved = torch.load(path, weights_only=True)
    assert {"logit_scale", "positional_embedding", "token_embedding.weight", "ln_final.weight"} <= set(saved)
    assert saved["positional_embedding"].shape == (77, 8)  # the text tower's, beside visual.positional_embedding
    loaded = backbones.load_backbone(path, "clip", arch, **TINY[arch])
    x = image(model)
    assert not loaded.training and torch.equal(outputs(model, x), outputs(loaded, x))
    assert (loaded.arch, loaded.feature_dim, loaded.input_mean, loaded.input_std) == \
        (arch, 16, clip.CLIP_MEAN, clip.CLIP_STD)
    assert not backbones.is_torchscript_archive(path)
    backbones.save_checkpoint(tiny(arch), tmp_path / "again.bin", "clip")  # same weights, same bytes
    assert backbones.file_digest(path) == backbones.file_digest(tmp_path / "again.bin")


class WholeClip(nn.Module):
    """Stands in for OpenAI's scripted CLIP model: the image tower under ``visual``, text-tower entries beside it."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual
        self.positional_embedding = nn.Parameter(torch.zeros(77, 8))
        self.token_embedding = nn.Embedding(16, 8)
        self.logit_scale = nn.Parameter(torch.tensor(4.6))
        self.register_buffer("input_resolution", torch.tensor(visual.image_size))

    def forward(self, x):
        return self.visual(x)


@pytest.mark.parametrize("arch", ["RN50", "ViT-B-16"])
def test_openai_torchscript_archive_loads(tmp_path, arch):
    model = tiny(arch)
    with torch.no_grad():  # OpenAI's archives hold float16 weights: compare with the same values in float32
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    path = tmp_path / f"{arch}.pt"
    x = image(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation warnings, torch.load's TorchScript warning
        scripted = torch.jit.trace(WholeClip(copy.deepcopy(model)).eval(), x, check_trace=False)  # shares its tensors
        torch.jit.save(scripted.half(), str(path))
        with pytest.raises(RuntimeError, match="weights_only=True.*TorchScript"):
            torch.load(path, weights_only=True)  # why the archive needs torch.jit.load
    assert backbones.is_torchscript_archive(path)
    loaded = backbones.load_backbone(path, "clip", arch, **TINY[arch])
    assert next(loaded.parameters()).dtype == torch.float32
    assert torch.equal(outputs(model, x), outputs(loaded, x))
    with pytest.raises(CheckpointMismatch, match="is a TorchScript archive, not a torchvision weights file"):
        backbones.load_backbone(path, "torchvision", "resnet18", 8)


def test_wrong_arch_and_width_are_refused(tmp_path):
    backbones.save_checkpoint(tiny("ViT-B-16"), tmp_path / "vit.bin", "clip")
    with pytest.raises(CheckpointMismatch) as err:
        backbones.load_backbone(tmp_path / "vit.bin", "clip", "RN50", **TINY["RN50"])
    msg = str(err.value)
    assert "does not match RN50 (width 8)" in msg and "missing keys (attnpool." in msg
    assert "unexpected keys (class_embedding" in msg and "nothing was loaded" in msg
    with pytest.raises(CheckpointMismatch, match=r"class_embedding has shape \(32,\), expected \(48,\)"):
        backbones.load_backbone(tmp_path / "vit.bin", "clip", "ViT-B-16", **{**TINY["ViT-B-16"], "width": 48})
    with pytest.raises(CheckpointMismatch,  # a deeper tower than the file's
                       match=r"12 missing keys \(transformer.resblocks.2.attn.in_proj_bias, .*0 unexpected keys"):
        backbones.load_backbone(tmp_path / "vit.bin", "clip", "ViT-B-16", **{**TINY["ViT-B-16"], "layers": 3})
    with pytest.raises(ValueError, match="CLIP arch"):
        backbones.load_backbone(tmp_path / "vit.bin", "clip", "resnet50")
    with pytest.raises(TypeError, match="only apply to CLIP"):
        backbones.load_backbone(tmp_path / "vit.bin", "torchvision", "resnet18", 8, layers=2)
    with pytest.raises(ValueError, match="cannot be saved"):
        backbones.save_checkpoint(tiny("RN50"), tmp_path / "x.pth", "torchvision")
    with pytest.raises(ValueError, match="cannot be saved"):
        backbones.save_checkpoint(backbones.ResNet("resnet18", 8), tmp_path / "x.bin", "clip")


def test_partial_truncated_and_foreign_files_are_refused(tmp_path):
    model = tiny("RN50")
    backbones.save_checkpoint(model, tmp_path / "full.bin", "clip")
    state = torch.load(tmp_path / "full.bin", weights_only=True)
    dropped = ("visual.attnpool.c_proj.bias", "visual.layer2.0.downsample.0.weight")
    partial = {k: v for k, v in state.items() if k not in dropped}
    torch.save({**partial, "visual.head.weight": torch.zeros(3)}, tmp_path / "partial.bin")
    with pytest.raises(CheckpointMismatch) as err:
        backbones.load_backbone(tmp_path / "partial.bin", "clip", "RN50", **TINY["RN50"])
    msg = str(err.value)
    assert "2 missing keys (attnpool.c_proj.bias, layer2.0.downsample.0.weight)" in msg
    assert "1 unexpected keys (head.weight)" in msg
    (tmp_path / "truncated.bin").write_bytes((tmp_path / "full.bin").read_bytes()[:5000])
    with pytest.raises(CheckpointMismatch, match="cannot be read"):
        backbones.load_backbone(tmp_path / "truncated.bin", "clip", "RN50", **TINY["RN50"])
    with zipfile.ZipFile(tmp_path / "broken.pt", "w") as archive:  # a TorchScript layout torch.jit.load cannot read
        archive.writestr("RN50/constants.pkl", b"not a pickle")
        archive.writestr("RN50/data.pkl", b"nor this")
    with pytest.raises(CheckpointMismatch, match="cannot be read with torch.jit.load.*open_clip_pytorch_model.bin "
                                                 "from the Hugging Face hub repository timm/resnet50_clip.openai"):
        backbones.load_backbone(tmp_path / "broken.pt", "clip", "RN50", **TINY["RN50"])
    torch.save(model.state_dict(), tmp_path / "bare.bin")  # the tower without the whole model's visual. prefix
    with pytest.raises(CheckpointMismatch, match="no parameter starts with 'visual.'.*bare image tower"):
        backbones.load_backbone(tmp_path / "bare.bin", "clip", "RN50", **TINY["RN50"])
    backbones.save_checkpoint(backbones.ResNet("resnet18", 8), tmp_path / "tv.pth", "torchvision")
    with pytest.raises(CheckpointMismatch, match=r"no parameter starts with 'visual.' \(keys: bn1.bias"):
        backbones.load_backbone(tmp_path / "tv.pth", "clip", "RN50")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "epoch_3.pt")
    with pytest.raises(CheckpointMismatch, match="training checkpoint"):
        backbones.load_backbone(tmp_path / "epoch_3.pt", "clip", "RN50", **TINY["RN50"])
    nan = dict(state)
    nan["visual.attnpool.positional_embedding"] = torch.full_like(state["visual.attnpool.positional_embedding"],
                                                                   float("nan"))
    torch.save(nan, tmp_path / "nan.bin")
    with pytest.raises(CheckpointMismatch, match="non-finite"):
        backbones.load_backbone(tmp_path / "nan.bin", "clip", "RN50", **TINY["RN50"])
    with zipfile.ZipFile(tmp_path / "fake.pt", "w") as z:  # looks like TorchScript, is not
        z.writestr("fake/constants.pkl", b"not a pickle")
    with pytest.raises(CheckpointMismatch, match="TorchScript archive"):
        backbones.load_backbone(tmp_path / "fake.pt", "clip", "RN50", **TINY["RN50"])


@pytest.mark.parametrize("arch,hub,archive", [("RN50", "timm/resnet50_clip.openai", "RN50.pt"),
                                              ("ViT-B-16", "timm/vit_base_patch16_clip_224.openai", "ViT-B-16.pt")])
def test_missing_clip_checkpoint_says_which_file_from_where(tmp_path, arch, hub, archive):
    with pytest.raises(MissingCheckpoint) as err:
        backbones.load_backbone(tmp_path / "clip" / "open_clip_pytorch_model.bin", "clip", arch)
    msg = str(err.value)
    assert str(tmp_path / "clip") in msg and "No weights are downloaded at run time" in msg
    assert hub in msg and "open_clip_pytorch_model.bin" in msg and archive in msg
    assert hub in backbones.HOW_TO_GET["clip"]


def test_normalisation_constants_and_input_size():
    assert (backbones.ResNet.input_mean, backbones.ResNet.input_std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert clip.CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert clip.CLIP_STD == (0.26862954, 0.26130258, 0.27577711)
    for arch in TINY:
        model = tiny(arch)
        assert (model.input_mean, model.input_std) == (clip.CLIP_MEAN, clip.CLIP_STD)
        with pytest.raises(ValueError, match=f"takes {model.image_size}×{model.image_size} inputs"):
            model(torch.zeros(1, 3, model.image_size + 32, model.image_size + 32))


def test_towers_train_and_classify():
    """A Classifier on a CLIP tower trains like on the ResNet: gradients reach every parameter."""
    for arch in TINY:
        net = Classifier(tiny(arch), 3).train()
        x = image(net.backbone, n=4)
        loss = nn.functional.cross_entropy(net(x), torch.tensor([0, 1, 2, 0]))
        loss.backward()
        assert net.features(x).shape == (4, 16)
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters()), arch
