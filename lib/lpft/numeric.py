"""One numeric environment for every process that computes the book's numbers on a CPU.

PyTorch (ATen's vectorised kernels, oneDNN's convolutions, MKL's matrix products) and OpenBLAS (under NumPy, SciPy
and scikit-learn) each choose their kernels by the CPU's vendor and instruction set. The choices round differently,
and training amplifies the last bit: the same pipeline on an AVX-512 and on an AVX2 machine lands on different
weights, and the number of threads changes the order of reductions again. So the book pins them, to kernels every
x86-64 CPU of the last decade runs (AVX2 and FMA, "Haswell" in OpenBLAS's naming) and to one thread per process
(independent work runs in parallel processes instead):

==========================  =========  =====================================================================
variable                    value      what it fixes
==========================  =========  =====================================================================
``ATEN_CPU_CAPABILITY``     avx2       PyTorch's own vectorised CPU kernels (read when first used)
``ONEDNN_MAX_CPU_ISA``      AVX2       oneDNN, which computes PyTorch's CPU convolutions (read when first used)
``MKL_CBWR``                AVX2       MKL's code path ("conditional numerical reproducibility")
``OPENBLAS_CORETYPE``       Haswell    OpenBLAS's kernels (read when NumPy is imported)
``*_NUM_THREADS``           1          OpenMP, MKL and OpenBLAS threads
==========================  =========  =====================================================================

These variables are read when each library loads or first computes, so they must be in the environment before
NumPy or PyTorch is imported: :func:`pin` is called by ``lpft-run`` before it starts the chapters' kernels (which
inherit it, as do the worker processes they spawn), by the tests' ``conftest.py`` and by ``lpft-sweep`` on a CPU.
:func:`state` reads back what the libraries actually use, :func:`problems` says where that differs from the pins
(every chapter's first cell warns then, and the provenance box shows it). ``LPFT_NUMERIC=native`` opts out: the
machine's own, possibly faster, kernels, with numbers that may differ from the book's in the last bits (and, after
training, in more). On the AMD machine the baselines were made on, which has AVX2 but no AVX-512, PyTorch, oneDNN and
OpenBLAS take the pinned kernels by default, but MKL's default path is not its AVX2 reproducibility path: pinning
changed the numbers of one chapter there (a paper-scale smoke run). On an AVX-512 machine the pins trade the wider
kernels' speed for the book's numbers.
"""
from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}
OPT_OUT = "LPFT_NUMERIC"  # "native": keep the machine's own kernels and threads
THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def pin(env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set every variable of :data:`PINNED` in ``env`` (default ``os.environ``), overriding what was there, unless
    ``env[LPFT_NUMERIC]`` is ``"native"``; returns ``env``. Only processes started afterwards, or libraries loaded
    afterwards, see the values."""
    env = os.environ if env is None else env
    if env.get(OPT_OUT, "pinned") == "native":
        return env
    if env.get(OPT_OUT, "pinned") != "pinned":
        raise ValueError(f"{OPT_OUT} must be 'pinned' (the default) or 'native'; got {env[OPT_OUT]!r}")
    env.update(PINNED)
    return env


def default_threads() -> None:
    """One thread per process unless the caller chose otherwise (``setdefault``): what ``import lpft`` does, so that
    the library, reused on its own, changes no setting a user made."""
    for var in THREADS:
        os.environ.setdefault(var, PINNED[var])


def state(blas: bool = True) -> dict:
    """What this process's libraries use: PyTorch's CPU kernel level, OpenBLAS's kernels and threads (via
    threadpoolctl, when NumPy is loaded and ``blas``), and the values of the pinned variables in the environment.
    Records store it with ``blas=False`` (:func:`lpft.records.environment`): a launcher such as ``lpft-run`` loads NumPy
    before it pins, so its own OpenBLAS says nothing about the kernels of the processes it starts."""
    import torch

    out = {"torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "openblas": None,
           "variables": {k: os.environ.get(k) for k in PINNED}}
    if blas and "numpy" in sys.modules:
        from threadpoolctl import threadpool_info

        blas = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
        out["openblas"] = sorted({f"{i.get('architecture')}, {i.get('num_threads')} thread(s)" for i in blas})
    return out


def problems(current: dict | None = None) -> list[str]:
    """Where a :func:`state` (default: this process's, where nothing is checked under ``LPFT_NUMERIC=native``) differs
    from the pinned environment; empty when it does not (:func:`fix` says how to get it)."""
    if current is None:
        if os.environ.get(OPT_OUT) == "native":
            return []
        current = state()
    out = [f"{k} is {v!r}, not {PINNED[k]!r}" for k, v in current["variables"].items() if v != PINNED[k]]
    if current["torch_cpu_capability"] != "AVX2":
        out.append(f"PyTorch uses {current['torch_cpu_capability']} kernels, not AVX2"
                   + (" (this CPU lacks AVX2: its numbers will differ from the book's)"
                      if current["variables"]["ATEN_CPU_CAPABILITY"] == "avx2" else ""))
    if current.get("openblas") and any(not s.startswith("Haswell, 1 ") for s in current["openblas"]):
        out.append(f"OpenBLAS runs {', '.join(current['openblas'])}, not Haswell with 1 thread (it was loaded "
                   f"before the variables were set)")
    return out


def fix() -> str:
    """How to get the pinned environment, for messages."""
    return ("run the chapter through lpft-run (the tests through scripts/test.sh), or set, before Python starts: "
            + " ".join(f"{k}={v}" for k, v in PINNED.items()))
