"""The experiment protocol of the paper (Section 4 of its ICLR 2022 submission) on the CPU-scale digit task.

For one downstream seed: draw the task (ID train / ID-val / ID-test, OOD test), take the pretrained backbone, and run
every method with its hyperparameters selected on **ID validation only**: LP (C), FT (lr), LP-FT (lr, from the
selected LP head), WiSE-FT (α), L2-SP (weight), surgical fine-tuning (which block). Each selected model is then
evaluated on the ID test set and on the OOD test set at every shift strength (training never sees the OOD domain, so
one trained model serves every strength), and the feature change of FT and LP-FT is measured on ID and OOD inputs.
Each seed's result is one record (:mod:`lpft.records`); seeds run in parallel processes, one thread each.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lpft import digits, finetune, pretrain
from lpft.records import code_fingerprint, parallel_map, run_once, write_record


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


ALL_METHODS = ("LP", "FT", "LP-FT", "WiSE-FT", "L2-SP", "surgical")


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


def select_models(setup: dict, seed: int, pretrained: digits.DigitNet) -> tuple:
    """Every method of ``setup["methods"]`` (default: all) trained on the task of ``seed`` with its hyperparameters
    selected on ID-val, starting from ``pretrained``. Returns ``(pretrained, task, chosen models, selected hps,
    selection tables)``."""
    wanted = setup.get("methods", ALL_METHODS)
    task = make_task(setup, seed)
    epochs = setup["epochs"]
    chosen, tables = {}, {}

    chosen["LP"], hp_lp, tables["LP"] = finetune.select("LP", pretrained, task, _grid("C", setup["lp_C"]), seed)
    chosen["FT"], hp_ft, tables["FT"] = finetune.select(
        "FT", pretrained, task, [{"lr": lr, "epochs": epochs} for lr in setup["ft_lr"]], seed)
    chosen["LP-FT"], hp_lpft, tables["LP-FT"] = finetune.select(
        "LP-FT", pretrained, task, [{"C": hp_lp["C"], "lr": lr, "epochs": epochs} for lr in setup["lpft_lr"]], seed)
    hps = {"LP": hp_lp, "FT": hp_ft, "LP-FT": hp_lpft}
    if "WiSE-FT" in wanted:
        chosen["WiSE-FT"], hps["WiSE-FT"], tables["WiSE-FT"] = select_wise(chosen["LP"], chosen["FT"], task,
                                                                           setup["wise_alpha"])
    if "L2-SP" in wanted:
        chosen["L2-SP"], hps["L2-SP"], tables["L2-SP"] = finetune.select(
            "L2-SP", pretrained, task,
            [{"lr": hp_ft["lr"], "epochs": epochs, "weight": w} for w in setup["l2sp_weight"]], seed)
    if "surgical" in wanted:
        chosen["surgical"], hps["surgical"], tables["surgical"] = finetune.select(
            "surgical", pretrained, task,
            [{"lr": hp_ft["lr"], "epochs": epochs, "blocks": b} for b in setup["surgical"]], seed)
    return pretrained, task, chosen, hps, tables


def run_seed(setup: dict, seed: int, cache: Path) -> dict:
    """Every method of ``setup["methods"]`` (default: all) on the task of ``seed``: selected hyperparameters,
    ID/OOD accuracies, feature change, the selection grids and the compute time in seconds."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    pretrained, task, chosen, hps, tables = select_models(setup, seed, pretrained_model(setup, cache))
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


# The modules a seed record depends on: editing any other module of the library does not invalidate the records.
DEPENDS = ("digits", "pretrain", "finetune", "protocol")


def _run_seed_record(setup: dict, seed: int, folder: Path, cache: Path) -> dict:
    return run_once(folder, {**setup, "seed": seed}, lambda: run_seed(setup, seed, cache), name=f"seed{seed}",
                    code=code_fingerprint(DEPENDS))


def run_all(setup: dict, seeds: list[int], folder: Path, *, cache: Path, jobs: int = 2) -> list[dict]:
    """One record per seed in ``folder`` (finished seeds are read back, not re-run), ``jobs`` processes at a time;
    the pretrained backbone is kept in the folder ``cache``."""
    pretrained_model(setup, cache)  # train the backbone once, before the workers start (they load it from the cache)
    return parallel_map(_run_seed_record, [(setup, s, Path(folder), Path(cache)) for s in seeds], jobs)


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
    table = pd.DataFrame([(c, "yes" if bool(h) else "no", m) for c, h, m in rows], columns=["claim", "holds", "measured"])
    numbers = {"n": n, "lp_wins": lp_wins, "ft_wins": ft_wins, "main": main, "natural": natural, "change": change,
               "ratio": ratio, "lpft_in_lp_interval": bool(main.loc["LP-FT", "OOD"] >= lp_ood_lo)}
    return table, numbers


def archive(records: list[dict], folder: Path) -> None:
    """Copy ``records`` into ``folder`` as ``seed<seed>.json`` (the book commits full-profile runs this way)."""
    for record in records:
        write_record(Path(folder) / f"seed{record['config']['seed']}.json", record)


def load_archive(folder: Path) -> list[dict]:
    """The records :func:`archive` wrote into ``folder``, in seed order (empty when there are none)."""
    records = [json.loads(p.read_text()) for p in Path(folder).glob("seed*.json")]
    return sorted(records, key=lambda r: r["config"]["seed"])
