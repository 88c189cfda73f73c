"""Backbones load from local torchvision and MoCo-v2 checkpoint files, and wrong or partial files are refused."""
import pickle

import pytest
import torch

from lpft.scale import backbones
from lpft.scale.backbones import CheckpointMismatch, MissingCheckpoint, ResNet


def small(seed=0, width=8):
    torch.manual_seed(seed)
    return ResNet("resnet18", width).eval()


def same_outputs(a, b):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_architecture_matches_torchvision_resnets():
    # torchvision's published parameter counts minus their 1000-way fc: resnet50 25,557,032 - 2,049,000;
    # resnet18 11,689,512 - 513,000; and torchvision's state_dict names (fc excluded)
    r50, r18 = ResNet("resnet50"), ResNet("resnet18")
    assert sum(p.numel() for p in r50.parameters()) == 25_557_032 - 2_049_000
    assert sum(p.numel() for p in r18.parameters()) == 11_689_512 - 513_000
    assert len(r50.state_dict()) == 318 and r50.feature_dim == 2048 and r18.feature_dim == 512
    keys = set(r50.state_dict())
    assert {"conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight", "layer4.2.bn3.num_batches_tracked",
            "layer3.5.conv2.weight"} <= keys
    assert r50.layer2[0].conv2.stride == (2, 2) and r50.layer2[0].conv1.stride == (1, 1)  # v1.5: stride on the 3x3
    assert r50(torch.zeros(1, 3, 64, 64)).shape == (1, 2048)


def test_torchvision_state_dict_round_trip_resnet50(tmp_path):
    torch.manual_seed(0)
    model = ResNet("resnet50").eval()
    path = tmp_path / "resnet50.pth"
    backbones.save_checkpoint(model, path, "torchvision")
    saved = torch.load(path, weights_only=True)
    assert saved["fc.weight"].shape == (1000, 2048)  # the file has torchvision's classifier; loading drops it
    loaded = backbones.load_backbone(path, "torchvision", "resnet50")
    assert not loaded.training and same_outputs(model, loaded)


def test_torchvision_file_without_num_batches_tracked_loads(tmp_path):
    model = small()
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    assert same_outputs(model, backbones.load_backbone(tmp_path / "old.pth", "torchvision", "resnet18", 8))


def test_moco_checkpoint_uses_the_query_encoder(tmp_path):
    query, key = small(0), small(1)
    state = {**{f"module.encoder_q.{k}": v for k, v in query.state_dict().items()},
             **{f"module.encoder_k.{k}": v for k, v in key.state_dict().items()},
             "module.encoder_q.fc.0.weight": torch.zeros(64, 64), "module.encoder_q.fc.2.bias": torch.zeros(128),
             "module.queue": torch.zeros(128, 4), "module.queue_ptr": torch.zeros(1, dtype=torch.long)}
    torch.save({"epoch": 800, "arch": "resnet18", "state_dict": state, "optimizer": {}}, tmp_path / "moco.pth.tar")
    loaded = backbones.load_backbone(tmp_path / "moco.pth.tar", "moco_v2", "resnet18", 8)
    assert same_outputs(query, loaded) and not same_outputs(key, loaded)
    backbones.save_checkpoint(query, tmp_path / "written.pth.tar", "moco_v2")  # the library's writer, same format
    assert same_outputs(query, backbones.load_backbone(tmp_path / "written.pth.tar", "moco_v2", "resnet18", 8))


def test_partial_or_foreign_checkpoints_are_refused_with_counts(tmp_path):
    state = small().state_dict()
    partial = {k: v for k, v in state.items() if k not in ("layer4.1.conv2.weight", "bn1.weight", "conv1.weight")}
    torch.save({**partial, "extra.weight": torch.zeros(1)}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointMismatch) as err:
        backbones.load_backbone(tmp_path / "partial.pth", "torchvision", "resnet18", 8)
    assert "3 missing keys" in str(err.value) and "1 unexpected keys" in str(err.value)
    assert "layer4.1.conv2.weight" in str(err.value)
    with pytest.raises(CheckpointMismatch, match="missing keys"):  # a ResNet-18 file is not a ResNet-50
        torch.save(state, tmp_path / "r18.pth")
        backbones.load_backbone(tmp_path / "r18.pth", "torchvision", "resnet50", 8)
    with pytest.raises(CheckpointMismatch, match="shape"):  # another width
        backbones.load_backbone(tmp_path / "r18.pth", "torchvision", "resnet18", 16)
    with pytest.raises(CheckpointMismatch, match="source='moco_v2'"):
        torch.save({"state_dict": state}, tmp_path / "wrapped.pth")
        backbones.load_backbone(tmp_path / "wrapped.pth", "torchvision", "resnet18", 8)
    with pytest.raises(CheckpointMismatch, match="encoder_q"):
        torch.save({"state_dict": state}, tmp_path / "notmoco.pth.tar")
        backbones.load_backbone(tmp_path / "notmoco.pth.tar", "moco_v2", "resnet18", 8)


def test_non_finite_weights_and_pickled_code_are_refused(tmp_path):
    state = small().state_dict()
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(CheckpointMismatch, match="non-finite"):
        backbones.load_backbone(tmp_path / "nan.pth", "torchvision", "resnet18", 8)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "code.pth").write_bytes(pickle.dumps(Exploit(), protocol=2))
    with pytest.raises(CheckpointMismatch, match="weights-only"):
        backbones.load_backbone(tmp_path / "code.pth", "torchvision", "resnet18", 8)
    assert not marker.exists()


def test_missing_checkpoint_says_what_to_put_where(tmp_path):
    with pytest.raises(MissingCheckpoint) as err:
        backbones.load_backbone(tmp_path / "moco_v2_800ep_pretrain.pth.tar", "moco_v2")
    assert "moco_v2_800ep_pretrain.pth.tar" in str(err.value) and str(tmp_path) in str(err.value)
    with pytest.raises(ValueError, match="CLIP"):
        backbones.load_backbone(tmp_path / "x", "clip")


def test_saved_files_are_byte_identical_for_identical_weights(tmp_path):
    backbones.save_checkpoint(small(3), tmp_path / "a.pth.tar", "moco_v2")
    backbones.save_checkpoint(small(3), tmp_path / "b.pth.tar", "moco_v2")
    backbones.save_checkpoint(small(4), tmp_path / "c.pth.tar", "moco_v2")
    digest = backbones.file_digest
    assert digest(tmp_path / "a.pth.tar") == digest(tmp_path / "b.pth.tar") != digest(tmp_path / "c.pth.tar")
