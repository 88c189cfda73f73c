"""One Task, one Classifier, one training loop and one set of measurements for both scales: the digit chapters'
TensorDataset tasks (the default Feed) and the paper-scale ImageSet tasks (lpft.scale.finetune.Runtime)."""
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.utils.data import TensorDataset

from lpft import digits, finetune
from lpft.scale import finetune as scale_finetune
from lpft.scale import imagedata
from lpft.task import Classifier, Feed, Task

N = 4  # classes


def images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, 3, 8, 8) images: class c brightens quadrant c."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % N
    x = 100 * torch.rand(n, 3, 8, 8, generator=g)
    for i in range(n):
        r, c = divmod(int(y[i]), 2)
        x[i, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 120
    return x.round().to(torch.uint8), y


def tasks() -> tuple[Task, Task]:
    """The same task twice: as ImageSets (uint8, paper scale) and as TensorDatasets of the float inputs."""
    sets = {name: images(n, s) for name, n, s in (("train", 150, 1), ("val", 40, 2), ("test", 40, 3), ("ood", 30, 4))}
    image = {k: imagedata.ImageSet(x, y) for k, (x, y) in sets.items()}
    tensor = {k: TensorDataset(x.float().div_(255.0), y) for k, (x, y) in sets.items()}
    return tuple(Task("quadrants", s["train"], s["val"], s["test"], {"shifted": s["ood"]}, N) for s in (image, tensor))


class Tiny(nn.Sequential):
    feature_dim = 6

    def __init__(self):
        super().__init__(nn.Conv2d(3, 6, 3, padding=1), nn.GroupNorm(2, 6), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())


@dataclass(frozen=True)
class SameOrder(Feed):
    """The default feed with the paper-scale batch order (fixed by (seed, epoch))."""

    def order(self, n, seed, epoch, generator):
        return scale_finetune.batch_order(n, seed, epoch)


RUNTIME = scale_finetune.Runtime(image_size=8, batch_size=32, eval_batch_size=1024, mean=(0, 0, 0), std=(1, 1, 1))


def test_one_loop_trains_a_tensor_task_and_an_image_task_to_the_same_weights():
    image_task, tensor_task = tasks()
    torch.manual_seed(0)
    backbone = Tiny()
    runs = {}
    for name, task, feed in (("image", image_task, RUNTIME), ("tensor", tensor_task, SameOrder(batch_size=32))):
        model, info = finetune.fine_tune(backbone, task, lr=0.1, epochs=3, seed=2, feed=feed)
        runs[name] = (model, info, finetune.accuracy(model, task.test_ood, feed),
                      finetune.feature_change(backbone, model, task.test_id, feed))
    (a, info_a, ood_a, fc_a), (b, info_b, ood_b, fc_b) = runs["image"], runs["tensor"]
    assert isinstance(a, Classifier) and a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert info_a == info_b and ood_a == ood_b and fc_a == fc_b > 0
    assert len(info_a["history"]) == 3 and info_a["best_val"] == max(h["val_acc"] for h in info_a["history"])


def test_the_default_feed_resumes_from_an_epoch_checkpoint_bit_exactly(tmp_path):
    """The digit batch order (one generator seeded by the seed) continues where the checkpoint left it."""
    _, task = tasks()
    torch.manual_seed(0)
    backbone = Tiny()
    kwargs = dict(lr=0.1, epochs=4, seed=5, feed=Feed(batch_size=32))
    reference, ref_info = finetune.fine_tune(backbone, task, **kwargs)

    def stop_after_two(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    ckpt = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        finetune.fine_tune(backbone, task, checkpoint=ckpt, on_epoch_end=stop_after_two, **kwargs)
    ran = []
    resumed, info = finetune.fine_tune(backbone, task, checkpoint=ckpt, on_epoch_end=ran.append, **kwargs)
    assert ran == [3, 4] and info == ref_info
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in reference.state_dict().items())


def test_digitnet_is_the_classifier_over_the_digit_backbone_with_unchanged_keys():
    keys = {"none": [f"backbone.{b}.{i}.{p}" for b, idx in (("first", (0, 2)), ("middle", (0, 2)), ("last", (0,)))
                     for i in idx for p in ("weight", "bias")],
            "group": [f"backbone.{b}.{i}.{p}" for b, idx in (("first", (0, 1, 3, 4)), ("middle", (0, 1, 3, 4)),
                                                              ("last", (0, 1))) for i in idx for p in ("weight", "bias")]}
    for norm, expected in keys.items():
        net = digits.DigitNet(10, norm)
        assert isinstance(net, Classifier) and net.norm == norm and net.backbone.feature_dim == digits.FEATURE_DIM
        assert list(net.state_dict()) == expected + ["head.weight", "head.bias"]
        x = torch.rand(3, 1, 8, 8)
        assert torch.equal(net.features(x), net.backbone(x)) and net(x).shape == (3, 10)
    torch.manual_seed(0)  # the same initialisation as the network written out before (convolutions, then the head)
    a = digits.DigitNet(10, "group")
    torch.manual_seed(0)
    b = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1))
    assert torch.equal(a.backbone.first[0].weight, b[0].weight)


def test_a_task_has_named_ood_sets_and_test_ood_only_when_there_is_one():
    image_task, tensor_task = tasks()
    assert tensor_task.test_ood is tensor_task.ood["shifted"]
    two = Task("two", *[getattr(image_task, k) for k in ("train", "val", "test_id")],
               {"a": image_task.test_ood, "b": image_task.test_ood}, N)
    with pytest.raises(ValueError, match="2 OOD sets"):
        two.test_ood
    task = digits.make_task(n_train_per_class=5, seed=0)
    assert list(task.ood) == ["uci"] and task.n_classes == 10 and task.config["seed"] == 0


def test_one_lp_for_both_scales():
    """One C, max_iter 1000 (the digit chapter): scikit-learn's fit, un-normalised; several Cs warm-start (paper
    scale) and need ID-val."""
    rng = np.random.default_rng(1)
    f = torch.from_numpy(rng.normal(2.0, 3.0, (90, 5)))
    y = torch.from_numpy(rng.integers(0, 3, 90))
    probe = finetune.logistic_probe(f, y, [0.3], 4)
    fn = f.numpy()
    mu, sigma = float(fn.mean()), float(fn.std())  # one scalar mean and std over the whole feature matrix
    clf = LogisticRegression(C=0.3, max_iter=1000).fit((fn - mu) / sigma, y.numpy())
    W, b = finetune.probe_weights(clf, mu, sigma, 4)
    assert np.array_equal(probe.W, W) and np.array_equal(probe.b, b) and probe.C == 0.3
    with pytest.raises(ValueError, match="ID-val"):
        finetune.logistic_probe(f, y, [0.1, 1.0], 4)
    # the model-level LP is this probe's head on a copy of the network
    _, task = tasks()
    torch.manual_seed(0)
    pre = Classifier(Tiny(), N)
    lp = finetune.linear_probe(pre, task, 0.5)
    f_train = finetune.features(pre, task.train)
    head = finetune.logistic_probe(f_train, task.train.tensors[1], [0.5], N)
    assert torch.equal(lp.head.weight, torch.from_numpy(head.W).float()) and finetune.feature_change(pre, lp,
                                                                                                     task.val) == 0.0
    # the feature change from precomputed features is the same number
    ft, _ = finetune.fine_tune(pre, task, lr=0.1, epochs=1, seed=0)
    before = finetune.features(pre, task.val)
    assert finetune.feature_change(before, ft, task.val) == finetune.feature_change(pre, ft, task.val) > 0
