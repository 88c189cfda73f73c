"""The experiment protocol of the paper (Section 4 of its ICLR 2022 submission) on the CPU-scale digit task.

For one downstream seed: draw the task (ID train / ID-val / ID-test, OOD test), take the pretrained backbone, and run
every method with its hyperparameters selected on **ID validation only**: LP (C), FT (lr), LP-FT (lr, from the
selected LP head), WiSE-FT (α), L2-SP (weight), surgical fine-tuning (which block). Each selected model is then
evaluated on the ID test set and on the OOD test set at every shift strength (training never sees the OOD domain, so
one trained model serves every strength), and the feature change of FT and LP-FT is measured on ID and OOD inputs.
Each seed's result is one record (:mod:`lpft.records`); seeds run in parallel processes, one thread each. Each
seed's selected models are trained once and kept in a folder the caller passes (:func:`select_models`): the
chapters that deploy or re-evaluate the same models (fixed point, the supervised variant of the robustness study)
read them back instead of retraining them.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from lpft import checkpoints, digits, finetune, pretrain
from lpft.records import canonical, code_fingerprint, digest, parallel_map, run_once


def pretrained_model(setup: dict, cache: Path) -> digits.DigitNet:
    """The pretrained backbone of ``setup`` (trained once on the pool, then read back from the folder ``cache``)."""
    pool = digits.pretraining_pool(include_shifts=tuple(tuple(s) for s in setup["pool_shifts"]))
    return pretrain.supervised(pool, epochs=setup["pretrain_epochs"], lr=setup["pretrain_lr"],
                               seed=setup["pretrain_seed"], norm=setup["norm"], cache_dir=cache)


def make_task(setup: dict, seed: int, strength: float | None = None) -> digits.Task:
    return digits.make_task(id_domain=setup["id_domain"], ood_domain=setup["ood_domain"], shift=setup["shift"],
                            strength=setup["strength"] if strength is None else strength,
                            n_train_per_class=setup["n_train_per_class"], seed=seed)


def _grid(name: str, values) -> list[dict]:
    return [{name: v} for v in values]


def select_wise(lp_model, ft_model, task: digits.Task, alphas) -> tuple:
    """WiSE-FT between the selected LP and FT models: α chosen on ID-val (same return as :func:`finetune.select`)."""
    return finetune.best_by_val((({"alpha": a}, finetune.wise_ft(lp_model, ft_model, a)) for a in alphas), task)


def paper_conditions(cfg) -> dict:
    """The setup the digit chapter presents as "the paper's conditions" (good features, large shift), with the
    sizes and grids of a profile's settings ``cfg`` (``profiles.CHAPTERS["experiments-digits"][profile]``)."""
    return dict(
        id_domain="mnist", ood_domain="uci", shift="invert", strength=1.0, n_train_per_class=None,
        pool_shifts=[["invert", 1.0]],  # the pool covers both collections and their inverted copies: "good features"
        norm="group", pretrain_epochs=cfg.pretrain_epochs, pretrain_lr=1e-3, pretrain_seed=0,
        epochs=cfg.epochs, lp_C=list(cfg.lp_C), ft_lr=list(cfg.ft_lr), lpft_lr=list(cfg.lpft_lr),
        wise_alpha=list(cfg.wise_alpha), l2sp_weight=list(cfg.l2sp_weight), surgical=list(cfg.surgical),
        strengths=list(cfg.strengths),
    )


# The modules a seed record, and a selected model, depend on: editing any other module of the library does not
# invalidate them.
DEPENDS = ("digits", "pretrain", "checkpoints", "task", "finetune", "protocol")
# What each method's selected model depends on, beyond the task and the backbone: its own grid and the selections it
# starts from (LP-FT from LP's chosen C; WiSE-FT from the LP and FT models; L2-SP and surgical from FT's chosen lr).
MODEL_FIELDS = {"LP": ("lp_C",), "FT": ("ft_lr", "epochs"), "LP-FT": ("lp_C", "lpft_lr", "epochs"),
                "WiSE-FT": ("lp_C", "ft_lr", "epochs", "wise_alpha"), "L2-SP": ("ft_lr", "epochs", "l2sp_weight"),
                "surgical": ("ft_lr", "epochs", "surgical")}
# The fields of a setup that fix the task a model trains and is selected on (the OOD fields enter the selection
# tables, which measure OOD accuracy).
TASK_FIELDS = ("id_domain", "ood_domain", "shift", "strength", "n_train_per_class")


def model_key(setup: dict, seed: int, method: str, pretrained: digits.DigitNet) -> dict:
    """What determines the selected model of ``method`` for ``seed``: the task's fields of ``setup``, the grids in
    :data:`MODEL_FIELDS`, a digest of the pretrained backbone's parameters (so that supervised and contrastive
    backbones, or any other pretraining, never share a key), the seed, the method and the fingerprint of the code that
    trains and selects (:data:`DEPENDS`). Fields that only change the evaluation (``strengths``, ``eval_shifts``,
    labels) are not in it."""
    backbone = checkpoints.tensors_digest(pretrained.state_dict())
    return {"method": method, "seed": int(seed), "task": {f: setup.get(f) for f in TASK_FIELDS},
            "grids": {f: setup[f] for f in MODEL_FIELDS[method]}, "backbone": backbone,
            "code": code_fingerprint(DEPENDS)}


def _model_paths(models: Path, key: dict) -> tuple[Path, Path]:
    stem = f"{key['method']}-seed{key['seed']}-{digest(canonical(key))}"
    return Path(models) / f"{stem}.json", Path(models) / f"{stem}.pt"


def _load_selected(js: Path, pt: Path, key: dict, pretrained: digits.DigitNet, n_classes: int) -> tuple:
    """The model, hp and table stored by :func:`_selected`; a file that cannot be read or does not match raises
    (:func:`lpft.checkpoints.load`)."""
    model = copy.deepcopy(pretrained)
    model.head = nn.utils.skip_init(nn.Linear, model.head.in_features, n_classes)  # draws nothing from torch's RNG
    wanted = json.loads(canonical(key))
    saved = checkpoints.load(js, pt, model, lambda d: isinstance(d, dict) and d.get("key") == wanted
                             and {"hp", "table"} <= d.keys(), "selected-model cache")
    return model.eval(), saved["hp"], pd.DataFrame(saved["table"])


def _selected(models: Path | None, key: dict, pretrained: digits.DigitNet, n_classes: int, select) -> tuple:
    """``select()`` (a ``(model, hp, table)``), or what an earlier call with the same ``key`` stored in the folder
    ``models`` (None: no cache). Stored as ``<method>-seed<seed>-<digest of key>.json`` (key, hp, selection table) and
    ``.pt`` (the state_dict) by :func:`lpft.checkpoints.save`."""
    if models is None:
        return select()
    js, pt = _model_paths(models, key)
    if pt.exists():
        return _load_selected(js, pt, key, pretrained, n_classes)
    model, hp, table = select()
    checkpoints.save(js, {"key": key, "hp": hp, "table": table.to_dict(orient="records")}, pt, model)
    return model, hp, table


def select_models(setup: dict, seed: int, pretrained: digits.DigitNet, models: Path | None = None) -> tuple:
    """Every method of ``setup["methods"]`` (default: all) trained on the task of ``seed`` with its hyperparameters
    selected on ID-val, starting from ``pretrained``. Returns ``(pretrained, task, chosen models, selected hps,
    selection tables)``. With a folder ``models``, each selected model is trained once and then read back from it
    (:func:`_selected`, keyed by :func:`model_key`), so the chapters that reuse the digit chapter's models do not
    retrain them."""
    wanted = setup.get("methods", finetune.METHODS)
    task = make_task(setup, seed)
    epochs = setup["epochs"]
    chosen, hps, tables = {}, {}, {}

    def run(method: str, select) -> None:
        key = model_key(setup, seed, method, pretrained) if models is not None else None
        chosen[method], hps[method], tables[method] = _selected(models, key, pretrained, task.n_classes, select)

    run("LP", lambda: finetune.select("LP", pretrained, task, _grid("C", setup["lp_C"]), seed))
    run("FT", lambda: finetune.select("FT", pretrained, task, [{"lr": lr, "epochs": epochs} for lr in setup["ft_lr"]],
                                      seed))
    run("LP-FT", lambda: finetune.select(
        "LP-FT", pretrained, task, [{"C": hps["LP"]["C"], "lr": lr, "epochs": epochs} for lr in setup["lpft_lr"]],
        seed))
    if "WiSE-FT" in wanted:
        run("WiSE-FT", lambda: select_wise(chosen["LP"], chosen["FT"], task, setup["wise_alpha"]))
    if "L2-SP" in wanted:
        run("L2-SP", lambda: finetune.select(
            "L2-SP", pretrained, task,
            [{"lr": hps["FT"]["lr"], "epochs": epochs, "weight": w} for w in setup["l2sp_weight"]], seed))
    if "surgical" in wanted:
        run("surgical", lambda: finetune.select(
            "surgical", pretrained, task,
            [{"lr": hps["FT"]["lr"], "epochs": epochs, "blocks": b} for b in setup["surgical"]], seed))
    return pretrained, task, chosen, hps, tables


def run_seed(setup: dict, seed: int, cache: Path, models: Path | None = None) -> dict:
    """Every method of ``setup["methods"]`` (default: all) on the task of ``seed``: selected hyperparameters,
    ID/OOD accuracies, feature change, the selection grids and the compute time in seconds."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    pretrained, task, chosen, hps, tables = select_models(setup, seed, pretrained_model(setup, cache), models)
    ood_sets = {float(s): make_task(setup, seed, strength=s).test_ood for s in setup["strengths"]}

    out = {}
    for name, model in chosen.items():
        out[name] = {"hp": hps[name], "val": finetune.accuracy(model, task.val),
                     "id": finetune.accuracy(model, task.test_id),
                     "ood": {str(s): finetune.accuracy(model, data) for s, data in ood_sets.items()}}
    for name in ("FT", "LP-FT"):
        out[name]["feature_change"] = {"id": finetune.feature_change(pretrained, chosen[name], task.test_id),
                                       "ood": finetune.feature_change(pretrained, chosen[name], task.test_ood)}
    out["grids"] = {name: table.to_dict(orient="records") for name, table in tables.items()}
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def _run_seed_record(setup: dict, seed: int, folder: Path, cache: Path, models: Path | None) -> dict:
    return run_once(folder, {**setup, "seed": seed}, lambda: run_seed(setup, seed, cache, models), name=f"seed{seed}",
                    code=code_fingerprint(DEPENDS))


def run_all(setup: dict, seeds: list[int], folder: Path, *, cache: Path, models: Path | None = None,
            jobs: int = 2) -> list[dict]:
    """One record per seed in ``folder`` (finished seeds are read back, not re-run), ``jobs`` processes at a time;
    the pretrained backbone is kept in the folder ``cache``, and each seed's selected models in the folder ``models``
    (:func:`select_models`; None: not kept)."""
    pretrained_model(setup, cache)  # train the backbone once, before the workers start (they load it from the cache)
    return parallel_map(_run_seed_record, [(setup, s, Path(folder), Path(cache), models) for s in seeds], jobs)


def long_table(records: list[dict]) -> pd.DataFrame:
    """One row per (seed, method, OOD shift strength): ID-val, ID-test and OOD accuracy (in %), the selected hp."""
    rows = []
    for record in records:
        seed = record["config"]["seed"]
        for method, r in record["results"].items():
            if method in ("grids", "seconds"):
                continue
            for strength, ood in r["ood"].items():
                rows.append({"seed": seed, "method": method, "strength": float(strength), "val": 100 * r["val"],
                             "ID": 100 * r["id"], "OOD": 100 * ood, "hp": r["hp"]})
    return pd.DataFrame(rows)


def grid_table(records: list[dict]) -> pd.DataFrame:
    """One row per (seed, method, hyperparameter setting) of every selection grid: val / ID / OOD accuracy in %."""
    rows = []
    for record in records:
        for method, table in record["results"]["grids"].items():  # noqa: B007
            for row in table:
                rows.append({"seed": record["config"]["seed"], "method": method, **row})
    df = pd.DataFrame(rows)
    for col in ("val_acc", "id_acc", "ood_acc"):
        df[col] = 100 * df[col]
    return df


def interval90(x) -> float:
    """Half-width of a 90% interval over seeds like the paper's: 1.645 · std / √n (the formula of the official code's
    result notebooks, e.g. ``scripts/lpft_change_in_reps_and_weights.ipynb``)."""
    x = np.asarray(x, dtype=float)
    return float(1.645 * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean ID and OOD accuracy over seeds with the 90% interval half-widths, rounded to 0.1 point."""
    g = df.groupby("method", sort=False)
    return pd.DataFrame({"ID": g["ID"].mean(), "ID ±": g["ID"].agg(interval90),
                         "OOD": g["OOD"].mean(), "OOD ±": g["OOD"].agg(interval90)}).round(1)


def claims(records: list[dict]) -> tuple[pd.DataFrame, dict]:
    """The paper's claims checked on a set of seed records (large shift: strength 1; natural shift: strength 0).

    Returns the table (claim, holds "yes"/"no", what was measured) and the numbers behind it. "At least 80% of
    seeds" is the criterion for a robust ordering; intervals are the paper's 90% intervals over seeds.
    """
    long = long_table(records)
    large, natural = long[long["strength"] == 1.0], summary(long[long["strength"] == 0.0])
    main = summary(large)
    per_seed = large.pivot(index="seed", columns="method", values=["ID", "OOD"])
    n = len(records)
    lp_wins = int((per_seed[("OOD", "LP")] > per_seed[("OOD", "FT")]).sum())
    ft_wins = int((per_seed[("ID", "FT")] > per_seed[("ID", "LP")]).sum())
    lp_ood_lo = main.loc["LP", "OOD"] - main.loc["LP", "OOD ±"]
    change = {m: {k: sum(r["results"][m]["feature_change"][k] for r in records) / n for k in ("id", "ood")}
              for m in ("FT", "LP-FT")}
    ratio = change["FT"]["id"] / change["LP-FT"]["id"]
    rows = [
        ("FT beats LP in distribution (≥ 80% of seeds)", ft_wins >= 0.8 * n, f"{ft_wins}/{n} seeds"),
        ("LP beats FT out of distribution (≥ 80% of seeds)", lp_wins >= 0.8 * n, f"{lp_wins}/{n} seeds"),
        ("LP-FT OOD within LP's 90% interval or better", main.loc["LP-FT", "OOD"] >= lp_ood_lo,
         f"{main.loc['LP-FT', 'OOD']:.1f} vs ≥ {lp_ood_lo:.1f}"),
        ("LP-FT keeps FT's ID accuracy (within FT's 90% interval)",
         main.loc["LP-FT", "ID"] >= main.loc["FT", "ID"] - main.loc["FT", "ID ±"],
         f"{main.loc['LP-FT', 'ID']:.1f} vs FT {main.loc['FT', 'ID']:.1f} ± {main.loc['FT', 'ID ±']:.1f}"),
        ("FT distorts features more than LP-FT (ID inputs)", ratio > 1, f"{ratio:.1f}×"),
        ("Features change more on ID than on OOD inputs (FT)", change["FT"]["id"] > change["FT"]["ood"],
         f"{change['FT']['id']:.3g} vs {change['FT']['ood']:.3g}"),
        ("FT loses to LP OOD on the natural shift alone", natural.loc["FT", "OOD"] < natural.loc["LP", "OOD"],
         f"{natural.loc['FT', 'OOD']:.1f} vs {natural.loc['LP', 'OOD']:.1f}"),
    ]
    table = pd.DataFrame([(c, "yes" if bool(h) else "no", m) for c, h, m in rows],
                         columns=["claim", "holds", "measured"])
    numbers = {"n": n, "lp_wins": lp_wins, "ft_wins": ft_wins, "main": main, "natural": natural, "change": change,
               "ratio": ratio, "lpft_in_lp_interval": bool(main.loc["LP-FT", "OOD"] >= lp_ood_lo)}
    return table, numbers


def archive_name(record: dict) -> str:
    """The file name of a seed record in an archive (:func:`lpft.records.archive`): ``seed<seed>.json``."""
    return f"seed{record['config']['seed']}.json"

