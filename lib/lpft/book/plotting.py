"""The book's one figure style (seaborn), and colours that keep each method recognisable across chapters."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from lpft import paper

METHOD_COLORS = {"LP": "#0173b2", "FT": "#de8f05", "LP-FT": "#029e73", "WiSE-FT": "#cc78bc", "L2-SP": "#ca9161",
                 "surgical": "#949494"}


def set_style() -> None:
    """seaborn whitegrid theme, colour-blind palette, a size that fits the book's column."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind", font_scale=0.95,
                  rc={"figure.figsize": (6.4, 4.0), "figure.dpi": 110, "savefig.dpi": 150,
                      "axes.titlesize": "medium", "legend.frameon": False})


def figure(ncols: int = 1, width: float = 6.4, height: float = 4.0, **kwargs):
    """A new figure with ``ncols`` axes side by side (returns fig, axes)."""
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), layout="constrained", **kwargs)
    return fig, axes


def finish(fig, name: str):
    """Glue ``fig`` under ``name`` for a captioned ``{glue:figure}`` in the chapter's text, then close it."""
    from myst_nb import glue

    glue(name, fig, display=False)
    plt.close(fig)


# ---- the paper-scale chapters' figures ------------------------------------------------------------------------------

def paper_vs_run(compare, profile: str, ran: bool):
    """Accuracy bars per (set, split) and method: the paper's, and this run's beside them when it ran (``compare``
    from :func:`lpft.scale.tables.compare_with_paper`, or the paper's table alone, titled as not run here)."""
    long = compare.melt(id_vars=["set", "split", "method"], value_vars=["paper"] + (["this run"] if ran else []),
                        var_name="source", value_name="accuracy")
    long["column"] = long["set"] + "\n(" + long["split"] + ")"
    sources, n_columns = list(long["source"].unique()), long["column"].nunique()
    panel = max(4.5, 1.1 * n_columns)  # room for every column's label
    fig, axes = figure(ncols=len(sources), width=panel * len(sources) + 1.0, height=3.6, sharey=True)
    for ax, src in zip(np.atleast_1d(axes), sources):
        sns.barplot(data=long[long["source"] == src], x="column", y="accuracy", hue="method", palette=METHOD_COLORS,
                    hue_order=paper.METHODS, ax=ax)
        title = ("Kumar et al. (paper)" if ran else "Kumar et al.: the paper's numbers, not run here") \
            if src == "paper" else f"this run ({profile} profile)"
        ax.set(title=title, xlabel="",
               ylabel="accuracy (%)", ylim=(0, 100))
        ax.tick_params(axis="x", labelsize="small")
        ax.legend(fontsize="small", title=None, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    for ax in np.atleast_1d(axes)[:-1]:
        ax.get_legend().remove()
    return fig


def feature_change(long, ax=None):
    """Bars of the feature change (mean squared, ×100, log scale) per inputs and method, whiskers the 90% band of
    seeds; ``long`` has columns ``inputs``, ``method`` (FT, LP-FT, WiSE-FT, L2-SP) and ``change``."""
    fig, ax = figure(width=6.0, height=3.6) if ax is None else (ax.figure, ax)
    order = [m for m in METHOD_COLORS if m in set(long["method"])]
    sns.barplot(data=long, x="inputs", y="change", hue="method", palette=METHOD_COLORS, hue_order=order,
                errorbar=("pi", 90), ax=ax)
    ax.set(yscale="log", xlabel="inputs", ylabel="feature change (mean squared, ×100)")
    ax.legend(fontsize="small", title=None)
    return fig


def lr_sensitivity(grid, lp: dict, columns, axes):
    """Accuracy of every FT, LP-FT and L2-SP run against its learning rate (mean over seeds, 90% band), one axis per
    column of ``columns``, with LP's accuracy (``lp[column]``) dashed."""
    grid = grid[grid["method"].isin(["FT", "LP-FT", "L2-SP"])]
    for ax, col in zip(axes, columns):
        sns.lineplot(data=grid, x="lr", y=col, hue="method", palette=METHOD_COLORS, marker="o", errorbar=("pi", 90),
                     ax=ax)
        ax.axhline(lp[col], color=METHOD_COLORS["LP"], ls="--", lw=1, label="LP")
        ax.set(xscale="log", xlabel="learning rate", ylabel=f"{col.removeprefix('OOD ')} accuracy (%)")
        ax.legend(fontsize="small", title=None)


def placeholder(ax, text: str) -> None:
    """An empty axis that says why it is empty (e.g. no data on this machine)."""
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()


def example_images(rows, n: int = 8, px: int = 64):
    """One strip per ``(label, ImageSet)`` row: ``n`` images of the set (a fixed random subset), as stored, shown at
    ``px``×``px``; a placeholder when there are no rows (no data on this machine)."""
    from lpft.scale import transforms

    if not rows:
        fig, ax = figure(width=6.4, height=2.0)
        placeholder(ax, "no data on this machine:\nthis page shows the paper's numbers only")
        return fig
    strips = [transforms.prepare(data.subset(n).x, px, mean=(0, 0, 0), std=(1, 1, 1)) for _, data in rows]
    fig, ax = figure(width=6.4, height=0.75 * len(rows) + 0.6)
    ax.imshow(np.concatenate([np.concatenate(list(s.permute(0, 2, 3, 1).numpy()), axis=1) for s in strips], axis=0))
    ax.set(yticks=[px // 2 + px * i for i in range(len(rows))], yticklabels=[r[0] for r in rows], xticks=[],
           xlabel=f"{n} images of each set (a fixed random subset), shown at {px} × {px} pixels")
    ax.grid(False)
    return fig


def feature_change_panels(longs: dict, empty: str = "not run on this machine"):
    """:func:`feature_change` per experiment, one panel each (``longs``: experiment name → its long table from
    :func:`lpft.scale.tables.feature_change_long`); one placeholder panel saying ``empty`` when nothing ran."""
    if not longs:
        fig, ax = figure(width=6.4, height=1.6)
        placeholder(ax, empty)
        return fig
    n = len(longs)
    fig, axes = figure(ncols=n, width=3.4 * n + 0.6, height=3.6)
    axes = list(np.atleast_1d(axes))
    for ax, (name, long) in zip(axes, longs.items()):
        feature_change(long, ax=ax)
        ax.set_title(name)
        ax.tick_params(axis="x", labelsize="small")
    return fig


def lr_panels(grids: dict, empty: str = "not run on this machine"):
    """:func:`lr_sensitivity` per experiment, one row each with ID (left) and one OOD column (right) (``grids``:
    experiment name → ``(runs table, LP's summary row, OOD column)``); one placeholder saying ``empty`` when nothing
    ran."""
    if not grids:
        fig, ax = figure(width=6.4, height=1.6)
        placeholder(ax, empty)
        return fig
    fig, _ = figure(ncols=2, width=9.0, height=3.2 * len(grids), sharex=False)
    fig.clf()
    for (ax_id, ax_ood), (name, (runs, lp, ood_col)) in zip(fig.subplots(len(grids), 2, squeeze=False), grids.items()):
        lr_sensitivity(runs, lp, ("ID", ood_col), (ax_id, ax_ood))
        ax_id.set_title(f"{name}: ID")
        ax_ood.set_title(f"{name}: {ood_col}")
    return fig


def methods_against(ax, df: pd.DataFrame, column: str, *, x: str = "eps", ls: str = "-", marker: str = "o",
                    label: str = "{m}", floor: float = 1e-12, **style) -> None:
    """Seed-mean of ``column`` against ``x`` for LP, FT and LP-FT in the book's method colours; values below
    ``floor`` are drawn at ``floor`` (for log axes)."""
    mean = df.groupby(["method", x])[column].mean()
    widths = {"LP": 1.8, "FT": 3.0, "LP-FT": 1.3}  # FT drawn wider, so that it shows where LP-FT lies on top of it
    for m in paper.METHODS:
        s = mean[m]
        ax.plot(s.index, np.maximum(s.to_numpy(), floor), ls=ls, marker=marker, color=METHOD_COLORS[m],
                label=label.format(m=m) if label else None, **{"lw": widths[m], **style})
