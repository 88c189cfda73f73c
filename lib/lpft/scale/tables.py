"""The paper-scale records read back as tables: one row per run, the selection of each method's learning rate on ID
validation, the summary over seeds, and the comparison with the paper's Tables 1-2 (:mod:`lpft.paper`).

:func:`summarise` selects each method's learning rate by mean ID-val accuracy over seeds (early stopping already
picked each run's epoch) and reports mean and 90% interval over seeds, as the paper's Section 4.1.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lpft import paper, report
from lpft.verdict import interval90
from lpft.scale.experiments import Experiment, experiment_of

METHODS = ("LP", "FT", "LP-FT", "WiSE-FT", "L2-SP")


def _row(method: str, c: dict, r: dict, spec: Experiment, alpha: float = float("nan")) -> dict:
    change = r["feature_change"]
    ood = {f"OOD {k}": 100 * r["ood"][k] for k in sorted(r["ood"])}
    if "OOD mean" in spec.paper_ood:
        ood["OOD mean"] = float(np.mean(list(ood.values())))
    return {"method": method, "lr": c.get("lr", float("nan")), "alpha": alpha, "seed": c.get("seed", -1),
            "val": 100 * r["val"], "ID": 100 * r["id"], **ood,
            **{f"change {k}": change[k] for k in ["ID", *sorted(set(change) - {"ID"})]},
            "best_epoch": r.get("best_epoch", 0), "seconds": r.get("seconds", 0.0)}


def runs_table(records: list[dict]) -> pd.DataFrame:
    """One row per run: method, lr, WiSE-FT's alpha, seed, ID-val / ID test / OOD accuracies (%), the mean over OOD
    sets where the experiment reports it (DomainNet), feature change, best epoch, seconds. Each FT record also gives
    one WiSE-FT row per alpha (its interpolation with the LP model; its time is the FT run's)."""
    rows = []
    for record in records:  # OOD sets in a fixed (sorted) order: records read back from JSON have sorted keys
        c, r = record["config"], record["results"]
        spec = experiment_of(c.get("common", {}).get("experiment", "cifar-stl"))
        rows.append(_row(c["method"], c, r, spec))
        for alpha, w in sorted(r.get("wise", {}).items(), key=lambda kv: float(kv[0])):
            rows.append(_row("WiSE-FT", c, {**w, "best_epoch": r.get("best_epoch", 0)}, spec, float(alpha)))
    return pd.DataFrame(rows)


def select(table: pd.DataFrame) -> pd.DataFrame:
    """The runs each method reports: FT, LP-FT and L2-SP at the learning rate with the best mean ID-val accuracy over
    seeds (the first in grid order on ties), as the paper's Section 4.1 selects on ID validation, and WiSE-FT at the
    best (learning rate, alpha); LP's runs (one, or one per seed)."""
    keep = [table[table["method"] == "LP"]]
    for method in METHODS[1:]:
        t = table[table["method"] == method]
        if len(t):
            keys = ["lr", "alpha"] if method == "WiSE-FT" else ["lr"]
            best = t.groupby(keys, sort=False)["val"].mean().idxmax()
            best = best if isinstance(best, tuple) else (best,)
            keep.append(t[np.logical_and.reduce([t[k] == v for k, v in zip(keys, best)])])
    return pd.concat(keep, ignore_index=True)


def summarise(records: list[dict]) -> pd.DataFrame:
    """Per method (:data:`METHODS` that ran): the selected learning rate (and WiSE-FT's alpha), number of seeds, and
    mean and 90% interval over seeds of every accuracy and feature-change column (interval 0 for a single
    deterministic LP run)."""
    chosen = select(runs_table(records))
    values = [c for c in chosen.columns if c in ("val", "ID") or c.startswith(("OOD ", "change "))]
    rows = []
    for method in METHODS:
        t = chosen[chosen["method"] == method]
        if not len(t):
            continue
        row = {"method": method, "lr": t["lr"].iloc[0], "alpha": t["alpha"].iloc[0], "seeds": len(t)}
        for col in values:
            row[col] = t[col].mean()
            row[f"{col} ±"] = interval90(t[col]) if len(t) > 1 else 0.0
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def compare_with_paper(summary: pd.DataFrame, experiment: str = "cifar-stl") -> pd.DataFrame:
    """This run's accuracies next to the paper's (Tables 1-2, :mod:`lpft.paper`, with its ``checked`` column: the
    submission's table a cell was checked against, or "not checked against any text") and the difference, one row
    per (set, split, method)."""
    spec = experiment_of(experiment)
    ours = {(spec.id_set, "ID"): "ID", **{(col, "OOD"): ours for ours, col in spec.paper_ood.items()}}
    table = paper.table(list(ours))
    column = [ours[(s, split)] for s, split in zip(table["set"], table["split"])]
    table["this run"] = [summary.loc[m, c] if m in summary.index else float("nan")
                         for c, m in zip(column, table["method"])]
    table["this run ±"] = [summary.loc[m, f"{c} ±"] if m in summary.index else float("nan")
                           for c, m in zip(column, table["method"])]
    table["difference"] = table["this run"] - table["paper"]
    return table


def feature_change_long(runs: pd.DataFrame) -> pd.DataFrame:
    """The feature change of every method but LP (which keeps the pretrained features) at its selected
    hyperparameters, one row per (run, inputs)."""
    chosen = select(runs)
    changes = [c for c in chosen.columns if c.startswith("change ")]
    long = chosen[chosen["method"] != "LP"].melt(id_vars=["method", "lr", "alpha", "seed"], value_vars=changes,
                                                 var_name="inputs", value_name="change")
    long["inputs"] = long["inputs"].str.removeprefix("change ")
    return long


def lr_table(runs: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """Mean ID-val, ID and OOD accuracy over seeds of every trained method (FT, LP-FT, L2-SP) at every learning rate
    of its grid (OOD: ``experiment``'s paper columns), rounded to 0.1."""
    cols = ["val", "ID", *experiment_of(experiment).paper_ood]
    trained = runs[runs["method"].isin(["FT", "LP-FT", "L2-SP"])]
    return trained.groupby(["method", "lr"])[cols].mean().round(1)


def methods_table(summary: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """Every method of this run on ``experiment``'s paper columns, as printed: selected learning rate (and WiSE-FT's
    alpha), seeds, ID-val accuracy, ID and OOD accuracy as "mean ± 90% interval" (one ``OOD`` column where the
    experiment has one OOD number, else one per set), and the feature change on ID inputs."""
    spec = experiment_of(experiment)
    ood = {col: "OOD" if len(spec.paper_ood) == 1 else col for col in spec.paper_ood}
    out = pd.DataFrame({"lr": [report.fmt(x) for x in summary["lr"]],
                        "alpha": ["" if np.isnan(a) else f"{a:g}" for a in summary["alpha"]],
                        "seeds": summary["seeds"], "val": [f"{v:.1f}" for v in summary["val"]]}, index=summary.index)
    for col, name in {"ID": "ID", **ood}.items():
        out[name] = [f"{m:.1f} ± {pm:.1f}" for m, pm in zip(summary[col], summary[f"{col} ±"])]
    out["change ID"] = [report.fmt(c, floor=0.0) for c in summary["change ID"]]
    return out


def orderings(summary: pd.DataFrame | None, experiment: str) -> pd.DataFrame:
    """The paper's comparisons for ``experiment`` (FT vs LP out of and in distribution, LP-FT vs FT out of
    distribution), whether the paper's Tables 1-2 show them, and whether this run (``summary``; None: not run) does."""
    spec = experiment_of(experiment)
    ood = {f"{col} ({spec.paper_ood[col]})" if col == "OOD mean" else col: pc for col, pc in spec.paper_ood.items()}
    checks = [(f"LP > FT on {label}", col, "OOD", "LP", "FT") for label, col in zip(ood, spec.paper_ood)]
    checks += [(f"LP-FT > FT on {label}", col, "OOD", "LP-FT", "FT") for label, col in zip(ood, spec.paper_ood)]
    checks += [(f"FT > LP on ID ({spec.id_set})", "ID", "ID", "FT", "LP")]
    rows = []
    for label, col, split, a, b in checks:
        name = spec.id_set if split == "ID" else spec.paper_ood[col]
        source = paper.ID_ACCURACY if split == "ID" else paper.OOD_ACCURACY
        ours = "not run" if summary is None else ("yes" if summary.loc[a, col] > summary.loc[b, col] else "no")
        rows.append({"experiment": experiment, "comparison": label,
                     "paper": "yes" if source[name][a][0] > source[name][b][0] else "no", "this run": ours})
    return pd.DataFrame(rows)


def compare_all(experiments, summaries: dict) -> pd.DataFrame:
    """:func:`compare_with_paper` of every experiment that ran (``summaries``: name -> its :func:`summarise`), and the
    paper's numbers alone for the others."""
    return pd.concat([compare_with_paper(summaries[name], name) if name in summaries else
                      paper.table([(experiment_of(name).id_set, "ID"),
                                   *((c, "OOD") for c in experiment_of(name).paper_ood.values())])
                      for name in experiments], ignore_index=True)


def orderings_all(experiments, summaries: dict) -> tuple[pd.DataFrame, int, int]:
    """:func:`orderings` of every experiment, with how many comparisons this run agrees with the paper on and how
    many it could make (those of the experiments that ran)."""
    orders = pd.concat([orderings(summaries.get(name), name) for name in experiments], ignore_index=True)
    made = orders[orders["this run"] != "not run"]
    return orders, int((made["paper"] == made["this run"]).sum()), len(made)
