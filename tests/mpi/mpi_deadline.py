"""Run by the tests under ``mpiexec -n 2``: reductions in a loop, for the deadline.

Usage: python tests/mpi/mpi_deadline.py SECONDS [SILENT_RANK]
Rank 0 prints every rank's process id on one line (ranks' own lines can interleave,
e.g. under PYTHONUNBUFFERED), then every rank reduces a number every 10 ms for SECONDS,
until the first rank's time is up (agreed in the reduction, so that every rank makes as
many); with SILENT_RANK, that rank stops taking part (it sleeps instead, like a node cut
off) once the loop has run a second. Rank 0 prints "done" at the end.
"""

import os
import sys
import time

import numpy as np
from mpi4py import MPI

from mpigd.parallel import allreduce_sum


def main(seconds: float, silent: int | None) -> None:
    comm = MPI.COMM_WORLD
    pids = comm.gather(os.getpid())
    if comm.rank == 0:
        print(" ".join(map(str, pids)), flush=True)
    start = time.monotonic()
    while True:
        if comm.rank == silent and time.monotonic() - start > 1.0:
            time.sleep(3600)
        # [1, this rank's time is up]: the ranks stop after the same reduction
        buffer = np.array([1.0, time.monotonic() - start >= seconds])
        allreduce_sum(comm, buffer)
        if buffer[1]:
            break
        time.sleep(0.01)
    if comm.rank == 0:
        print("done", flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)
