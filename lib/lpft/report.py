"""Numbers as the book prints them: a fixed number of significant digits, and a floor below which a value is
indistinguishable from round-off. Printing through these keeps executed outputs identical run to run, which the
notebook regression tests rely on."""
from __future__ import annotations

import math

import pandas as pd

FLOOR = 1e-12  # |x| below this is printed as "<1e-12": at that level it is round-off, not a result


def fmt(x, digits: int = 3, floor: float = FLOOR) -> str:
    """``x`` with ``digits`` significant digits; tiny values as ``<floor``; NaN as ``—``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, str):
        return x
    x = float(x)
    if abs(x) < floor:
        return f"<{floor:.0e}"
    return f"{x:.{digits}g}"


def table(df: pd.DataFrame, digits: int = 3, floor: float = FLOOR, exact: tuple[str, ...] = ("eps",)) -> pd.DataFrame:
    """A copy of ``df`` with every float cell formatted by :func:`fmt` and a fresh 0..n-1 index.

    Columns named in ``exact`` are parameters, not results: printed with ``{:g}`` and no floor (ε = 0 stays 0).
    """
    out = df.reset_index(drop=True).copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            if col in exact:
                out[col] = [f"{x:g}" for x in out[col]]
            else:
                out[col] = [fmt(x, digits, floor) for x in out[col]]
    return out
