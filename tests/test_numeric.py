"""The book's numeric environment (lpft.numeric): pinned kernel paths and threads give the same numbers whatever the
environment a process starts from, and the kernel paths do change the numbers when they are not pinned.

One machine cannot show that two CPUs agree; it can show that the variables through which CPUs differ (PyTorch's
kernel level, oneDNN's instruction set, MKL's code path, OpenBLAS's kernels, thread counts) no longer reach the
results once pinned. Each run below starts from a deliberately different environment.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from pytest_notebook.diffing import diff_notebooks, diff_to_string, filter_diff
from pytest_notebook.notebook import regex_replace_nb

from lpft import numeric

ROOT = Path(__file__).resolve().parents[1]
# Another machine's defaults, as far as this one can play them: PyTorch's scalar kernels, oneDNN capped at SSE4.1,
# MKL's "compatible" path, OpenBLAS's Sandy Bridge kernels, two threads.
ELSEWHERE = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE",
             "OPENBLAS_CORETYPE": "Sandybridge", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2",
             "OPENBLAS_NUM_THREADS": "2"}
# Three starting environments for the pipeline test: each kind of kernel choice alone, then all of them at once.
STARTS = {"PyTorch's scalar kernels": {"ATEN_CPU_CAPABILITY": "default"},
          "oneDNN at SSE4.1, MKL compatible": {"ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE"},
          "all of them, two threads": ELSEWHERE}
HAS_AVX2 = "avx2" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False

# A small pretrain + LP / FT / LP-FT pipeline of the digit chapter; prints a digest of everything it measured.
PIPELINE = """
import hashlib, json, sys, tempfile
if sys.argv[1] == "pin":
    from lpft import numeric
    numeric.pin()  # as lpft-run and the tests do, before NumPy or PyTorch is loaded
from types import SimpleNamespace
from lpft import protocol
from lpft.book.profiles import CHAPTERS
cfg = SimpleNamespace(**CHAPTERS["experiments-digits"]["quick"])
setup = {**protocol.labelled_pool_conditions(cfg), "pretrain_epochs": 2, "epochs": 3, "lp_C": (0.1,), "ft_lr": (1e-2,),
         "lpft_lr": (1e-4,), "methods": ("LP", "FT", "LP-FT"), "eval_shifts": (("invert", 1.0),)}
with tempfile.TemporaryDirectory() as cache:
    out = protocol.fit_seed(setup, 0, 0, {}, cache=cache)
out.pop("seconds")
print(hashlib.sha256(json.dumps(out, sort_keys=True, default=str).encode()).hexdigest())
"""


def pipeline_digest(env: dict, mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", PIPELINE, mode], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_pin_sets_every_variable_and_native_opts_out():
    env = numeric.pin({"ATEN_CPU_CAPABILITY": "avx512", "HOME": "/x"})
    assert env == {**numeric.PINNED, "HOME": "/x"}
    native = {numeric.OPT_OUT: "native", "ATEN_CPU_CAPABILITY": "avx512"}
    assert numeric.pin(dict(native)) == native
    with pytest.raises(ValueError, match="'pinned' .* or 'native'"):
        numeric.pin({numeric.OPT_OUT: "fast"})


@pytest.mark.skipif(not HAS_AVX2, reason="this CPU has no AVX2: the pinned kernels cannot run here")
def test_the_tests_run_in_the_pinned_environment():
    """conftest.py pins before the test processes load NumPy and PyTorch, so they report no difference."""
    assert numeric.problems() == []
    assert numeric.state()["torch_cpu_capability"] == "AVX2"


def test_problems_name_each_difference():
    current = {"torch_cpu_capability": "AVX512", "openblas": ["SkylakeX, 2 thread(s)"],
               "variables": {**numeric.PINNED, "MKL_CBWR": None}}
    found = numeric.problems(current)
    assert len(found) == 3 and "MKL_CBWR is None" in found[0] and "AVX512" in found[1] and "SkylakeX" in found[2]
    assert "lpft-run" in numeric.fix() and "ATEN_CPU_CAPABILITY=avx2" in numeric.fix()


def test_the_reproducibility_page_describes_a_recorded_environment_not_this_process(monkeypatch):
    """lpft-run describes each chapter's recorded numeric environment; the opt-out of the process that writes the
    description does not turn another run's unpinned record into a pinned one."""
    from lpft.book.run import describe_numeric

    pinned = {"torch_cpu_capability": "AVX2", "openblas": None, "variables": dict(numeric.PINNED)}
    other = {"torch_cpu_capability": "AVX512", "openblas": None, "variables": {**numeric.PINNED, "MKL_CBWR": None}}
    monkeypatch.setenv(numeric.OPT_OUT, "native")
    assert describe_numeric(pinned) == "numeric environment pinned (AVX2 kernels, one thread per process)"
    text = describe_numeric(other)
    assert text.startswith("numeric environment NOT the book's") and "MKL_CBWR is None" in text and "AVX512" in text
    assert describe_numeric(None) == "numeric environment not recorded"
    # a record whose state has no OpenBLAS entry (records store it without BLAS) is described, not refused
    assert describe_numeric({k: v for k, v in pinned.items() if k != "openblas"}).startswith("numeric environment pinned")


@pytest.mark.skipif(not HAS_AVX2, reason="this CPU has no AVX2: the pinned kernels cannot run here")
def test_pinned_results_do_not_depend_on_the_environment_a_process_starts_from():
    here = pipeline_digest(dict(os.environ), "as-is")  # this test process's environment, pinned by conftest.py
    for name, start in STARTS.items():
        assert pipeline_digest({**os.environ, **start}, "pin") == here, name
    # the control: the same starting environments, not pinned, change the results (so the pins are needed and this
    # test can fail)
    for name in ("PyTorch's scalar kernels", "all of them, two threads"):
        assert pipeline_digest({**os.environ, **STARTS[name], numeric.OPT_OUT: "native"}, "as-is") != here, name


def _text_diff(nb_regression, baseline, executed) -> str:
    """The notebook regression test's comparison (its replacements and ignored paths, pyproject.toml) of two executed
    notebooks, plus lpft-run's own stamp (metadata.lpft: date, wall time) and the cells' random ids."""
    a, b = (regex_replace_nb(nb, list(nb_regression.diff_replace)) for nb in (baseline, executed))
    found = filter_diff(diff_notebooks(a, b), [*nb_regression.diff_ignore, "/metadata/lpft", "/cells/*/id"])
    return diff_to_string(a, found, use_color=False) if found else ""


@pytest.mark.skipif(not HAS_AVX2, reason="this CPU has no AVX2: the pinned kernels cannot run here")
def test_a_training_chapter_run_by_lpft_run_from_another_environment_reproduces_its_baseline(nb_regression,
                                                                                            tmp_path):
    """experiments-cifar-stl's quick profile (a smoke run: ResNet training on generated images) by lpft-run, started
    from :data:`ELSEWHERE`, in a copy of the library and chapters with nothing computed yet (no records to read back):
    every text output equals the committed baseline's. (Started from the same environment without the pins,
    ``LPFT_NUMERIC=native``, the chapter printed 200 different lines, e.g. an OOD accuracy of 72.0 instead of 70.0,
    when this test was written.)"""
    for part in ("lib", "notebooks"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "requirements-lock.txt", tmp_path)
    env = {**os.environ, **ELSEWHERE, "PYTHONPATH": str(tmp_path / "lib")}
    env.pop(numeric.OPT_OUT, None)
    done = subprocess.run([sys.executable, "-m", "lpft.book.run", "experiments-cifar-stl", "--out",
                           str(tmp_path / "executed"), "--no-progress"], env=env, capture_output=True, text=True,
                          timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    executed = nbformat.read(tmp_path / "executed" / "experiments-cifar-stl.ipynb", as_version=4)
    assert executed.metadata.lpft["environment"]["numeric"]["variables"] == numeric.PINNED
    assert any((tmp_path / "results").rglob("*.json"))  # the records were computed in the copy, not read back
    baseline = nbformat.read(ROOT / "tests" / "baselines" / "experiments-cifar-stl.ipynb", as_version=4)
    assert _text_diff(nb_regression, baseline, executed) == ""
    # the stamp's description says so
    log = json.loads((tmp_path / "executed" / "run-log.json").read_text())
    assert "pinned" in (tmp_path / "executed" / "reproducibility.md").read_text() and log["chapters"]
