"""The book's one figure style (seaborn), and colours that keep each method recognisable across chapters."""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

METHOD_COLORS = {"LP": "#0173b2", "FT": "#de8f05", "LP-FT": "#029e73"}
METHOD_ORDER = ("LP", "FT", "LP-FT")


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
