# shellcheck shell=bash
# Sourced by the batch scripts beside it, after they found the checkout (MPIGD_ROOT).
# Sets up the environment of a mpigd job step and defines how to launch and watch it.
#
# Settings, from the environment (sbatch passes the submitting shell's environment on):
#   MPIGD_LAUNCHER   srun (default) or mpiexec (the mpiexec on PATH, inside the allocation)
#   MPIGD_SRUN_MPI   srun's --mpi plugin: pmi2 (default; the PyPI mpich wheel, MPICH, Intel
#                    MPI) or pmix (Open MPI); `srun --mpi=list` shows what the site offers
#   MPIGD_SETUP      shell commands run first, e.g. "module load openmpi/4.1 hdf5"
#   MPIGD_VENV       virtual environment to activate (default: the checkout's .venv, if it
#                    exists; otherwise mpigd must already be on PATH)

MPIGD_ROOT=$(cd "$MPIGD_ROOT" && pwd)
mpigd_name=${SLURM_JOB_NAME:-mpigd}
say() { echo "$mpigd_name: $*" >&2; }

[ -n "${SLURM_JOB_ID:-}" ] || { say "not inside a SLURM job: submit with sbatch"; exit 2; }
if [ -n "${MPIGD_SETUP:-}" ]; then
    eval "$MPIGD_SETUP" || { say "MPIGD_SETUP failed: $MPIGD_SETUP"; exit 1; }
fi
mpigd_venv=${MPIGD_VENV:-$MPIGD_ROOT/.venv}
# shellcheck disable=SC1091
if [ -f "$mpigd_venv/bin/activate" ]; then source "$mpigd_venv/bin/activate"; fi
command -v mpigd >/dev/null || { say "mpigd is not on PATH: set MPIGD_VENV or MPIGD_SETUP"; exit 1; }

# One BLAS thread per CPU of a task, so that ranks x threads = the CPUs allocated.
threads=${SLURM_CPUS_PER_TASK:-1}
export MPIGD_NUM_THREADS=$threads OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
    MKL_NUM_THREADS=$threads

# The launcher: "${launcher[@]}" -n P mpigd ...
case "${MPIGD_LAUNCHER:-srun}" in
    srun) launcher=(srun --mpi="${MPIGD_SRUN_MPI:-pmi2}" --kill-on-bad-exit=1) ;;
    mpiexec) launcher=(mpiexec) ;;
    *) say "MPIGD_LAUNCHER must be srun or mpiexec, not $MPIGD_LAUNCHER"; exit 2 ;;
esac
say "job $SLURM_JOB_ID: ${SLURM_NTASKS:-1} tasks on ${SLURM_JOB_NUM_NODES:-1} node(s)," \
    "$threads thread(s) each, launcher ${launcher[*]}, $(command -v mpigd)"
export MPIGD_ENV_READY=1  # launch/bench-sweep.sh: use this environment, not .venv

# Run a command in the background and wait for it, passing SIGUSR1/SIGTERM on to its
# ranks (mpigd then checkpoints and exits with 75). Backgrounding lets the trap run as
# soon as the signal arrives instead of after the step ends. Sets $status.
# srun does not pass USR1 on, so the job's steps (not this shell) get it from scancel;
# mpiexec passes USR1 and TERM on to every rank. SLURM may send the --signal warning up to
# 60 s early; one that comes before the ranks have started is lost, and the TERM at the
# limit itself then makes mpigd checkpoint instead.
pass_on() {
    say "$1: asking mpigd to checkpoint and stop"
    if [ "${MPIGD_LAUNCHER:-srun}" = srun ]; then
        scancel --signal="$1" "$SLURM_JOB_ID"
    elif [ -n "${step:-}" ]; then
        kill -"$1" "$step" 2>/dev/null
    fi
}
watch_step() {
    trap 'pass_on USR1' USR1
    trap 'pass_on TERM' TERM
    "$@" &
    step=$!
    status=0
    wait "$step" || status=$?
    while kill -0 "$step" 2>/dev/null; do  # wait returned early for a trapped signal
        status=0
        wait "$step" || status=$?
    done
    trap - USR1 TERM
}
