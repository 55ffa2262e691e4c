"""Run by the tests under ``mpiexec -n P`` (P >= 2): the estimators' ranks agree before
they compute. Each case gives the ranks different or spoiled input; every rank must raise
the same ``ValueError`` (no hang, no MPI error), and a last fit with good input must then
still work (the ranks are in step). Rank 0 prints one line per case: its name and the
message. Usage: python tests/mpi/mpi_estimators_agree.py FOLDER
"""

import sys
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp
from mpi4py import MPI

from mpigd import LinearRegression, LogisticRegression
from mpigd.partition import block_range


def main(folder: Path) -> None:
    comm = MPI.COMM_WORLD
    rank = comm.rank
    rng = np.random.default_rng(0)
    m, n = 23, 3
    X = rng.standard_normal((m, n))
    y = (X[:, 0] + 0.3 * rng.standard_normal(m) > 0).astype(float)
    path = folder / "d.h5"
    if rank == 0:
        with h5py.File(path, "w") as f:
            f["X"], f["y"] = X, y
    comm.Barrier()
    start, stop = block_range(m, comm.size, rank)
    Xr, yr = X[start:stop], y[start:stop]
    hostile = sp.csr_matrix(Xr)
    hostile.indices[0] = 7 if rank == comm.size - 1 else hostile.indices[0]

    cases = {
        "parameters": lambda: LogisticRegression(l2=1e-3 if rank == 0 else 0.0).fit(Xr, yr),
        "kinds": lambda: LogisticRegression().fit(*((str(path),) if rank == 0 else (Xr, yr))),
        "paths": lambda: LinearRegression().fit(str(path) if rank == 0 else str(folder / "e.h5")),
        "widths": lambda: LinearRegression().fit(Xr if rank else Xr[:, :2], yr),
        "dtypes": lambda: LinearRegression().fit(Xr if rank else Xr.astype(np.float32), yr),
        "hostile": lambda: LogisticRegression().fit(hostile, yr),
        "y missing": lambda: LinearRegression().fit(Xr, None if rank == comm.size - 1 else yr),
        "comm": lambda: LinearRegression(comm="wrld").fit(Xr, yr),
        "weights": lambda: LinearRegression().fit(Xr, yr, None if rank else np.ones(len(yr))),
        "score": lambda: LinearRegression().fit(Xr, yr).score(Xr, yr[:1] if rank else yr),
    }
    for name, case in cases.items():
        try:
            case()
        except ValueError as exc:
            messages = comm.allgather(str(exc))
            assert len(set(messages)) == 1, messages  # the same error on every rank
            if rank == 0:
                print(f"{name}: {messages[0]}", flush=True)
        else:
            raise AssertionError(f"{name}: no error on rank {rank}")
    # Equal parameters of other types are equal: NumPy scalars, dicts in another order.
    weights = {0: 1.0, 1: 2.0} if rank else {np.int64(1): 2.0, 0: 1}
    LogisticRegression(l2=np.float64(1e-3) if rank else 1e-3, class_weight=weights).fit(Xr, yr)
    LinearRegression(l2=0 if rank else 0.0).fit(Xr, yr)
    # In step after all of that: named communicators, and a fit that works.
    world = LogisticRegression(comm="world", l2=1e-3).fit(Xr, yr)
    plain = LogisticRegression(l2=1e-3).fit(Xr, yr)
    assert np.array_equal(world.coef_, plain.coef_)
    alone = LinearRegression(comm="self").fit(Xr, yr)
    assert alone.coef_.shape == (n,)
    if rank == 0:
        print("in step", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
