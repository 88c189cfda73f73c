"""lpft: the library behind the executable companion to the LP-FT paper (Kumar et al., ICLR 2022).

One module per idea: :mod:`lpft.theory` (two-layer linear networks, Section 3), :mod:`lpft.sweeps` (LP / FT / LP-FT over a
grid of settings), :mod:`lpft.bound` (the FT lower bound checked at scale), :mod:`lpft.beyond` (the same experiment
outside the theorem's assumptions), :mod:`lpft.profiles` (chapter parameters), :mod:`lpft.plotting`
(the book's one figure style), :mod:`lpft.report` (tables and numbers as the book prints them),
:mod:`lpft.execute` (runs chapters with papermill).
"""
import os

# One BLAS/OpenMP thread per process: on 2-core machines a second thread made small SVDs ~30x slower under load.
# (Effective when lpft is imported before NumPy, as every chapter does; lpft-run and the tests also set it.)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from lpft.profiles import start_chapter  # noqa: E402

__all__ = ["start_chapter"]
__version__ = "0.1.0"
