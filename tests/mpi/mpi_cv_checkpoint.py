"""Run by the tests under ``mpiexec``: a signal that reaches rank 0 alone, after the
path's last evaluation, stops every rank with a checkpoint (none goes on to the final
fit alone).

Usage: python tests/mpi/mpi_cv_checkpoint.py DATA.h5 CHECKPOINT.h5
Rank 0 prints, as JSON, what each rank's ``mpigd.cv`` ended with.
"""

import json
import os
import signal
import sys

from mpi4py import MPI

import mpigd
from mpigd.errors import Preempted
from mpigd.selection.objective import FoldObjectives

PENALTIES = 4


def main(data: str, checkpoint: str) -> None:
    comm = MPI.COMM_WORLD
    validation, count = FoldObjectives.validation, [0]

    def validating(self, *args):
        count[0] += 1
        if count[0] == PENALTIES and comm.rank == 0:  # the last penalty's scores
            os.kill(os.getpid(), signal.SIGUSR1)
        return validation(self, *args)

    FoldObjectives.validation = validating
    try:
        options = {"folds": 3, "l2_path": f"1:1e-3:{PENALTIES}", "checkpoint": checkpoint}
        mpigd.cv(data, "logistic", comm=comm, **options)
        outcome = "finished"
    except Preempted as exc:
        outcome = str(exc)
    outcomes = comm.gather(outcome)
    if comm.rank == 0:
        print(json.dumps(outcomes))


if __name__ == "__main__":
    main(*sys.argv[1:3])
