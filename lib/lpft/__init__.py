"""lpft: the library behind the executable companion to the LP-FT paper (Kumar et al., ICLR 2022).

Three layers; imports go one way only (``lpft.book`` -> ``lpft.scale`` -> ``lpft``, and ``lpft.book`` -> ``lpft``):

* ``lpft`` (this package, the core): the paper's ideas, with NumPy, SciPy, pandas, PyTorch and scikit-learn alone.
  :mod:`lpft.theory` (two-layer linear networks, Section 3: setting, errors, LP), :mod:`lpft.dynamics` (how FT and
  LP-FT train there: gradient flow, GD, batched GD), :mod:`lpft.bound` (the FT lower bound, eq. 3.7),
  :mod:`lpft.sweeps` (LP / FT / LP-FT over a grid of settings), :mod:`lpft.beyond` (outside the theorem's
  assumptions), :mod:`lpft.digits` (two real digit domains and the small network), :mod:`lpft.pretrain` (supervised
  and contrastive pretraining, cached), :mod:`lpft.finetune` (LP, FT, LP-FT and later methods),
  :mod:`lpft.protocol` (the paper's protocol: selection on ID validation, claims), :mod:`lpft.robustness`,
  :mod:`lpft.fixedpoint` (F8Net-style integer inference: ``qformat``, ``kernel``, ``network``, ``deploy``),
  :mod:`lpft.records` (one record per run, provenance, digests, archives), :mod:`lpft.checkpoints` (cached weights),
  :mod:`lpft.numeric` (the pinned numeric environment),
  :mod:`lpft.paper` (the paper's numbers and settings), :mod:`lpft.report` (numbers as the book prints them),
  :mod:`lpft.prose` (numbers inside sentences).
* :mod:`lpft.scale`: the paper-scale runs (image datasets in their published formats, backbones and checkpoint
  readers, CLIP, the GPU training loop, sweeps); ``pip install "lpft[scale]"``.
* :mod:`lpft.book`: what exists because this is a book (chapter profiles, repository paths, the ``lpft-run``
  papermill runner, the figure style, the Sphinx extensions); ``pip install "lpft[book]"``.
"""
from lpft import numeric as _numeric

# One BLAS/OpenMP thread per process unless the caller chose otherwise: on 2-core machines a second thread made small
# SVDs ~30x slower under load (effective when lpft is imported before NumPy). The book's processes get the whole
# pinned numeric environment (lpft.numeric) from lpft-run and the tests.
_numeric.default_threads()

__version__ = "0.1.0"
