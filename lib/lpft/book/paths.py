"""Where the book keeps what it computes: the only module of the library that knows the repository's layout.

``results/`` holds one record per run of the chapters (quick and full profile), ``cache/`` the pretrained digit
backbones, the digit chapters' selected models and decoded images, ``archive/`` the committed full-profile records
the book shows next to a quick run, ``executed/`` the notebooks that ``lpft-run`` executes and Jupyter Book renders.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "results"
CACHE = ROOT / "cache"
PRETRAINED = CACHE / "pretrained"
DIGIT_MODELS = CACHE / "digit-models"  # the digit chapters' selected models, per seed and method (lpft.protocol)
ARCHIVE = ROOT / "archive"
EXECUTED = ROOT / "executed"
LOCK = ROOT / "requirements-lock.txt"


def results(chapter: str, profile: str) -> Path:
    """The folder of a chapter's run records for ``profile``."""
    return RESULTS / chapter / profile


def relative(path) -> str:
    """``path`` as the book prints it: relative to the repository."""
    path = Path(path)
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
