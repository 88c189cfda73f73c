"""The fixed-point chapter's experiment: the digit chapter's selected LP, FT, LP-FT and later-method models of each
seed deployed as :class:`~lpft.fixedpoint.network.FixedPointDigitNet` (one record per seed, :mod:`lpft.records`),
float and fixed point compared on ID, OOD and the natural shift, what each departure from F8Net is worth, and the
chapter's tables. The ImageNet network's models (:func:`lpft.protocol.imagenet_conditions`) are deployed the same way
as :class:`~lpft.fixedpoint.mobile.FixedPointLite0` (:func:`deploy_lite0_seed`).
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch

from lpft import finetune, protocol, verdict
from lpft.digits import DigitNet
from lpft.fixedpoint.mobile import FixedPointLite0
from lpft.fixedpoint.network import FixedPointDigitNet
from lpft.fixedpoint.qformat import dequantize
from lpft.records import code_fingerprint, parallel_map, run_once


# ---- the experiment: LP, FT, LP-FT and the later methods deployed in fixed point ------------------------------------

# the modules a deployment record depends on
DEPENDS = protocol.DEPENDS + ("fixedpoint.qformat", "fixedpoint.kernel", "fixedpoint.network", "fixedpoint.mobile",
                              "fixedpoint.deploy")


def _fixed_point_pass(fixed: FixedPointDigitNet, data) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer features (uint8 codes) of ``data``'s images and the predictions made from them."""
    with torch.no_grad():
        codes = fixed.integer_features(fixed.quantize_input(data.tensors[0]))
        return codes, fixed.integer_head(codes).argmax(1)


def _compare(pretrained: DigitNet, model: DigitNet, fixed: FixedPointDigitNet, data, codes: torch.Tensor,
             pred_fixed: torch.Tensor) -> dict:
    """Float vs fixed-point accuracy on ``data`` (``codes`` and ``pred_fixed`` from :func:`_fixed_point_pass`), the
    fraction of unchanged predictions, the feature change caused by quantisation and the one caused by fine-tuning
    (mean squared change of the penultimate features, ×100: the digit chapter's metric)."""
    x, y = data.tensors
    with torch.no_grad():
        model.eval()
        pred_float, f_float = model(x).argmax(1), model.features(x)
    f_fixed = dequantize(codes, fixed.fl_features)
    return {"float": (pred_float == y).double().mean().item(), "fixed": (pred_fixed == y).double().mean().item(),
            "agree": (pred_float == pred_fixed).double().mean().item(),
            "feature_change": 100.0 * ((f_fixed - f_float) ** 2).mean().item(),
            "tuning_change": finetune.feature_change(pretrained, model, data)}


# The departures from F8Net this module used before (pool, image) and F8Net's FL choice without PACT (activations):
# each deployed model is also run with one of them changed, to measure what it is worth.
VARIANTS = {"pool: 8-bit codes rounded again": {"pool": "twice"},
            "image: σ-rule FL": {"image": "sigma"},
            "activation FLs: grid search": {"activation_rule": "search"}}
BATCH = 64  # calibration batch for the per-batch FLs that F8Net's running average would see


def _activation_fls(fls: dict) -> list[int]:
    return [layer[k] for layer in fls["layers"] for k in ("fl_g", "fl_y") if k in layer] + [fls["features"]]


def _deviations(model: DigitNet, fixed: FixedPointDigitNet, calibration: torch.Tensor, splits: dict,
                codes: dict[str, torch.Tensor]) -> dict:
    """What the departures from F8Net are worth for one model: the fixed-point accuracy of each of :data:`VARIANTS`
    (ID and OOD; the pooling variant on every split); the fraction of pooled feature codes that differ when the last
    layer is requantised to 8 bits before the average (``pool="twice"``, same FLs; ``codes``: the faithful network's
    features per split); and the fraction of activation FLs that differ between the static calibration and the σ rule
    on single calibration batches of :data:`BATCH` images."""
    accuracy, codes_differ = {}, {}
    for name, kw in VARIANTS.items():
        net = FixedPointDigitNet(model, calibration, **kw)
        accuracy[name] = {}
        for split, data in splits.items():
            if kw.get("pool") == "twice" or split != "natural":
                variant_codes, pred = _fixed_point_pass(net, data)
                accuracy[name][split] = (pred == data.tensors[1]).double().mean().item()
                if kw.get("pool") == "twice":
                    codes_differ[split] = (variant_codes != codes[split]).double().mean().item()
    static = _activation_fls(fixed.fls())
    per_batch = [_activation_fls(FixedPointDigitNet(model, calibration[i:i + BATCH]).fls())
                 for i in range(0, len(calibration) - BATCH + 1, BATCH)]
    differ = sum(a != b for fls in per_batch for a, b in zip(fls, static)) / (len(per_batch) * len(static))
    return {"variants": accuracy, "pooled_codes_differ": codes_differ, "batch_fls_differ": differ}


def deploy_seed(setup: dict, seed: int, n_calibration: int, experiment: list[dict], cache: Path,
                models: Path | None = None) -> dict:
    """For the task of ``seed``: the model each method reports in the digit experiment ``experiment`` (its records,
    :func:`lpft.protocol.run_all`; read from the folder ``models`` where that run kept them, else trained again,
    :func:`lpft.protocol.selected_model`), converted to :class:`FixedPointDigitNet` calibrated on the first
    ``n_calibration`` ID training images; float and fixed point compared on ID test, OOD test (the setup's shift) and
    the natural shift alone (strength 0); :func:`_deviations` adds what each departure from F8Net is worth."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    pretrained = protocol.pretrained_model(setup, cache)
    task = protocol.make_task(setup, seed)
    splits = {"id": task.test_id, "ood": task.test_ood,
              "natural": protocol.make_task(setup, seed, strength=0.0).test_ood}
    calibration = task.train.tensors[0][:n_calibration]
    reported = {r["method"]: r["hp"] for r in protocol.selected_rows(experiment) if r["seed"] == seed}
    out = {}
    for name, hp in reported.items():
        model = protocol.selected_model(setup, seed, name, experiment, cache, models)
        fixed = FixedPointDigitNet(model, calibration)
        passes = {split: _fixed_point_pass(fixed, data) for split, data in splits.items()}
        out[name] = {"hp": hp, "fls": fixed.fls(),
                     **{split: _compare(pretrained, model, fixed, data, *passes[split])
                        for split, data in splits.items()},
                     "deviations": _deviations(model, fixed, calibration, splits,
                                               {split: p[0] for split, p in passes.items()})}
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


# Where the integer EfficientNet-Lite0 loses accuracy: its ID accuracy (on LOCALISE_IMAGES ID test images spread
# evenly over the test set, which is stored class by class: localisation_images)
# with the first k layers left in float (FixedPointLite0.simulate; k = 0 is the integer network itself), for these k
# and for every convolution in float (k = the number of layers: only the classifier in integers)
LOCALISE_LAYERS = (0, 1, 4, 8, 16)
LOCALISE_IMAGES = 256


def localisation_images(data) -> tuple[torch.Tensor, torch.Tensor]:
    """:data:`LOCALISE_IMAGES` images of ``data`` and their labels, evenly spaced through it (a digit test set is stored
    class by class, so its first images would be the first classes only)."""
    x, y = data.tensors
    idx = torch.linspace(0, len(y) - 1, min(LOCALISE_IMAGES, len(y))).round().long()
    return x[idx], y[idx]


def deploy_lite0_seed(setup: dict, seed: int, n_calibration: int, experiment: list[dict], cache: Path,
                      models: Path | None = None) -> dict:
    """:func:`deploy_seed` for the ImageNet network's models: each method's reported model of ``seed`` converted to
    :class:`~lpft.fixedpoint.mobile.FixedPointLite0` (BatchNorm folded, per-layer FLs by F8Net's σ rule) calibrated on
    the first ``n_calibration`` ID training images; float and integer accuracy and agreement on ID test, OOD test and
    the natural shift; and ``float_first``: the ID accuracy with the first k layers (:data:`LOCALISE_LAYERS`) left in
    float (and with every convolution in float), which says where the integer network loses."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    task = protocol.make_task(setup, seed)
    splits = {"id": task.test_id, "ood": task.test_ood,
              "natural": protocol.make_task(setup, seed, strength=0.0).test_ood}
    calibration = task.train.tensors[0][:n_calibration]
    reported = {r["method"]: r["hp"] for r in protocol.selected_rows(experiment) if r["seed"] == seed}
    out = {}
    for name, hp in reported.items():
        model = protocol.selected_model(setup, seed, name, experiment, cache, models).eval()
        fixed = FixedPointLite0(model, calibration)
        out[name] = {"hp": hp, "fls": fixed.fls()}
        for split, data in splits.items():
            x, y = data.tensors
            with torch.no_grad():
                pred_float = torch.cat([model(x[i:i + 256]) for i in range(0, len(x), 256)]).argmax(1)
                pred_fixed = torch.cat([fixed(x[i:i + 256]) for i in range(0, len(x), 256)]).argmax(1)
            out[name][split] = {"float": (pred_float == y).double().mean().item(),
                                "fixed": (pred_fixed == y).double().mean().item(),
                                "agree": (pred_float == pred_fixed).double().mean().item()}
        x, y = localisation_images(task.test_id)
        layers = [layer["name"] for layer in fixed.fls()]
        out[name]["float_first"] = {str(k): (fixed.simulate(x, layers[:k]).argmax(1) == y).double().mean().item()
                                    for k in (*LOCALISE_LAYERS, len(layers))}
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def _deploy_record(setup: dict, seed: int, folder: Path, n_calibration: int, experiment: list[dict], cache: Path,
                   models: Path | None) -> dict:
    reported = {r["method"]: r["hp"] for r in protocol.selected_rows(experiment) if r["seed"] == seed}
    config = {**setup, "seed": seed, "n_calibration": n_calibration, "reported": reported}
    deploy = deploy_lite0_seed if setup["pretraining"] == "imagenet" else deploy_seed
    return run_once(folder, config, lambda: deploy(setup, seed, n_calibration, experiment, cache, models),
                    name=f"seed{seed}", code=code_fingerprint(DEPENDS))


def deploy_all(setup: dict, seeds: list[int], folder: Path, *, experiment_folder: Path, cache: Path,
               models: Path | None = None, n_calibration: int = 512, jobs: int = 2) -> list[dict]:
    """One deployment record per seed in ``folder`` (read back when already computed), ``jobs`` processes at a time,
    of the digit experiment ``setup`` over ``seeds``, whose records are in ``experiment_folder`` (computed there by
    :func:`lpft.protocol.run_all` first if missing, with the backbone in ``cache`` and the fitted models in
    ``models``)."""
    experiment = protocol.run_all(setup, seeds, experiment_folder, cache=cache, models=models, jobs=jobs)
    return parallel_map(_deploy_record, [(setup, s, Path(folder), n_calibration, experiment, Path(cache), models)
                                         for s in seeds], jobs)


def archive_name(record: dict) -> str:
    """The file name of a deployment record in an archive (:func:`lpft.records.archive`): ``seed<seed>.json``."""
    return f"seed{record['config']['seed']}.json"


def deployment_table(records: list[dict]) -> pd.DataFrame:
    """One row per (seed, method, split): float and fixed-point accuracy (%), agreement (%), feature change."""
    rows = []
    for record in records:
        for method, r in record["results"].items():
            if method == "seconds":
                continue
            for split in ("id", "ood", "natural"):
                rows.append({"seed": record["config"]["seed"], "method": method, "split": split,
                             "float": 100 * r[split]["float"], "fixed": 100 * r[split]["fixed"],
                             "agree": 100 * r[split]["agree"], "feature_change": r[split]["feature_change"]})
    df = pd.DataFrame(rows)
    df["drop"] = df["float"] - df["fixed"]
    return df


def deployment_summary(records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """What the chapter concludes from a set of deployment records (live or archived).

    Returns: the summary table (per method and split: mean float and fixed-point accuracy, the mean drop with its
    90% interval over seeds, agreement, feature change by quantisation and by fine-tuning); the table of the paper's
    orderings checked in float and in fixed point; and the numbers behind them.
    """
    df = deployment_table(records)
    order = [m for m in finetune.METHODS if m in set(df["method"])]
    tuning = pd.DataFrame([{"method": m, "split": split, "tuning_change": r["results"][m][split]["tuning_change"]}
                           for r in records for m in order for split in ("id", "ood", "natural")])
    g = df.groupby(["method", "split"], sort=False)
    summary = pd.DataFrame({"float": g["float"].mean(), "float ±": g["float"].agg(verdict.interval90),
                            "fixed": g["fixed"].mean(), "fixed ±": g["fixed"].agg(verdict.interval90),
                            "drop": g["drop"].mean(), "drop ±": g["drop"].agg(verdict.interval90),
                            "agree": g["agree"].mean(), "feature change": g["feature_change"].mean(),
                            "tuning change": tuning.groupby(["method", "split"])["tuning_change"].mean()})
    summary = summary.reindex(pd.MultiIndex.from_product([order, ["id", "ood", "natural"]],
                                                         names=["method", "split"])).round(2)
    acc = df.pivot_table(index="seed", columns=["split", "method"], values=["float", "fixed"])
    n = len(records)

    def wins(kind: str, split: str, a: str, b: str) -> int:
        return int((acc[(kind, split, a)] > acc[(kind, split, b)]).sum())

    def same_ranking(split: str) -> int:
        rank = {k: acc[k][split][order].rank(axis=1, ascending=False, method="min") for k in ("float", "fixed")}
        return int((rank["float"] == rank["fixed"]).all(axis=1).sum())

    numbers = {"n": n, "lp_ood": {k: wins(k, "ood", "LP", "FT") for k in ("float", "fixed")},
               "ft_id": {k: wins(k, "id", "FT", "LP") for k in ("float", "fixed")},
               "same_rank": {s: same_ranking(s) for s in ("id", "ood")},
               "max_drop": float(summary["drop"].abs().max()),
               "change": df.groupby("split")["feature_change"].mean().to_dict(),
               "ft_tuning_change": summary.loc[("FT", "id"), "tuning change"], "summary": summary}
    checks = pd.DataFrame([
        ("LP beats FT out of distribution", f"{numbers['lp_ood']['float']}/{n}", f"{numbers['lp_ood']['fixed']}/{n}"),
        ("FT beats LP in distribution", f"{numbers['ft_id']['float']}/{n}", f"{numbers['ft_id']['fixed']}/{n}"),
        ("ranking of all methods unchanged by quantisation, ID", "—", f"{numbers['same_rank']['id']}/{n}"),
        ("ranking of all methods unchanged by quantisation, OOD", "—", f"{numbers['same_rank']['ood']}/{n}"),
    ], columns=["seeds where it holds", "float32", "fixed point"])
    return summary, checks, numbers


def deviation_table(records: list[dict]) -> pd.DataFrame:
    """One row per (seed, method, split) of the measured effect of each departure from F8Net (in %): the float and
    fixed-point accuracy, each :data:`VARIANTS` network's accuracy, the pooled feature codes that change when the last
    layer is requantised before the average, and the activation FLs that a single calibration batch would change."""
    rows = []
    for record in records:
        for method, r in record["results"].items():
            if method == "seconds":
                continue
            d = r["deviations"]
            for split in ("id", "ood", "natural"):
                rows.append({"seed": record["config"]["seed"], "method": method, "split": split,
                             "float": 100 * r[split]["float"], "fixed": 100 * r[split]["fixed"],
                             **{name: 100 * acc[split] for name, acc in d["variants"].items() if split in acc},
                             "pooled codes differ": 100 * d["pooled_codes_differ"][split],
                             "batch FLs differ": 100 * d["batch_fls_differ"]})
    return pd.DataFrame(rows)


def deviation_means(records: list[dict]) -> pd.DataFrame:
    """Per split (rows), the mean over methods and seeds of every column of :func:`deviation_table` (in %)."""
    return deviation_table(records).groupby("split").mean(numeric_only=True)


def variant_change(means: pd.DataFrame, variant: str, split: str) -> float:
    """The accuracy of the network with one departure from F8Net changed (``variant``, a key of :data:`VARIANTS`)
    minus the F8Net-faithful network's, on ``split``: means over methods and seeds (:func:`deviation_means`), in
    points."""
    return means.loc[split, variant] - means.loc[split, "fixed"]


def lite0_summary(records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the ImageNet network's deployment records (:func:`deploy_lite0_seed`) show: per method and split, mean
    float and integer accuracy (%) over seeds, the mean drop with its 90% interval and the agreement (%); and per
    method, the mean ID accuracy (%, :func:`localisation_images`) with the first k layers left in float
    (one column per k of :data:`LOCALISE_LAYERS`, and a last one with every convolution in float)."""
    rows = [{"seed": r["config"]["seed"], "method": m, "split": split, "float": 100 * v[split]["float"],
             "fixed": 100 * v[split]["fixed"], "agree": 100 * v[split]["agree"]}
            for r in records for m, v in r["results"].items() if m != "seconds" for split in ("id", "ood", "natural")]
    df = pd.DataFrame(rows).assign(drop=lambda d: d["float"] - d["fixed"])
    g = df.groupby(["method", "split"], sort=False)
    summary = pd.DataFrame({"float": g["float"].mean(), "fixed": g["fixed"].mean(), "drop": g["drop"].mean(),
                            "drop ±": g["drop"].agg(verdict.interval90), "agree": g["agree"].mean()}).round(2)
    local = pd.DataFrame([{"method": m, **{int(k): 100 * a for k, a in v["float_first"].items()}}
                          for r in records for m, v in r["results"].items() if m != "seconds"])
    local = local.groupby("method", sort=False).mean().round(1)
    return summary, local[sorted(local.columns)]   # the records store k as sorted strings: "0", "1", "16", "4"
