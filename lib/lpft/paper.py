"""The LP-FT paper's own numbers (Kumar et al., ICLR 2022, Tables 1-2 and the feature-change measurement), as data.

These are the paper's results, not this book's: chapters print them next to their own runs, always labelled as the
paper's. Where each number comes from:

* **Non-ImageNet cells** (ID: CIFAR-10, Entity-30, Living-17, DomainNet, FMoW; OOD: STL-10, CIFAR-10.1, Entity-30,
  Living-17, DomainNet, FMoW): Tables 1 (ID) and 2 (OOD) of the ICLR 2022 *submission* ("Fine-Tuning Distorts
  Pretrained Features and Underperforms Out-of-Distribution", anonymous, six datasets), the only full text of the
  paper this book could retrieve. Every such cell below was checked against those tables (:data:`CHECKED`), as were
  the tables' "Ave" columns (:data:`SUBMISSION_AVERAGES`).
* **ImageNet cells** (ID: ImageNet; OOD: ImageNetV2, ImageNet-R, ImageNet-Sketch, ImageNet-A) appear only in the
  final (arXiv 2202.10054 / camera-ready) version, whose text could not be retrieved: they are **not checked against
  any text** (:data:`UNCHECKED_LABEL`), and :func:`table` says so in its ``checked`` column.
* **Headline averages**: the final version's abstract (https://iclr.cc/virtual/2022/poster/5945) says, verbatim,
  :data:`ABSTRACT_FT_VS_LP` and :data:`ABSTRACT_LPFT_VS_FT`; :func:`averages` over all ten OOD columns agrees with
  those rounded percentages, a consistency check only (the ImageNet cells in it are unchecked).

Each accuracy cell is ``(mean, half-width of the 90% interval over 3 runs)``; the interval is ``None`` for the
ImageNet cells (the values held here have none).

The feature change: the submission (Section 4.3) measures the average *Euclidean distance* between each Living-17
example's ResNet-50 features before and after fine-tuning (:data:`FEATURE_DISTANCE_QUOTE`); this book measures the
*mean over examples and dimensions of the squared difference ×100* (:func:`lpft.finetune.feature_change`), which is
what a notebook of the official code computes (:data:`OFFICIAL_NOTEBOOK`); that notebook's Living-17 outputs are
:data:`OFFICIAL_NOTEBOOK_CHANGE_LIVING17`, the only published numbers in the book's unit.
"""
from __future__ import annotations

import pandas as pd

SUBMISSION = ("the ICLR 2022 submission of Kumar et al. (anonymous, \"Fine-Tuning Distorts Pretrained Features and "
              "Underperforms Out-of-Distribution\")")
UNCHECKED_LABEL = "not checked against any text"
SOURCE = ("Kumar et al. (ICLR 2022): accuracy in %, mean (90% interval) over 3 runs. Cells of CIFAR-10, STL-10, "
          "CIFAR-10.1, Entity-30, Living-17, DomainNet and FMoW: checked against Tables 1 (ID) and 2 (OOD) of the "
          "paper's ICLR 2022 submission. ImageNet, ImageNetV2, ImageNet-R, ImageNet-Sketch and ImageNet-A cells (final "
          f"version only; its text could not be retrieved): {UNCHECKED_LABEL}.")
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
    "DomainNet": {"FT": (55.5, 2.2), "LP": (79.7, 0.6), "LP-FT": (80.7, 0.9)},
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

# (set, split) -> the table of the submission each cell was checked against; every other cell is unchecked.
CHECKED = {**{(s, "ID"): "submission, Table 1" for s in ("CIFAR-10", "Entity-30", "Living-17", "DomainNet", "FMoW")},
           **{(s, "OOD"): "submission, Table 2"
              for s in ("STL-10", "CIFAR-10.1", "Entity-30", "Living-17", "DomainNet", "FMoW")}}
# The submission's printed "Ave" columns: ID over its 5 ID sets, OOD over its 6 OOD sets (no ImageNet).
SUBMISSION_AVERAGES = {"ID": {"FT": 85.8, "LP": 83.5, "LP-FT": 86.5}, "OOD": {"FT": 66.8, "LP": 71.6, "LP-FT": 74.4}}

# The final version's abstract (ICLR 2022 proceedings page), verbatim: averages over its 10 OOD datasets.
ABSTRACT_FT_VS_LP = "fine-tuning obtains on average 2% higher accuracy ID but 7% lower accuracy OOD than linear probing"
ABSTRACT_LPFT_VS_FT = "(1% better ID, 10% better OOD than full fine-tuning)"

# The paper's feature-change measurement: the submission, Section 4.3, verbatim. A Euclidean distance per example,
# averaged; not the same quantity as this book's mean squared difference, so it is quoted and not compared.
FEATURE_DISTANCE_QUOTE = ("For each example in Living-17, we took the Euclidean distance of the ResNet-50 features "
                          "before and after fine-tuning. As expected, the average distance for ID examples (0.019) is "
                          "more than for OOD examples (0.017), and both distances are 20× smaller for LP-FT.")
FEATURE_DISTANCE_LIVING17 = {"FT": {"ID": 0.019, "OOD": 0.017}}  # and LP-FT: "20× smaller" (no number printed)
FEATURE_DISTANCE_SOURCE = "Kumar et al., ICLR 2022 submission, Section 4.3"

# Outputs of a notebook in the official code's history (not the paper's text): the mean over examples and dimensions
# of the squared difference between pretrained and fine-tuned penultimate features, ×100, on Living-17 (ResNet-50,
# MoCo-v2), mean (90% interval) over 3 runs; the same quantity as this book's feature change.
OFFICIAL_NOTEBOOK = ("github.com/AnanyaKumar/transfer_learning, scripts/lpft_change_in_reps_and_weights.ipynb "
                     "(pre-release history, pull request #2's branch; not on the main branch)")
OFFICIAL_NOTEBOOK_CHANGE_LIVING17 = {"FT (lr 1e-3)": {"ID": (1.88, 0.01), "OOD": (1.67, 0.01)},
                                     "FT at LP-FT's lr 1e-4": {"ID": (1.33, 0.02), "OOD": (1.03, 0.01)},
                                     "LP-FT (lr 1e-4)": {"ID": (0.11, 0.01), "OOD": (0.09, 0.01)}}
FEATURE_CHANGE_METRIC = "mean over examples and dimensions of the squared feature difference, ×100"


def checked(name: str, split: str) -> str:
    """Where the paper's ``split`` ("ID"/"OOD") cell of set ``name`` was checked: "submission, Table 1" or
    "submission, Table 2", else :data:`UNCHECKED_LABEL`."""
    return CHECKED.get((name, split), UNCHECKED_LABEL)


def table(sets=None) -> pd.DataFrame:
    """The paper's accuracies as a long table: one row per (set, split, method) with ``split`` ("ID" / "OOD"),
    ``paper`` (mean), ``paper ±`` (90% interval half-width, NaN where none) and ``checked`` (the submission's table
    the cell was checked against, or :data:`UNCHECKED_LABEL`). ``sets``: ``(set name, "ID" or "OOD")`` pairs, or a
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
                         "paper ±": float("nan") if pm is None else pm, "checked": checked(name, split)})
    return pd.DataFrame(rows)


def feature_change_official_notebook() -> pd.DataFrame:
    """:data:`OFFICIAL_NOTEBOOK_CHANGE_LIVING17` as a table (rows: runs; columns: ID, OOD as "mean ± 90%")."""
    return pd.DataFrame({k: {s: f"{v[0]} ± {v[1]}" for s, v in d.items()}
                         for k, d in OFFICIAL_NOTEBOOK_CHANGE_LIVING17.items()}).T


def averages(checked_only: bool = False) -> pd.DataFrame:
    """Unweighted row averages of the paper's accuracy means, per method (rows) and split (columns "ID", "OOD").

    Default: over every column held here, ID over 6 sets (the submission's 5 and ImageNet) and OOD over 10 (the
    submission's 6 and ImageNet's 4), the columns of the final version's abstract; its ImageNet cells are unchecked.
    ``checked_only=True``: over the checked columns only (ID 5, OOD 6), which reproduces the submission's printed
    "Ave" columns (:data:`SUBMISSION_AVERAGES`)."""
    out = {}
    for split, src in (("ID", ID_ACCURACY), ("OOD", OOD_ACCURACY)):
        names = [k for k in src if not checked_only or (k, split) in CHECKED]
        out[split] = {m: sum(src[k][m][0] for k in names) / len(names) for m in METHODS}
    return pd.DataFrame(out)
