"""The paper's claims checked on the records of one digit experiment (:mod:`lpft.protocol`): the reported runs as
tables, the paper's 90% intervals over seeds, and the claims table.

Kept apart from the protocol so that the records, whose keys carry a fingerprint of the code that computed them
(:data:`lpft.protocol.DEPENDS`), stay valid when a table or a claim's wording changes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lpft import finetune
from lpft.protocol import chosen_settings, main_shift, selected_rows, shift_key
from lpft.records import canonical


def long_table(records: list[dict]) -> pd.DataFrame:
    """One row per (seed, method, OOD shift) of the reported runs: ID-val, ID-test and OOD accuracy (in %), the
    feature change on ID inputs (``change``; NaN for LP, whose features do not change) and the hp."""
    config = records[0]["config"]
    shifts = list(dict.fromkeys([shift_key(k, s) for k, s in config["eval_shifts"]] + [main_shift(config)]))
    rows = [{"seed": r["seed"], "method": r["method"], "shift": shift, "val": 100 * r["val"], "ID": 100 * r["id"],
             "OOD": 100 * r["ood"][shift], "change": r.get("feature_change", {}).get("id", float("nan")),
             "hp": r["hp"]} for r in selected_rows(records) for shift in shifts]
    df = pd.DataFrame(rows)
    order = [m for m in finetune.METHODS if m in set(df["method"])]
    return df.assign(method=pd.Categorical(df["method"], order, ordered=True)).sort_values(
        ["method", "seed"], kind="stable").assign(method=lambda d: d["method"].astype(str)).reset_index(drop=True)


def grid_table(records: list[dict]) -> pd.DataFrame:
    """One row per (seed, method, hyperparameter setting) of every grid: val / ID / main-OOD accuracy in %, the
    feature change, and whether it is the reported run."""
    main = main_shift(records[0]["config"])
    reported = {(r["seed"], r["method"], canonical(r["hp"])) for r in selected_rows(records)}
    rows = []
    for r in records:
        seed = r["config"]["seed"]
        for row in r["results"]["rows"]:
            rows.append({"seed": seed, "method": row["method"], **row["hp"], "val_acc": 100 * row["val"],
                         "id_acc": 100 * row["id"], "ood_acc": 100 * row["ood"][main],
                         "change_id": row.get("feature_change", {}).get("id", 0.0),
                         "reported": (seed, row["method"], canonical(row["hp"])) in reported})
    return pd.DataFrame(rows)


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
    """The paper's claims checked on the records of one experiment (the large shift: the setup's main shift; the
    natural shift: ``none@0``). Returns the table (claim, holds "yes"/"no", what was measured) and the numbers behind
    it. "At least 80% of seeds" is the criterion for a robust ordering; intervals are the paper's 90% intervals."""
    long = long_table(records)
    main_key = main_shift(records[0]["config"])
    main, natural = summary(long[long["shift"] == main_key]), summary(long[long["shift"] == "none@0"])
    per_seed = long[long["shift"] == main_key].pivot(index="seed", columns="method", values=["ID", "OOD"])
    n = len(per_seed)
    lp_wins = int((per_seed[("OOD", "LP")] > per_seed[("OOD", "FT")]).sum())
    ft_wins = int((per_seed[("ID", "FT")] > per_seed[("ID", "LP")]).sum())
    lp_ood_lo = main.loc["LP", "OOD"] - main.loc["LP", "OOD ±"]
    rows = selected_rows(records)
    change = {m: {k: float(np.mean([r["feature_change"][k] for r in rows if r["method"] == m])) for k in ("id", "ood")}
              for m in ("FT", "LP-FT")}
    ratio = change["FT"]["id"] / change["LP-FT"]["id"] if change["LP-FT"]["id"] > 0 else float("inf")
    table = [
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
    out = pd.DataFrame([(c, "yes" if bool(h) else "no", m) for c, h, m in table], columns=["claim", "holds", "measured"])
    numbers = {"n": n, "lp_wins": lp_wins, "ft_wins": ft_wins, "main": main, "natural": natural, "change": change,
               "ratio": ratio, "lpft_in_lp_interval": bool(main.loc["LP-FT", "OOD"] >= lp_ood_lo),
               "chosen": chosen_settings(records)}
    return out, numbers
