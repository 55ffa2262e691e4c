"""Run by the tests under ``mpiexec -n 2``: :func:`mpigd.fit` with each rank's rows in
memory, spoiled on one rank in a way that is not a file's (labels that are text, no
labels, another width, weights on one rank only). Every rank must raise the same error,
with no hang; rank 0 prints one line per case, ``CASE: message``, and ``in step`` once a
good fit after them works. Usage: python tests/mpi/mpi_local_rows.py
"""

import numpy as np
from mpi4py import MPI

import mpigd
from mpigd.io.dataset import DatasetInfo, LocalData

comm = MPI.COMM_WORLD
rank = comm.rank
info = DatasetInfo("", "X", "y", 4 * comm.size, 3, np.dtype(np.float64), np.dtype(np.float64))
start = 4 * rank


def rows(X=None, y=None, w=None):
    X = np.eye(4, 3) + 0.1 * rank if X is None else X
    y = np.array([0.0, 1, 0, 1]) if y is None else y
    return LocalData(info, start, start + 4, X, None if isinstance(y, str) else y, w)


spoiled = {
    "text labels": rows(y=np.array(["a", "b", "c", "d"])),
    "no labels": rows(y="none"),
    "another width": rows(X=np.eye(4, 4)),
    "weights on one rank": rows(w=np.ones(4)) if rank == 0 else rows(),
}
for name, local in spoiled.items():
    mine = local if rank == 1 or name == "weights on one rank" else rows()
    try:
        mpigd.fit(mine, "logistic", comm=comm)
    except mpigd.MpigdError as exc:
        messages = comm.allgather(str(exc))
        assert len(set(messages)) == 1, messages
        if rank == 0:
            print(f"{name}: {messages[0]}", flush=True)
    else:
        raise AssertionError(f"{name}: no error on rank {rank}")
mpigd.fit(rows(), "logistic", comm=comm, l2=1e-2)
if rank == 0:
    print("in step", flush=True)
