"""How robust the digit chapter's result is: three studies of LP, FT and LP-FT under the paper's conditions.

Each varies one condition of the LP-FT paper's claim (Kumar et al., ICLR 2022; Sections 1 and 4 of its ICLR
submission) and keeps the rest of the digit protocol (:mod:`lpft.protocol`: every grid fitted, hyperparameters chosen
on ID-val only, seeds in parallel, one record per seed):

* **pretraining**: the digit chapter's label-free backbone (SimCLR-style, :func:`lpft.pretrain.contrastive`) with
  and without the inversion augmentation, and the backbone pretrained with the pool's labels;
* **fewer ID labels**: ``n_train_per_class`` labelled MNIST images per class, trained for the same number of SGD
  steps as with every label (:func:`fixed_steps`), so that fewer labels do not also mean fewer updates (a common
  expectation, not a claim of the paper: LP might do relatively better with less data);
* **other shift kinds**: the reported models of each seed evaluated on UCI under every kind of
  :func:`lpft.digits.apply_shift` (inversion, rotation, thicker or thinner strokes, blur) at several strengths.
  Training never sees the OOD set, so the same models serve every shift.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from lpft import digits, paper, protocol, verdict
from lpft.task import BATCH_SIZE

EVAL_SHIFTS = (("none", 0.0), ("invert", 1.0), ("rotate", 0.5), ("rotate", 1.0), ("thicken", 0.5),
               ("thicken", 1.0), ("thin", 0.5), ("thin", 1.0), ("blur", 0.5), ("blur", 1.0))
MAIN_SHIFT = "invert@1"  # the digit chapter's large shift
shift_key = protocol.shift_key


def variant(base: dict, label: str, *, pretraining: str | None = None, contrastive_options: dict | None = None,
            n_train_per_class: int | None = None, eval_shifts=EVAL_SHIFTS) -> dict:
    """A setup of one study: ``base`` (restricted to LP, FT and LP-FT) with another backbone (``pretraining`` and
    ``contrastive_options``; None keeps ``base``'s), a number of labels per class (None: all, else trained for the
    same number of steps, :func:`fixed_steps`) and the OOD shifts to evaluate. ``label`` names it in tables."""
    setup = {**base, "label": label, "methods": list(paper.METHODS), "eval_shifts": [[k, float(s)] for k, s in eval_shifts]}
    if pretraining is not None:
        if pretraining not in ("supervised", "contrastive"):
            raise ValueError(f"pretraining must be 'supervised' or 'contrastive'; got {pretraining!r}")
        setup["pretraining"] = pretraining
    if setup["pretraining"] == "contrastive":
        setup["contrastive"] = {**(setup.get("contrastive") or {}), **(contrastive_options or {})}
    elif contrastive_options:
        raise ValueError("contrastive_options only apply to pretraining='contrastive'")
    else:
        setup["contrastive"] = None
    if n_train_per_class is not None:
        setup.update(n_train_per_class=n_train_per_class, epochs=fixed_steps(base, n_train_per_class))
    return setup


def fixed_steps(base: dict, n_train_per_class: int) -> int:
    """The number of epochs at which ``n_train_per_class`` labels per class take as many SGD steps (batches of
    :data:`lpft.task.BATCH_SIZE`) as ``base``'s whole training set does in ``base["epochs"]`` epochs."""
    full = len(protocol.make_task(base, 0).train)
    steps = base["epochs"] * math.ceil(full / BATCH_SIZE)
    return math.ceil(steps / math.ceil(n_train_per_class * digits.N_CLASSES / BATCH_SIZE))


def run_all(setups: list[dict], seeds: list[int], folder: Path, *, cache: Path, models: Path | None = None,
            jobs: int = 2) -> list[dict]:
    """Every setup of ``setups`` over ``seeds`` (:func:`lpft.protocol.run_all`; finished records are read back),
    ``jobs`` processes at a time, backbones in ``cache`` and fitted models in ``models``."""
    return [r for setup in setups
            for r in protocol.run_all(setup, seeds, folder, cache=cache, models=models, jobs=jobs)]


# ---- tables -------------------------------------------------------------------------------------------------------

def long_table(records: list[dict]) -> pd.DataFrame:
    """One row per (variant, seed, method, OOD shift) of the reported runs (:func:`lpft.verdict.long_table`, each
    variant's hyperparameters chosen over its own seeds): ID-val, ID-test and OOD accuracy in %, labels per class."""
    parts = []
    for label in dict.fromkeys(r["config"]["label"] for r in records):
        group = [r for r in records if r["config"]["label"] == label]
        c = group[0]["config"]
        per_class = group[0]["results"]["n_train"] // digits.N_CLASSES
        parts.append(verdict.long_table(group).assign(variant=label, pretraining=c["pretraining"],
                                                       **{"labels per class": per_class}))
    return pd.concat(parts, ignore_index=True)


def gap_summary(long: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per value of column ``by``: mean ID and OOD accuracy of LP, FT and LP-FT over seeds (%), the mean FT − LP OOD
    gap with its 90% interval half-width (:func:`lpft.verdict.interval90`), and in how many seeds LP beats FT OOD."""
    rows = []
    for value, g in long.groupby(by, sort=False):
        wide = g.pivot(index="seed", columns="method", values=["ID", "OOD"])
        gap = wide[("OOD", "FT")] - wide[("OOD", "LP")]
        row = {by: value}
        for m in paper.METHODS:
            row[f"{m} ID"], row[f"{m} OOD"] = wide[("ID", m)].mean(), wide[("OOD", m)].mean()
        row["FT − LP OOD"], row["±"] = gap.mean(), verdict.interval90(gap)
        row["LP > FT OOD (seeds)"] = f"{int((gap < 0).sum())}/{len(gap)}"
        rows.append(row)
    return pd.DataFrame(rows).set_index(by).round(1)


def archive_name(record: dict) -> str:
    """The file name of a record in an archive (:func:`lpft.records.archive`):
    ``<variant slug>-seed<seed>-stage<k>.json``."""
    c = record["config"]
    return f"{re.sub(r'[^A-Za-z0-9]+', '-', c['label']).strip('-')}-seed{c['seed']}-stage{c['stage'] + 1}.json"
