"""The words a chapter glues into its sentences (lpft.prose, lpft.book.glue): exact strings for every rule."""
import math

import numpy as np
import pytest

from lpft import prose
from lpft.report import fmt


@pytest.mark.parametrize("x, kwargs, expected", [
    (0.123456, {}, "0.123"),
    (1549.6, {}, "1.55e+03"),                  # as lpft.report.fmt prints it; ratio() and significant() write 1,550
    (0.0123, {"digits": 2}, "0.012"),
    (0, {}, "0"),                              # an exact zero is a result, not round-off
    (0.0, {"zero": "none"}, "none"),
    (-0.0, {}, "0"),                           # never "-0"
    (-0.0, {"floor": 0}, "0"),
    (1e-13, {}, "<1e-12"),                     # nonzero, below the floor: round-off
    (-1e-15, {}, "<1e-12"),                    # |x| below the floor, whatever its sign
    (1e-13, {"floor": 1e-20}, "1e-13"),
    (-0.004, {}, "-0.004"),
    (math.inf, {}, "∞"),
    (-math.inf, {}, "-∞"),
    (np.float32(0.5), {}, "0.5"),
    (np.int64(7), {}, "7"),
])
def test_number(x, kwargs, expected):
    assert prose.number(x, **kwargs) == expected


@pytest.mark.parametrize("x", [0.972, 1549.6, 3, 1e-13, -0.004, 0.99996, 123456.0])
def test_number_prints_ordinary_values_as_tables_do(x):
    """Chapters print tables with lpft.report.fmt; their prose must show the same digits."""
    assert prose.number(x) == fmt(x)


@pytest.mark.parametrize("x, digits, expected", [
    (1549.6, 3, "1,550"),
    (1.6, 3, "1.6"),                           # trailing zeros dropped, as %g does
    (0.99996, 3, "1"),
    (999.6, 3, "1,000"),                       # the rounding carries into the next power of ten
    (123456.0, 3, "123,000"),
    (0.000123456, 3, "0.000123"),
    (1.23e-5, 3, "1.23e-05"),                  # below 1e-4 the exponent is shorter than the zeros
    (-1549.6, 2, "-1,500"),
    (0.0, 3, "0"),
    (-0.0, 3, "0"),
    (math.inf, 3, "∞"),
])
def test_significant(x, digits, expected):
    assert prose.significant(x, digits) == expected


@pytest.mark.parametrize("x, decimals, expected", [
    (97.24, 1, "97.2"),
    (1234.56, 1, "1,234.6"),
    (-0.04, 1, "0.0"),                         # rounds to zero: no sign
    (-0.0, 2, "0.00"),
    (-1e-15, 1, "0.0"),
    (-0.06, 1, "-0.1"),
    (2.5, 0, "2"),                             # Python rounds half to even
])
def test_fixed(x, decimals, expected):
    assert prose.fixed(x, decimals) == expected


@pytest.mark.parametrize("x, kwargs, expected", [
    (0.972, {}, "97.2%"),
    (0.97249, {"decimals": 2}, "97.25%"),
    (1, {"decimals": 0}, "100%"),
    (0, {}, "0.0%"),
    (-0.0004, {}, "0.0%"),                     # never "-0.0%"
    (-0.0006, {}, "-0.1%"),
])
def test_percent(x, kwargs, expected):
    assert prose.percent(x, **kwargs) == expected


def test_interval():
    assert prose.interval(97.2, 0.6) == "97.2 ± 0.6"
    assert prose.interval(97.24, 0.63, unit="%") == "97.2 ± 0.6%"
    assert prose.interval(-0.02, 0.31) == "0.0 ± 0.3"
    assert prose.interval(1.234, 0.056, decimals=2) == "1.23 ± 0.06"
    with pytest.raises(ValueError, match="negative; pass its absolute value"):
        prose.interval(97.2, -0.6)


def test_compare():
    assert prose.compare(0.972, 0.968) == "97.2% vs 96.8%"
    assert prose.compare(0.9721, 0.9718) == "97.2% for both"   # equal once printed: no "97.2% vs 97.2%"
    assert prose.compare(0.9721, 0.9718, form=lambda v: prose.percent(v, 2)) == "97.21% vs 97.18%"
    assert prose.compare(-0.0004, 0.0, both="{} each") == "0.0% each"
    assert prose.compare(3, 4, form=prose.count, versus="{} rather than {}") == "3 rather than 4"


@pytest.mark.parametrize("x, kwargs, expected", [
    (1549.6, {}, "1,550×"),
    (1549.6, {"unit": " times"}, "1,550 times"),
    (1.6, {}, "1.6×"),
    (145.2, {}, "145×"),
    (0.209, {}, "0.209×"),
    (0.99996, {}, "about as large as"),        # never "1 times"
    (1.0004, {"same": "as large as"}, "as large as"),
    (1.004, {"digits": 4}, "1.004×"),
    (0, {}, "0×"),
])
def test_ratio(x, kwargs, expected):
    assert prose.ratio(x, **kwargs) == expected


@pytest.mark.parametrize("x", [-2.0, math.inf])
def test_ratio_refuses_negative_and_infinite(x):
    with pytest.raises(ValueError, match="finite and at least 0"):
        prose.ratio(x)


@pytest.mark.parametrize("n, kwargs, expected", [
    (1549, {}, "1,549"),
    (0, {}, "0"),
    (0, {"zero": "none"}, "none"),
    (-0.0, {"zero": "no"}, "no"),
    (np.int64(12), {}, "12"),
    (3.0, {}, "3"),
])
def test_count(n, kwargs, expected):
    assert prose.count(n, **kwargs) == expected


@pytest.mark.parametrize("n", [2.5, math.inf])
def test_count_refuses_fractions(n):
    with pytest.raises(ValueError, match="prints whole numbers"):
        prose.count(n)


@pytest.mark.parametrize("formatter", [prose.number, prose.significant, prose.fixed, prose.percent, prose.ratio,
                                       prose.count, lambda x: prose.interval(x, 0.1), lambda x: prose.compare(x, 1)])
@pytest.mark.parametrize("missing", [math.nan, np.float64("nan"), None])
def test_nan_is_refused_naming_the_fix(formatter, missing):
    with pytest.raises(ValueError, match=r"NaN, which a sentence cannot print: glue a word instead \(glue.text"):
        formatter(missing)


def test_words_are_refused():
    with pytest.raises(TypeError, match=r"takes a number, got '3'; glue words with glue.text"):
        prose.number("3")


def test_glue_number_and_text(monkeypatch):
    pytest.importorskip("myst_nb")
    from lpft.book import glue
    glued = {}
    monkeypatch.setattr(glue, "glue", lambda name, value, display: glued.__setitem__(name, value))
    assert glue.number("a", 0.97249) == "0.972"
    assert glue.number("b", 1549.6, digits=2) == "1.5e+03"
    assert glue.number("c", 0.0) == "0"                        # was "<1e-12"
    assert glue.number("d", -0.0, floor=0) == "0"              # was "-0"
    assert glue.number("e", 1e-13) == "<1e-12"
    assert glue.number("f", math.nan) == "—"                   # a missing value, as tables print it
    assert glue.number("g", None) == "—"
    assert glue.number("h", "holds") == "holds"
    assert glue.text("i", prose.ratio(0.99996)) == "about as large as"
    assert glued == {"a": "0.972", "b": "1.5e+03", "c": "0", "d": "0", "e": "<1e-12", "f": "—", "g": "—",
                     "h": "holds", "i": "about as large as"}
    with pytest.raises(TypeError, match="format it first with lpft.prose"):
        glue.text("j", 0.5)
