"""Numbers inside sentences. A table cell may read "<1e-12" or "1.55e+03"; a sentence should read "0 mismatches",
"1,550× larger" or "97.2% for both". Each formatter here returns the words a chapter glues into its prose
(``lpft.book.glue``), with these rules:

- an exact zero prints as ``"0"`` (or the word the caller asks for, e.g. ``"none"``), never as ``"<1e-12"``; a value
  that is nonzero but below the floor still prints as ``"<1e-12"``: it is round-off, not a result;
- a negative number never prints as ``"-0"`` or ``"-0.0"``: a value that rounds to zero at the chosen precision
  prints without its sign (``fixed(-0.04) == "0.0"``, ``number(-0.0) == "0"``);
- NaN (or None) is refused with a ValueError: a sentence cannot say "nan", so the chapter should glue a word instead;
- infinity prints as ``"∞"`` (or ``"-∞"``) where a number may be infinite; ratios refuse it.
"""
from __future__ import annotations

import math
from typing import Callable

from lpft.report import FLOOR

SMALLEST_POSITIONAL = 1e-4  # below this, significant() writes 1.2e-05 rather than 0.000012


def _real(x, what: str) -> float:
    """``x`` as a float; NaN and None refused (ValueError), words refused (TypeError), with the fix in the message."""
    if x is None:
        x = math.nan
    try:
        if isinstance(x, str):
            raise TypeError
        x = float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{what} takes a number, got {x!r}; glue words with glue.text(name, words)") from None
    if math.isnan(x):
        raise ValueError(f"{what} got NaN, which a sentence cannot print: glue a word instead "
                         f"(glue.text(name, 'not measured')), or fix the computation that produced it")
    return x


def _unsigned_zero(text: str) -> str:
    """``text`` without its minus sign when every digit in it is 0 ("-0.0" -> "0.0", "-0" -> "0")."""
    if text.startswith("-") and not any(c in "123456789" for c in text):
        return text[1:]
    return text


def _infinite(x: float) -> str:
    return "∞" if x > 0 else "-∞"


def number(x, digits: int = 3, floor: float = FLOOR, zero: str = "0") -> str:
    """``x`` with ``digits`` significant digits, as :func:`lpft.report.fmt` prints it (``1.55e+03``, ``0.0123``),
    except that an exact zero prints as ``zero`` and ``-0.0`` as ``zero`` too; ``|x| < floor`` (nonzero) prints as
    ``"<1e-12"``. NaN raises ValueError; infinity prints as ``"∞"``."""
    x = _real(x, "number()")
    if x == 0:
        return zero
    if math.isinf(x):
        return _infinite(x)
    if abs(x) < floor:
        return f"<{floor:.0e}"
    return f"{x:.{digits}g}"  # never "-0": %g keeps a nonzero value's leading digit


def significant(x, digits: int = 3) -> str:
    """``x`` rounded to ``digits`` significant digits and written out with thousands separators, trailing zeros
    dropped: ``1549.6 -> "1,550"``, ``1.6 -> "1.6"``, ``0.000123456 -> "0.000123"``. Magnitudes below 1e-4 keep the
    exponent (``"1.2e-05"``). Exact zero prints as ``"0"``; NaN raises ValueError; infinity prints as ``"∞"``."""
    x = _real(x, "significant()")
    if x == 0:
        return "0"
    if math.isinf(x):
        return _infinite(x)
    rounded = f"{x:.{digits - 1}e}"  # "1.55e+03": the rounding, and the power of ten after it (999.6 -> 1.00e+03)
    exponent = int(rounded.partition("e")[2])
    if exponent < math.log10(SMALLEST_POSITIONAL):
        return f"{x:.{digits}g}"
    text = f"{float(rounded):,.{max(0, digits - 1 - exponent)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def fixed(x, decimals: int = 1) -> str:
    """``x`` with exactly ``decimals`` decimals and thousands separators (``1234.56 -> "1,234.6"``). A negative value
    that rounds to zero prints as ``"0.0"``, not ``"-0.0"``. NaN raises ValueError; infinity prints as ``"∞"``."""
    x = _real(x, "fixed()")
    if math.isinf(x):
        return _infinite(x)
    return _unsigned_zero(f"{x:,.{decimals}f}")


def percent(fraction, decimals: int = 1) -> str:
    """A fraction as a percentage with ``decimals`` decimals: ``percent(0.972) == "97.2%"``,
    ``percent(-0.0004) == "0.0%"``. NaN raises ValueError."""
    return fixed(100 * _real(fraction, "percent()"), decimals) + "%"


def interval(mean, half, decimals: int = 1, unit: str = "") -> str:
    """A mean and the half-width of its interval, in the units the prose uses: ``interval(97.2, 0.6) ==
    "97.2 ± 0.6"``; ``unit`` is appended (``interval(97.2, 0.6, unit="%") == "97.2 ± 0.6%"``). A negative
    half-width, or NaN in either, raises ValueError."""
    if _real(half, "interval()") < 0:
        raise ValueError(f"interval(): the half-width {half!r} is negative; pass its absolute value")
    return f"{fixed(mean, decimals)} ± {fixed(half, decimals)}{unit}"


def compare(a, b, form: Callable[[float], str] = percent, both: str = "{} for both",
            versus: str = "{} vs {}") -> str:
    """Two values as the prose compares them, each printed by ``form`` (default :func:`percent`): equal once
    printed -> ``both`` (``"97.2% for both"``), otherwise ``versus`` (``"97.2% vs 96.8%"``). Saying "97.2% vs
    97.2%" would claim a difference the printed digits do not show. NaN raises ValueError."""
    first, second = form(a), form(b)
    return both.format(first) if first == second else versus.format(first, second)


def ratio(x, digits: int = 3, unit: str = "×", same: str = "about as large as") -> str:
    """A ratio of two magnitudes for "A is {ratio} B": ``ratio(1549.6) == "1,550×"``, ``ratio(1.6) == "1.6×"``,
    ``ratio(1549.6, unit=" times") == "1,550 times"``; a ratio that prints as 1 at ``digits`` significant digits
    reads ``same`` instead (``ratio(0.99996) == "about as large as"``), so the prose never says "1 times". A
    negative, infinite or NaN ratio raises ValueError (a ratio of magnitudes is finite and at least 0)."""
    x = _real(x, "ratio()")
    if x < 0 or math.isinf(x):
        raise ValueError(f"ratio() got {x!r}; a ratio of magnitudes is finite and at least 0 (an infinite one "
                         f"means a zero denominator: say that in words with glue.text)")
    text = significant(x, digits)
    return same if text == "1" else f"{text}{unit}"


def count(n, zero: str = "0") -> str:
    """A whole number with thousands separators (``count(1549) == "1,549"``); 0 prints as ``zero`` (e.g.
    ``count(0, zero="none")``). A value that is not a whole number (2.5, NaN, infinity) raises ValueError."""
    x = _real(n, "count()")
    if not x.is_integer():
        raise ValueError(f"count() prints whole numbers, got {n!r}; use number() or significant() for a measurement")
    return zero if x == 0 else f"{int(x):,}"
