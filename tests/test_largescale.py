"""LP, FT and LP-FT at paper scale, on a tiny task: the LP head, frozen BatchNorm in LP-FT, epoch checkpoints that
resume bit-exactly on a CPU, and the GPU settings (bf16 autocast, channels-last) exercised on the CPU."""
import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from lpft import finetune
from lpft.scale import finetune as scale_finetune
from lpft.scale import imagedata, transforms
from lpft.scale.data import cifar
from lpft.task import predict
from lpft.scale.backbones import ResNet

RT = scale_finetune.Runtime(image_size=16, batch_size=16, eval_batch_size=64)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    cifar.write_synthetic_root(root, n_train=96, n_test=40, n_stl=30, n_c101=20, seed=2)
    return cifar.cifar_task(root, n_val=32)


def backbone(seed=0):
    torch.manual_seed(seed)
    return ResNet("resnet18", 4).eval()


def state_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_linear_probe_head_reproduces_sklearn_on_raw_features():
    rng = np.random.default_rng(0)
    f = torch.from_numpy(rng.normal(3.0, 2.0, (120, 6)))
    y = torch.from_numpy((f[:, 0] + 0.5 * f[:, 1] > 4.5).long().numpy() + 2 * (f[:, 2] > 3).long().numpy())
    probe = finetune.logistic_probe(f[:80], y[:80], [10.0, 0.01, 1.0], 5, f_val=f[80:], y_val=y[80:],
                                    max_iter=scale_finetune.LP_MAX_ITER)
    assert [row["C"] for row in probe.table] == [0.01, 1.0, 10.0]  # swept in ascending order (warm start)
    assert probe.table[[r["C"] for r in probe.table].index(probe.C)]["val_acc"] == max(r["val_acc"] for r in probe.table)
    # the un-normalised head on raw features gives sklearn's decision function on scalar-normalised features
    single = finetune.logistic_probe(f[:80], y[:80], [probe.C], 5, max_iter=scale_finetune.LP_MAX_ITER)
    mu, sigma = f[:80].double().mean().item(), f[:80].double().std(unbiased=False).item()
    clf = LogisticRegression(C=probe.C, max_iter=scale_finetune.LP_MAX_ITER).fit(((f[:80] - mu) / sigma).numpy(),
                                                                                   y[:80].numpy())
    expected = clf.decision_function(((f[80:] - mu) / sigma).numpy())
    assert np.allclose(single.logits(f[80:])[:, clf.classes_], expected, rtol=1e-9, atol=1e-9)
    assert np.all(probe.W[4] == 0) and probe.b[4] == 0  # class 4 never appears: a zero row


def test_lp_ft_starts_from_the_probe_and_keeps_batchnorm_statistics(task):
    bb = backbone()
    f_train, f_val = finetune.features(bb, task.train, RT), finetune.features(bb, task.val, RT)
    probe = finetune.logistic_probe(f_train, task.train.y, [0.1, 1.0], task.n_classes, f_val=f_val, y_val=task.val.y,
                                    max_iter=scale_finetune.LP_MAX_ITER)
    start = finetune.with_probe_head(bb, probe)
    with torch.no_grad():
        logits = start.eval()(RT.inputs(task.val.x)).double().numpy()
    assert np.allclose(logits, probe.logits(f_val), atol=1e-4)
    assert finetune.accuracy(start, task.val, RT) == pytest.approx(probe.accuracy(f_val, task.val.y))
    lpft, info = finetune.lp_ft(finetune.with_probe_head(bb, probe), task, lr=0.05, epochs=2, seed=0, feed=RT)
    ft, _ = finetune.fine_tune(bb, task, lr=0.05, epochs=2, seed=0, feed=RT)
    stats = [k for k in bb.state_dict() if "running_" in k]
    assert all(torch.equal(lpft.backbone.state_dict()[k], bb.state_dict()[k]) for k in stats)  # frozen statistics
    assert not all(torch.equal(ft.backbone.state_dict()[k], bb.state_dict()[k]) for k in stats)  # FT updates them
    assert not torch.equal(lpft.backbone.conv1.weight, bb.conv1.weight)  # but LP-FT trains the weights
    assert len(info["history"]) == 2 and 1 <= info["best_epoch"] <= 2


def test_fine_tuning_never_changes_the_pretrained_backbone(task):
    bb = backbone()
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    finetune.fine_tune(bb, task, lr=0.1, epochs=1, seed=0, feed=RT)
    assert all(torch.equal(before[k], v) for k, v in bb.state_dict().items())


def test_feature_change_is_zero_for_the_pretrained_model_and_positive_after_ft(task):
    bb = backbone()
    data = task.ood["STL-10"]
    pre = finetune.features(bb, data, RT)
    assert finetune.feature_change(pre, finetune.with_fresh_head(bb, 10, 0), data, RT) == 0.0
    ft, _ = finetune.fine_tune(bb, task, lr=0.1, epochs=1, seed=0, feed=RT)
    assert finetune.feature_change(pre, ft, data, RT) > 0


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("eval_mode, augment", [(False, "none"), (True, "none"), (False, "random-resized-crop"),
                                                (True, "random-crop")])
def test_a_killed_run_resumes_from_its_epoch_checkpoint_bit_exactly(task, tmp_path, eval_mode, augment):
    bb = backbone()
    rt = replace(RT, augment=augment, image_size=24)  # crops of 24 px out of the 32 px images

    def start():
        return finetune.with_fresh_head(bb, task.n_classes, seed=3)

    kwargs = dict(lr=0.05, epochs=4, seed=3, eval_mode=eval_mode, feed=rt)
    reference, ref_info = finetune.train(start(), task, **kwargs)

    def stop_after_two(epoch):
        if epoch == 2:
            raise Interrupt

    ckpt = tmp_path / "run.pt"
    with pytest.raises(Interrupt):
        finetune.train(start(), task, checkpoint=ckpt, on_epoch_end=stop_after_two, **kwargs)
    assert ckpt.exists() and [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary files left
    epochs_run = []
    resumed, info = finetune.train(start(), task, checkpoint=ckpt, on_epoch_end=epochs_run.append, **kwargs)
    assert epochs_run == [3, 4]  # only the missing epochs ran
    assert state_equal(resumed, reference) and info == ref_info
    with pytest.raises(RuntimeError, match="another run"):
        finetune.train(start(), task, checkpoint=ckpt, **{**kwargs, "lr": 0.1})


def test_early_stopping_keeps_the_best_validation_epoch(task):
    model, info = finetune.fine_tune(backbone(), task, lr=0.5, epochs=3, seed=1, feed=RT)
    vals = [h["val_acc"] for h in info["history"]]
    assert info["best_val"] == max(vals) and info["best_epoch"] == vals.index(max(vals)) + 1
    assert finetune.accuracy(model, task.val, RT) == pytest.approx(info["best_val"])
    assert [h["lr"] for h in info["history"]][0] == 0.5 and info["history"][1]["lr"] < 0.5  # cosine schedule


def test_bf16_autocast_and_channels_last_run_on_cpu(task):
    rt = scale_finetune.Runtime(image_size=16, batch_size=16, precision="bf16", channels_last=True)
    # torch 2.13's oneDNN bf16 CPU kernels return NaN now and then for the same inputs (about 1 call in 4 here, with
    # or without channels_last); PyTorch's native kernels are deterministic. The bf16 path is for GPUs.
    with torch.backends.mkldnn.flags(enabled=False):
        model, info = finetune.fine_tune(backbone(), task, lr=0.01, epochs=1, seed=0, feed=rt)
    assert np.isfinite(info["history"][0]["train_loss"]) and 0 <= info["best_val"] <= 1
    assert model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    bb = backbone()
    fp32 = finetune.features(bb, task.val, RT)
    cl = finetune.features(bb, task.val, scale_finetune.Runtime(image_size=16, channels_last=True, precision="bf16"))
    assert torch.allclose(fp32, cl, atol=1e-4)  # features are computed in float32 whatever the training precision
    assert scale_finetune.Runtime.for_device("cpu").precision == "fp32"
    with pytest.raises(ValueError, match="precision"):
        scale_finetune.Runtime(precision="fp16")


def test_accumulated_micro_batches_take_the_whole_batchs_step_when_batchnorm_is_frozen(task):
    bb = backbone()
    start = finetune.with_fresh_head(bb, task.n_classes, seed=0)
    whole, _ = finetune.train(copy.deepcopy(start), task, lr=0.05, epochs=2, seed=0, eval_mode=True, feed=RT)
    parts, _ = finetune.train(copy.deepcopy(start), task, lr=0.05, epochs=2, seed=0, eval_mode=True,
                              feed=replace(RT, accumulate=4))
    a, b = whole.state_dict(), parts.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=2e-5) for k in a)
    assert not state_equal(whole, start)
    with pytest.raises(ValueError, match="accumulate"):
        scale_finetune.Runtime(batch_size=16, accumulate=3)
    with pytest.raises(ValueError, match="augment"):
        scale_finetune.Runtime(augment="mixup")


def test_calibrated_batchnorm_holds_the_statistics_of_the_data(task):
    bb = backbone()
    rt = replace(RT, eval_batch_size=len(task.train))  # one batch: the running statistics are its own
    scale_finetune.calibrate_batchnorm(bb, task.train, rt)
    assert not bb.training and bb.bn1.momentum == 0.1
    with torch.no_grad():
        z = bb.conv1(rt.inputs(task.train.x))
    assert torch.allclose(bb.bn1.running_mean, z.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(bb.bn1.running_var, z.var((0, 2, 3), unbiased=True), rtol=1e-4)


def test_lp_features_of_an_augmented_view_are_fixed_by_the_seed(task):
    bb, rt = backbone(), replace(RT, augment="random-resized-crop")
    draw = lambda seed: rt.crops(task.train, transforms.augmentation_generator(seed, 2))  # noqa: E731
    plain = finetune.features(bb, task.train, rt)
    view0, again, view1 = (finetune.features(bb, task.train, rt, draw(s)) for s in (0, 0, 1))
    assert torch.equal(view0, again) and not torch.allclose(view0, view1) and not torch.allclose(view0, plain)
    assert RT.crops(task.train, transforms.augmentation_generator(0, 2)) is None  # no augmentation: no draws


def test_l2_sp_without_weight_is_ft_and_with_weight_stays_closer_to_the_pretrained_backbone(task):
    bb = backbone()
    ft, _ = finetune.fine_tune(bb, task, lr=0.2, epochs=2, seed=4, feed=RT)
    free, _ = finetune.l2_sp(bb, task, weight=0.0, lr=0.2, epochs=2, seed=4, feed=RT)
    tied, _ = finetune.l2_sp(bb, task, weight=5.0, lr=0.2, epochs=2, seed=4, feed=RT)
    assert state_equal(free, ft)  # the penalty term is the only difference

    def distance(model):
        return sum(((p - p0) ** 2).sum().item() for p, p0 in zip(model.backbone.parameters(), bb.parameters()))

    assert distance(tied) < 0.5 * distance(ft)


def test_wise_ft_interpolates_every_weight_between_the_lp_and_ft_models(task):
    bb = backbone()
    f_train, f_val = finetune.features(bb, task.train, RT), finetune.features(bb, task.val, RT)
    lp = finetune.with_probe_head(bb, finetune.logistic_probe(f_train, task.train.y, [1.0], task.n_classes,
                                                              max_iter=scale_finetune.LP_MAX_ITER))
    ft, _ = finetune.fine_tune(bb, task, lr=0.1, epochs=1, seed=0, feed=RT)
    def floats_equal(a, b):  # integer buffers (BatchNorm's batch counters) are the LP model's, unused in eval()
        sa, sb = a.state_dict(), b.state_dict()
        return all(torch.equal(sa[k], sb[k]) for k in sa if sa[k].is_floating_point())

    assert floats_equal(finetune.wise_ft(lp, ft, 0.0), lp) and floats_equal(finetune.wise_ft(lp, ft, 1.0), ft)
    half = finetune.wise_ft(lp, ft, 0.5).state_dict()
    a, b = lp.state_dict(), ft.state_dict()
    assert torch.allclose(half["head.weight"], (a["head.weight"] + b["head.weight"]) / 2)
    assert torch.allclose(half["backbone.bn1.running_var"], (a["backbone.bn1.running_var"] +
                                                             b["backbone.bn1.running_var"]) / 2)
    with pytest.raises(ValueError, match="alpha"):
        finetune.wise_ft(lp, ft, 1.5)


def test_sgd_probe_separates_separable_features_and_keeps_its_best_epoch():
    g = torch.Generator().manual_seed(0)
    centres = 4.0 * torch.eye(5, 8)  # five classes, far apart in an 8-d feature space
    y = torch.arange(200) % 5
    f = centres[y] + 0.3 * torch.randn(200, 8, generator=g)
    yv = torch.arange(50) % 5
    fv = centres[yv] + 0.3 * torch.randn(50, 8, generator=g)
    probe = scale_finetune.sgd_probe(f, y, fv, yv, 7, epochs=4, lr=0.1, batch_size=16, seed=3)
    assert probe.C is None and probe.W.shape == (7, 8) and [r["epoch"] for r in probe.table] == [1, 2, 3, 4]
    assert probe.accuracy(fv, yv) == max(r["val_acc"] for r in probe.table) == 1.0
    again = scale_finetune.sgd_probe(f, y, fv, yv, 7, epochs=4, lr=0.1, batch_size=16, seed=3)
    assert np.array_equal(probe.W, again.W)  # the seed fixes the initialisation and the batch order
    other = scale_finetune.sgd_probe(f, y, fv, yv, 7, epochs=4, lr=0.1, batch_size=16, seed=4)
    assert not np.array_equal(probe.W, other.W)


def test_a_set_covering_some_classes_is_scored_over_those_classes_only():
    logits = torch.tensor([[5.0, 1.0, 2.0, 0.0], [0.0, 3.0, 1.0, 4.0], [1.0, 0.0, 0.0, 2.0]])
    assert predict(logits).tolist() == [0, 3, 3]
    assert predict(logits, (1, 2)).tolist() == [2, 1, 1]  # the argmax among classes 1 and 2
    assert predict(logits.numpy(), (1, 2)).tolist() == [2, 1, 1]
    y = torch.tensor([2, 1, 2])
    probe = finetune.Probe(None, np.eye(4), np.zeros(4), [])
    assert probe.accuracy(logits, y) == 0.0 and probe.accuracy(logits, y, (1, 2)) == pytest.approx(2 / 3)
    data = imagedata.ImageSet(torch.zeros(3, 3, 4, 4, dtype=torch.uint8), y, classes=(2, 1))
    assert data.classes == (2, 1) and data.subset(2).classes == (2, 1) and data.hold_out(1, 0)[1].classes == (2, 1)
    with pytest.raises(ValueError, match="not among its classes"):
        imagedata.ImageSet(torch.zeros(3, 3, 4, 4, dtype=torch.uint8), y, classes=(0, 1))
