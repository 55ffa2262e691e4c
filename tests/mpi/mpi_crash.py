"""Run by test_mpi.py: rank 1 fails unexpectedly while the others wait in a collective.
Without the guard this job would hang forever."""

import sys

from mpi4py import MPI

from mpigd.cli.guard import run_guarded

comm = MPI.COMM_WORLD


def main() -> int:
    if comm.rank == 1:
        raise RuntimeError("simulated failure")
    comm.Barrier()
    return 0


sys.exit(run_guarded(main, comm))
