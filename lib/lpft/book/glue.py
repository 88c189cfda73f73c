"""Numbers glued into a chapter's prose (``{glue:text}`name```), formatted as :mod:`lpft.report` prints them."""
from __future__ import annotations

from myst_nb import glue

from lpft.report import FLOOR, fmt


def number(name: str, x, digits: int = 3, floor: float = FLOOR) -> str:
    """Glue the formatted value of ``x`` under ``name`` for ``{glue:text}`` in the chapter's prose; returns it."""
    text = fmt(x, digits, floor)
    glue(name, text, display=False)
    return text
