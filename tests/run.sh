#!/usr/bin/env bash
# Set up .venv if needed and run the whole test suite: lint, serial unit tests, and the
# multi-rank tests, which launch mpiexec with 1 to 4 ranks themselves; every marker (slow,
# slurm, cluster) included. Then the numerical tests, those whose results go through the
# kernels, again on the NumPy kernels (MPIGD_KERNELS=numpy), the fallback of a machine where
# the compiled kernels were not built, and the kernel tests on the dense sweep's variant
# that does not fuse multiply-adds (MPIGD_KERNELS_NO_FMA=1, as CPUs without FMA sum).
# Last, the memory-safety step (tests/sanitize.sh): the compiled kernels rebuilt with
# AddressSanitizer and UBSan under the kernel, sparse, estimator, memory-safety and fuzz
# tests.
# Extra arguments go to pytest (e.g. -k partition, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/venv.sh mpich,test
ruff check .
python -m pytest "$@"
MPIGD_KERNELS=numpy python -m pytest -q "$@" \
    tests/kernels/test_kernels.py tests/kernels/test_objective.py tests/optimize \
    tests/io/test_sparse.py tests/io/test_stream.py tests/mpi/test_mpi.py tests/selection
MPIGD_KERNELS_NO_FMA=1 python -m pytest -q "$@" tests/kernels/test_kernels.py
bash tests/sanitize.sh "$@"
