"""Words and numbers glued into a chapter's prose (``{glue:text}`name```).

:func:`number` glues a value as :mod:`lpft.report` prints it (with the rules of :mod:`lpft.prose` for an exact zero
and for -0.0); :func:`text` glues words a chapter formatted itself, usually with :mod:`lpft.prose`::

    glue.text("dig_change_ratio", prose.ratio(found["ratio"]))          # "145×", or "about as large as"
    glue.text("dig_ft_vs_lp_id", prose.compare(ft_id, lp_id))           # "97.2% vs 96.8%", or "97.2% for both"
    glue.text("fxp_kernel_mismatch", prose.count(n, zero="no"))          # "no mismatches", not "<1e-12 mismatches"
"""
from __future__ import annotations

import math

from myst_nb import glue

from lpft import prose
from lpft.report import FLOOR


def text(name: str, words: str) -> str:
    """Glue ``words`` (a string) under ``name`` for ``{glue:text}`` in the chapter's prose; returns it."""
    if not isinstance(words, str):
        raise TypeError(f"glue.text({name!r}, ...) takes a string, got {words!r}: format it first with lpft.prose "
                        f"(number, significant, fixed, percent, interval, compare, ratio, count)")
    glue(name, words, display=False)
    return words


def number(name: str, x, digits: int = 3, floor: float = FLOOR) -> str:
    """Glue ``x`` under ``name`` as :func:`lpft.prose.number` prints it (``digits`` significant digits, ``<floor``
    for a nonzero value below ``floor``, ``"0"`` for an exact zero or -0.0); returns it. A string is glued as it is,
    and NaN or None as ``"—"`` (as :func:`lpft.report.fmt` prints a missing value in a table)."""
    if isinstance(x, str):
        return text(name, x)
    if x is None or math.isnan(x):
        return text(name, "—")
    return text(name, prose.number(x, digits, floor))


def verdict(claim_id: str, verdict: str, because: str) -> str:
    """Glue this chapter's verdict on the paper's claim ``claim_id`` (:data:`lpft.book.claims.CLAIMS`): ``verdict``,
    one of :data:`lpft.book.claims.VERDICTS`, and ``because``, a short text computed from the chapter's results (the
    front page's claims table shows both and links to the chapter); prints both, so that the chapter's page shows them
    too, and returns ``verdict``."""
    from lpft.book import claims

    quoted = claims.claim(claim_id)  # an unknown id raises, listing the known ones
    if verdict not in claims.VERDICTS:
        raise ValueError(f"glue.verdict({claim_id!r}, {verdict!r}): a verdict is one of {claims.VERDICTS}")
    text(claims.because_key(claim_id), because)
    print(f"the paper's claim {claim_id!r} ({quoted.section}): {verdict}, because {because}")
    return text(claims.verdict_key(claim_id), verdict)


def numbers(prefix: str, values: dict, digits: int = 3, floor: float = FLOOR, form: dict | None = None) -> dict:
    """Glue each ``values[key]`` under ``f"{prefix}_{key}"`` as :func:`number` does, with ``digits`` and ``floor``, or
    with ``form[key] = (digits, floor)`` where given (one call per result block). Returns {key: glued text}."""
    form = form or {}
    unknown = set(form) - set(values)
    if unknown:
        raise ValueError(f"form names keys that values lacks: {sorted(unknown)}")
    return {key: number(f"{prefix}_{key}", x, *form.get(key, (digits, floor))) for key, x in values.items()}
