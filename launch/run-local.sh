#!/usr/bin/env bash
# Run mpigd with several MPI ranks on this machine.
#
#   bash launch/run-local.sh                     # the demo: logistic regression on
#                                                # data/flights.h5 with 2 ranks
#   bash launch/run-local.sh -n 4 train DATA.h5 --model linear --out model.h5
#
# Sets up .venv (MPI from the PyPI mpich wheel) on first use, runs one BLAS thread per
# rank, and launches with the mpiexec found first on PATH (the venv's). MPIEXEC_FLAGS
# adds launcher flags, e.g. MPIEXEC_FLAGS=--oversubscribe for Open MPI with more ranks
# than cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/venv.sh mpich

ranks=2
if [ "${1:-}" = "-n" ]; then
    ranks=$2
    shift 2
fi
if [ $# -eq 0 ]; then
    set -- train data/flights.h5 --model logistic --l2 1e-4 --out flights-model.h5
fi
export MPIGD_NUM_THREADS=${MPIGD_NUM_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# shellcheck disable=SC2086
exec mpiexec ${MPIEXEC_FLAGS:-} -n "$ranks" mpigd "$@"
