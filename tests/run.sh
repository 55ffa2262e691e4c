#!/usr/bin/env bash
# Set up .venv if needed and run the whole test suite: lint, serial unit tests, and the
# multi-rank tests, which launch mpiexec with 1 to 4 ranks themselves. Then the numerical
# tests again on the NumPy kernels (MPIGD_KERNELS=numpy), the fallback of a machine where
# the compiled kernels were not built. Last, the memory-safety step (tests/sanitize.sh):
# the compiled kernels rebuilt with AddressSanitizer and UBSan under the kernel, sparse,
# estimator, memory-safety and fuzz tests.
# Extra arguments go to pytest (e.g. -k partition, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/venv.sh mpich,test
ruff check .
python -m pytest "$@"
MPIGD_KERNELS=numpy python -m pytest -q "$@" \
    tests/test_kernels.py tests/test_objective.py tests/test_optimize.py \
    tests/test_optimizers.py tests/test_sparse.py tests/test_mpi.py tests/test_selection.py \
    tests/test_cv_checkpoint.py
bash tests/sanitize.sh "$@"
