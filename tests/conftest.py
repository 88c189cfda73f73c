import os

# One BLAS/OpenMP thread in the test process and in every kernel pytest-notebook starts (they inherit this).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
