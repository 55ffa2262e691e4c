"""Run by test_split.py under ``mpiexec -n P``: L-BFGS with its vectors split over the
ranks (at any size: ``SPLIT_FROM`` lowered to 1), trained whole, stopped at a checkpoint
and resumed, and on fewer parameters than ranks (checkpointed every 2 iterations: ranks
with no parameter gather theirs too); rank 0 saves what every rank holds and how often
the slices' dot products were reduced.

Usage: python tests/mpi/mpi_split.py SOFTMAX.h5 NARROW.h5 FOLDER OUT.npz
"""

import sys
from pathlib import Path

import numpy as np
from mpi4py import MPI

from mpigd import fit, vectors

OPTIONS = {"optimizer": "lbfgs", "l2": 1e-2, "tol": 1e-9, "ftol": 0.0, "max_iter": 500}


def counted(dots):
    """``RankSlices.dots``, counting its calls in ``CALLS``: proof that training split."""

    def count(self, *pairs):
        CALLS[0] += 1
        return dots(self, *pairs)

    return count


CALLS = [0]


def main(softmax, narrow, folder, out):
    comm = MPI.COMM_WORLD
    vectors.SPLIT_FROM = 1
    vectors.RankSlices.dots = counted(vectors.RankSlices.dots)
    assert isinstance(vectors.vectors_for(comm, 18), vectors.RankSlices) == (comm.size > 1)
    checkpoint = Path(folder) / f"split-{comm.size}.ckpt"
    runs = {
        "whole": lambda: fit(softmax, "softmax", comm=comm, **OPTIONS),
        "stopped": lambda: fit(
            softmax, "softmax", comm=comm, checkpoint=checkpoint, checkpoint_every=3,
            **{**OPTIONS, "max_iter": 7},
        ),
        "resumed": lambda: fit(softmax, "softmax", comm=comm, resume=checkpoint, **OPTIONS),
        "narrow": lambda: fit(
            narrow, "logistic", comm=comm, checkpoint=Path(folder) / f"narrow-{comm.size}.ckpt",
            checkpoint_every=2, **OPTIONS,
        ),
    }  # fmt: skip
    saved = {}
    for name, run in runs.items():
        fitted = run()
        theta = np.append(np.ravel(fitted.model.coef), fitted.model.intercept)
        mine = (theta, np.asarray(fitted.model.history), fitted.result.nit)
        everyone = comm.gather(mine, root=0)
        if comm.rank == 0:
            thetas, histories, nits = zip(*everyone, strict=True)
            saved.update(
                {f"{name}/theta": thetas, f"{name}/history": histories, f"{name}/nit": nits}
            )
    if comm.rank == 0:
        np.savez(out, **saved, split_dots=CALLS[0])


if __name__ == "__main__":
    main(*sys.argv[1:])
