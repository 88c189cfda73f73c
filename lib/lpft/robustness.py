"""How robust the digit chapter's result is: three studies of LP, FT and LP-FT under the paper's conditions.

Each varies one condition of the LP-FT paper's claim (Kumar et al., ICLR 2022; Sections 1 and 4 of its ICLR
submission) and keeps the rest of the digit protocol (:mod:`lpft.protocol`: hyperparameters selected on ID-val
only, seeds in parallel, one record per seed):

* **pretraining**: the supervised backbone (:func:`lpft.protocol.pretrained_model`) against SimCLR-style contrastive
  pretraining on the same pool with labels unused (:func:`lpft.pretrain.contrastive`);
* **fewer ID labels**: ``n_train_per_class`` labelled MNIST images per class (a common expectation, not a claim of the
  paper: LP might do relatively better with less data);
* **other shift kinds**: the selected models of each seed evaluated on UCI under every kind of
  :func:`lpft.digits.apply_shift` (inversion, rotation, thicker or thinner strokes, blur) at several strengths.
  Training never sees the OOD set, so the same models serve every shift.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd
import torch

from lpft import digits, finetune, paper, pretrain, protocol
from lpft.records import code_fingerprint, parallel_map, run_once

# The modules a record depends on (see lpft.records.code_fingerprint).
DEPENDS = protocol.DEPENDS + ("robustness",)
EVAL_SHIFTS = (("none", 0.0), ("invert", 1.0), ("rotate", 0.5), ("rotate", 1.0), ("thicken", 0.5),
               ("thicken", 1.0), ("thin", 0.5), ("thin", 1.0), ("blur", 0.5), ("blur", 1.0))
MAIN_SHIFT = "invert@1"  # the digit chapter's large shift


def shift_key(kind: str, strength: float) -> str:
    return f"{kind}@{float(strength):g}"


def base_setup(cfg) -> dict:
    """The digit chapter's "paper's conditions" (:func:`lpft.protocol.paper_conditions` of its settings ``cfg``),
    restricted to LP, FT and LP-FT."""
    return {**protocol.paper_conditions(cfg), "methods": list(paper.METHODS)}


def variant(base: dict, label: str, *, pretraining: str = "supervised", contrastive_options: dict | None = None,
            n_train_per_class: int | None = None, eval_shifts=EVAL_SHIFTS) -> dict:
    """A setup of one study: ``base`` with a backbone (``"supervised"`` or ``"contrastive"`` with
    ``contrastive_options`` for :func:`lpft.pretrain.contrastive`), a number of labels per class (None: all) and the
    OOD shifts to evaluate. ``label`` names the variant in tables."""
    if pretraining not in ("supervised", "contrastive"):
        raise ValueError(f"pretraining must be 'supervised' or 'contrastive'; got {pretraining!r}")
    if pretraining == "supervised" and contrastive_options:
        raise ValueError("contrastive_options only apply to pretraining='contrastive'")
    return {**base, "label": label, "pretraining": pretraining,
            "contrastive": dict(contrastive_options or {}) if pretraining == "contrastive" else None,
            "n_train_per_class": n_train_per_class, "eval_shifts": [[k, float(s)] for k, s in eval_shifts]}


def backbone(setup: dict, cache: Path) -> digits.DigitNet:
    """The pretrained backbone of ``setup``, trained once and then read back from the folder ``cache``."""
    if setup["pretraining"] == "supervised":
        return protocol.pretrained_model(setup, cache)
    pool = digits.pretraining_pool(include_shifts=tuple(tuple(s) for s in setup["pool_shifts"]))
    return pretrain.contrastive(pool, cache_dir=cache, seed=setup["pretrain_seed"], norm=setup["norm"],
                                **setup["contrastive"])


def run_seed(setup: dict, seed: int, cache: Path, models: Path | None = None) -> dict:
    """LP, FT and LP-FT on the task of ``seed`` (hyperparameters selected on ID-val): selected hps, ID-val, ID-test
    and OOD accuracy under every shift of ``setup["eval_shifts"]``, the feature change of FT and LP-FT on ID-test
    inputs, the train-set size and the compute time in seconds. With a folder ``models`` the selected models are read
    from (or kept in) it (:func:`lpft.protocol.select_models`): the supervised variant reuses the digit chapter's."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    pretrained = backbone(setup, cache)
    _, task, chosen, hps, _ = protocol.select_models(setup, seed, pretrained, models)
    ood = {shift_key(k, s): protocol.make_task({**setup, "shift": k}, seed, strength=s).test_ood
           for k, s in setup["eval_shifts"]}
    out = {}
    for name in paper.METHODS:
        model = chosen[name]
        out[name] = {"hp": hps[name], "val": finetune.accuracy(model, task.val),
                     "id": finetune.accuracy(model, task.test_id),
                     "ood": {key: finetune.accuracy(model, data) for key, data in ood.items()}}
        if name != "LP":
            out[name]["feature_change"] = finetune.feature_change(pretrained, model, task.test_id)
    out["n_train"] = len(task.train)
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def _record(setup: dict, seed: int, folder: Path, cache: Path, models: Path | None) -> dict:
    name = f"{setup['pretraining']}-n{setup['n_train_per_class'] or 'all'}-seed{seed}"
    return run_once(folder, {**setup, "seed": seed}, lambda: run_seed(setup, seed, cache, models), name=name,
                    code=code_fingerprint(DEPENDS))


def run_all(setups: list[dict], seeds: list[int], folder: Path, *, cache: Path, models: Path | None = None,
            jobs: int = 2) -> list[dict]:
    """One record per (setup, seed) in ``folder`` (finished ones are read back), ``jobs`` processes at a time.
    Each backbone is pretrained once, in this process, before the workers start (they read it from ``cache``); the
    selected models are kept in the folder ``models`` (None: not kept)."""
    for setup in setups:
        backbone(setup, cache)
    return parallel_map(_record, [(s, seed, Path(folder), Path(cache), models) for s in setups for seed in seeds],
                        jobs=jobs)


# ---- tables -------------------------------------------------------------------------------------------------------

def long_table(records: list[dict]) -> pd.DataFrame:
    """One row per (variant, seed, method, OOD shift): ID-val, ID-test and OOD accuracy in %, labels per class."""
    rows = []
    for record in records:
        c, r = record["config"], record["results"]
        for method in paper.METHODS:
            for shift, acc in r[method]["ood"].items():
                rows.append({"variant": c["label"], "pretraining": c["pretraining"], "seed": c["seed"],
                             "labels per class": r["n_train"] // digits.N_CLASSES, "method": method, "shift": shift,
                             "val": 100 * r[method]["val"], "ID": 100 * r[method]["id"], "OOD": 100 * acc})
    return pd.DataFrame(rows)


def gap_summary(long: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per value of column ``by``: mean ID and OOD accuracy of LP, FT and LP-FT over seeds (%), the mean FT − LP OOD
    gap with its 90% interval half-width (:func:`lpft.protocol.interval90`), and in how many seeds LP beats FT OOD."""
    rows = []
    for value, g in long.groupby(by, sort=False):
        wide = g.pivot(index="seed", columns="method", values=["ID", "OOD"])
        gap = wide[("OOD", "FT")] - wide[("OOD", "LP")]
        row = {by: value}
        for m in paper.METHODS:
            row[f"{m} ID"], row[f"{m} OOD"] = wide[("ID", m)].mean(), wide[("OOD", m)].mean()
        row["FT − LP OOD"], row["±"] = gap.mean(), protocol.interval90(gap)
        row["LP > FT OOD (seeds)"] = f"{int((gap < 0).sum())}/{len(gap)}"
        rows.append(row)
    return pd.DataFrame(rows).set_index(by).round(1)


def archive_name(record: dict) -> str:
    """The file name of a record in an archive (:func:`lpft.records.archive`): ``<variant slug>-seed<seed>.json``."""
    c = record["config"]
    return f"{re.sub(r'[^A-Za-z0-9]+', '-', c['label']).strip('-')}-seed{c['seed']}.json"

