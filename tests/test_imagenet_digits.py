"""EfficientNet-Lite0 (ImageNet weights) through the digit protocol and the integer-only deployment, on a tiny
configuration: 3 labels per class, one epoch, R = 32."""
from types import SimpleNamespace

import pytest
import torch

from lpft import finetune, protocol
from lpft.fixedpoint import deploy


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imagenet")
    cfg = SimpleNamespace(resolution=32, epochs=1, lp_C=(1.0,), ft_lr=(1e-3,), lpft_lr=(1e-4,))
    setup = {**protocol.imagenet_conditions(cfg), "n_train_per_class": 3}
    records = protocol.run_all(setup, [0], folder / "results", cache=folder, models=folder / "models", jobs=1)
    return setup, records, folder


def test_the_protocol_runs_on_efficientnet(tiny):
    """LP, FT and LP-FT rows; LP measured on the frozen features equals the whole model; the feature change is
    measured against the pretrained network (zero for the network itself)."""
    setup, (record,), folder = tiny
    assert setup["methods"] == ["LP", "FT", "LP-FT"] and setup["pretraining"] == "imagenet"
    net = protocol.pretrained_model(setup, folder)
    assert net.backbone.resolution == 32 and net.backbone.feature_dim == 1280
    rows = record["results"]["rows"]
    assert [row["method"] for row in rows] == ["LP", "FT", "LP-FT"]
    assert all(set(row["ood"]) == {"none@0", "invert@1"} for row in rows)
    assert all(row["feature_change"]["id"] > 0 for row in rows[1:])
    task = protocol.make_task(setup, 0)
    lp = protocol.selected_model(setup, 0, "LP", [record], folder, folder / "models")
    assert finetune.accuracy(lp, task.test_id) == rows[0]["id"]
    assert finetune.feature_change(net, net, task.test_id) == 0.0


def test_the_models_deploy_integer_only(tiny, tmp_path):
    """Each reported model deployed as FixedPointLite0: float accuracy as the protocol measured it, the integer
    network's accuracy and agreement, and the localisation with k = 0 equal to the integer network on those images."""
    setup, records, folder = tiny
    (out,) = deploy.deploy_all(setup, [0], tmp_path, experiment_folder=folder / "results", cache=folder,
                               models=folder / "models", n_calibration=16, jobs=1)
    rows = {row["method"]: row for row in records[0]["results"]["rows"]}
    task = protocol.make_task(setup, 0)
    n = deploy.LOCALISE_IMAGES
    for method in ("LP", "FT", "LP-FT"):
        r = out["results"][method]
        assert r["id"]["float"] == pytest.approx(rows[method]["id"], abs=1e-12)
        assert 0 <= r["id"]["fixed"] <= 1 and 0 <= r["ood"]["agree"] <= 1
        assert set(r["float_first"]) == {str(k) for k in deploy.LOCALISE_LAYERS} | {str(len(r["fls"]))}
        model = protocol.selected_model(setup, 0, method, records, folder, folder / "models")
        fixed = deploy.FixedPointLite0(model, task.train.tensors[0][:16])
        x, y = deploy.localisation_images(task.test_id)
        assert len(y) == n and set(y.tolist()) == set(range(10))  # every class, although the set is stored by class
        with torch.no_grad():
            assert r["float_first"]["0"] == (fixed(x).argmax(1) == y).double().mean().item()
    summary, local = deploy.lite0_summary([out])
    assert list(local.columns) == [*deploy.LOCALISE_LAYERS, len(r["fls"])]
    assert set(summary.index.get_level_values(0)) == set(rows)
