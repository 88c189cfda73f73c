"""Notebook regression: every chapter, executed in the quick profile, reproduces its committed baseline.

The baselines in tests/baselines/ are written by `lpft-run --profile quick --out tests/baselines` (see book/how-to-run.md).
pytest-notebook re-executes each baseline and diffs its text outputs exactly (images and counts ignored, see
pyproject.toml). A guard first checks that the baseline was made from the current source of the chapter.
"""
from pathlib import Path

import jupytext
import nbformat
import pytest
from pytest_notebook.nb_regression import NBRegressionError

from lpft.book.profiles import CHAPTERS

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "tests" / "baselines"
REGEN = "regenerate with: lpft-run --profile quick --out tests/baselines"


def code_cells(nb):
    return [c.source.strip() for c in nb.cells
            if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


@pytest.mark.parametrize("name", list(CHAPTERS))
def test_baseline_is_current(name):
    path = BASELINES / f"{name}.ipynb"
    assert path.exists(), f"no baseline for chapter {name!r}; {REGEN}"
    baseline = nbformat.read(path, as_version=4)
    assert code_cells(baseline) == code_cells(jupytext.read(ROOT / "notebooks" / f"{name}.py")), \
        f"baseline of {name!r} is stale (its code differs from notebooks/{name}.py); {REGEN}"
    injected = [c for c in baseline.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'profile = "quick"' in injected[0].source, "baselines must be executed in the quick profile"


@pytest.mark.parametrize("name", list(CHAPTERS))
def test_chapter_reproduces_baseline(name, nb_regression):
    nb_regression.check(str(BASELINES / f"{name}.ipynb"))


def test_a_changed_library_constant_is_caught(nb_regression, tmp_path):
    """Perturb one constant of lpft.theory (the default dimension m of S) in a copy of a baseline: the check must fail."""
    nb = nbformat.read(BASELINES / "theory-features.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = ("import lpft.theory as _theory\n"
                     "_theory.Setting.__new__.__defaults__ = tuple(21 if f == 'm' else v for f, v in "
                     "zip(_theory.Setting._fields, _theory.Setting.__new__.__defaults__))\n" + params.source)
    perturbed = tmp_path / "theory-features-perturbed.ipynb"
    nbformat.write(nb, perturbed)
    with pytest.raises(NBRegressionError) as err:
        nb_regression.check(str(perturbed))
    assert "mean excess squared error" in str(err.value) or "OOD" in str(err.value)
