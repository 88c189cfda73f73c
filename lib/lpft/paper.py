"""The LP-FT paper's own numbers (Kumar et al., ICLR 2022, Tables 1-2 and the feature-change measurement), as data.

These are the paper's results, not this book's: chapters print them next to their own runs, always labelled as the
paper's. Source: the project's reference notes, Sections 4 and 5, which record them as **recalled** ([M]) and to be
re-checked cell by cell against the arXiv PDF (2202.10054); their row averages match the abstract's headline
differences (+2.3 / -6.9 and +0.6 / +9.6 points). Each cell is ``(mean, half-width of the 90% interval over 3 runs)``;
the interval is ``None`` where the paper gives none (ImageNet).
"""
from __future__ import annotations

import pandas as pd

SOURCE = ("Kumar et al. (ICLR 2022), Tables 1 (ID) and 2 (OOD): accuracy in %, mean (90% interval) over 3 runs; "
          "as recorded in the project's reference notes, to be verified against the arXiv PDF")
METHODS = ("LP", "FT", "LP-FT")

ID_ACCURACY = {
    "CIFAR-10": {"FT": (97.3, 0.2), "LP": (91.8, 0.0), "LP-FT": (97.5, 0.1)},
    "Entity-30": {"FT": (93.6, 0.2), "LP": (90.6, 0.2), "LP-FT": (93.7, 0.1)},
    "Living-17": {"FT": (97.1, 0.2), "LP": (96.5, 0.2), "LP-FT": (97.8, 0.2)},
    "DomainNet": {"FT": (84.5, 0.6), "LP": (89.4, 0.1), "LP-FT": (91.6, 0.0)},
    "FMoW": {"FT": (56.5, 0.3), "LP": (49.1, 0.0), "LP-FT": (51.8, 0.2)},
    "ImageNet": {"FT": (81.7, None), "LP": (79.7, None), "LP-FT": (81.7, None)},
}
OOD_ACCURACY = {
    "STL-10": {"FT": (82.4, 0.4), "LP": (85.1, 0.2), "LP-FT": (90.7, 0.3)},
    "CIFAR-10.1": {"FT": (92.3, 0.4), "LP": (82.7, 0.2), "LP-FT": (93.5, 0.1)},
    "Entity-30": {"FT": (60.7, 0.2), "LP": (63.2, 1.3), "LP-FT": (62.3, 0.9)},
    "Living-17": {"FT": (77.8, 0.7), "LP": (82.2, 0.2), "LP-FT": (82.6, 0.3)},
    "DomainNet": {"FT": (55.5, 2.2), "LP": (79.7, 0.0), "LP-FT": (80.7, 0.9)},
    "FMoW": {"FT": (32.0, 3.5), "LP": (36.6, 0.0), "LP-FT": (36.8, 1.3)},
    "ImageNetV2": {"FT": (71.6, None), "LP": (69.7, None), "LP-FT": (71.6, None)},
    "ImageNet-R": {"FT": (52.4, None), "LP": (70.6, None), "LP-FT": (72.9, None)},
    "ImageNet-Sketch": {"FT": (40.5, None), "LP": (46.4, None), "LP-FT": (48.4, None)},
    "ImageNet-A": {"FT": (27.8, None), "LP": (45.7, None), "LP-FT": (49.1, None)},
}
# Which ID set each OOD set is measured against (the paper trains once per ID set).
ID_OF_OOD = {"STL-10": "CIFAR-10", "CIFAR-10.1": "CIFAR-10", "Entity-30": "Entity-30", "Living-17": "Living-17",
             "DomainNet": "DomainNet", "FMoW": "FMoW", "ImageNetV2": "ImageNet", "ImageNet-R": "ImageNet",
             "ImageNet-Sketch": "ImageNet", "ImageNet-A": "ImageNet"}

# Reference Section 5 (Living-17, ResNet-50 MoCo-v2): mean squared change of penultimate features ×100, (mean, 90%).
FEATURE_CHANGE_LIVING17 = {"FT (lr 1e-3)": {"ID": (1.88, 0.01), "OOD": (1.67, 0.01)},
                           "FT at LP-FT's lr 1e-4": {"ID": (1.33, 0.02), "OOD": (1.03, 0.01)},
                           "LP-FT (lr 1e-4)": {"ID": (0.11, 0.01), "OOD": (0.09, 0.01)}}


def table(sets=None) -> pd.DataFrame:
    """The paper's accuracies as a long table: one row per (set, split, method) with ``split`` ("ID" / "OOD"),
    ``paper`` (mean) and ``paper ±`` (90% interval half-width). ``sets``: ``(set name, "ID" or "OOD")`` pairs, or a
    dict from set names to splits (default: every set of both tables)."""
    sets = sets or [*((k, "ID") for k in ID_ACCURACY), *((k, "OOD") for k in OOD_ACCURACY)]
    rows = []
    for name, split in (sets.items() if isinstance(sets, dict) else sets):
        source = ID_ACCURACY if split == "ID" else OOD_ACCURACY
        if name not in source:
            raise KeyError(f"the paper has no {split} accuracy for {name!r}; known: {list(source)}")
        for method in METHODS:
            mean, pm = source[name][method]
            rows.append({"set": name, "split": split, "method": method, "paper": mean,
                         "paper ±": float("nan") if pm is None else pm})
    return pd.DataFrame(rows)


def averages() -> pd.DataFrame:
    """Row averages of the paper's tables (ID over 6 sets, OOD over 10), per method."""
    return pd.DataFrame({split: {m: sum(v[m][0] for v in src.values()) / len(src) for m in METHODS}
                         for split, src in (("ID", ID_ACCURACY), ("OOD", OOD_ACCURACY))})
