#!/usr/bin/env bash
# Strong or weak scaling sweep: `mpigd bench run` at each rank count, REPEATS times (one
# JSON record per run in OUTDIR), then `mpigd bench report OUTDIR`.
#
#   bash launch/bench-sweep.sh strong OUTDIR DATA.h5 [RANKS...]
#   bash launch/bench-sweep.sh weak OUTDIR ROWS_PER_RANK FEATURES [RANKS...]
#
# RANKS default to 1 2 4 ... up to $SLURM_NTASKS inside a SLURM allocation, else up to the
# cores of this machine. Weak scaling writes a synthetic logistic dataset of
# ROWS_PER_RANK x P rows for each P (seed 1) into OUTDIR. Environment: REPEATS (default 5),
# EVALS (timed evaluations per run, default 20), MODEL (default logistic), DTYPE (weak
# scaling data, default float64), MPIEXEC (default mpiexec), MPIEXEC_FLAGS; MPIGD_ENV_READY=1
# uses the mpigd on PATH instead of setting up .venv (the SLURM batch scripts set it).
set -euo pipefail
if [ -z "${MPIGD_ENV_READY:-}" ]; then source "$(dirname "$0")/venv.sh" mpich,plot; fi

kind=${1:?strong or weak}; out=${2:?output folder}; shift 2
if [ "$kind" = strong ]; then data=${1:?DATA.h5}; shift
elif [ "$kind" = weak ]; then per_rank=${1:?ROWS_PER_RANK}; features=${2:?FEATURES}; shift 2
else echo "kind must be strong or weak" >&2; exit 2; fi
ranks=("$@")
if [ ${#ranks[@]} -eq 0 ]; then
    limit=${SLURM_NTASKS:-$(nproc)}
    for ((p = 1; p <= limit; p *= 2)); do ranks+=("$p"); done
fi
repeats=${REPEATS:-5}
mkdir -p "$out"
export MPIGD_NUM_THREADS=1 OMP_NUM_THREADS=1
total=$((${#ranks[@]} * repeats)); done_runs=0
for p in "${ranks[@]}"; do
    if [ "$kind" = weak ]; then
        data=$out/weak-P$p.h5
        [ -f "$data" ] || mpigd data make "$data" --rows $((per_rank * p)) --features "$features" \
            --dtype "${DTYPE:-float64}" --seed 1 --quiet
    fi
    for ((r = 1; r <= repeats; r++)); do
        done_runs=$((done_runs + 1))
        echo "[$done_runs/$total] $kind scaling, P=$p, run $r of $repeats" >&2
        # shellcheck disable=SC2086
        ${MPIEXEC:-mpiexec} ${MPIEXEC_FLAGS:-} -n "$p" mpigd bench run "$data" \
            --model "${MODEL:-logistic}" --evals "${EVALS:-20}" --quiet \
            --out "$out/$kind-P$p-run$r.json"
    done
done
mpigd bench report "$out" --kind "$kind" --out "$out/$kind"
