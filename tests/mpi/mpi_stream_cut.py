"""Run by tests/mpi/test_stream_mpi.py under ``mpiexec -n P`` with rows streamed from
DATA: after the second iteration rank 0 cuts DATA to half its size (all ranks wait for
it), so the next pass fails. Every rank writes ``ERROR-CLASS: MESSAGE`` for the error
that ``mpigd.fit`` raised there (or ``no error``) to ``OUT.R``, R its rank.

Usage: python tests/mpi/mpi_stream_cut.py DATA OUT
"""

import os
import sys

from mpi4py import MPI

from mpigd import fit
from mpigd.errors import MpigdError


def main(path: str, out: str) -> None:
    comm = MPI.COMM_WORLD

    def cut(progress) -> None:
        if progress.nit == 2:
            if comm.rank == 0:
                os.truncate(path, os.path.getsize(path) // 2)
            comm.Barrier()

    outcome = "no error"
    try:
        fit(path, "logistic", comm=comm, optimizer="gd", max_iter=50, tol=0, callback=cut)
    except MpigdError as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    with open(f"{out}.{comm.rank}", "w") as f:
        f.write(outcome)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
