"""Run by the tests under ``mpiexec -n P``: several ``mpigd.fit`` runs in one launch.

Usage: python tests/mpi/mpi_fit.py SPEC.json OUT.npz
SPEC is a list of {"name": ..., "data": ..., "model": ..., **fit options}. For each run,
rank 0 saves ``NAME/theta`` (every rank's raw-scale parameters, one row per rank),
``NAME/loss``, ``NAME/nit``, ``NAME/allreduces``, ``NAME/converged``, ``NAME/peak_rss``
(every rank's peak resident memory so far, in bytes) and ``NAME/baseline_rss`` (the same
just before the run: the interpreter and the libraries, scipy.sparse included).
"""

import json
import resource
import sys

import numpy as np
import scipy.sparse  # noqa: F401 - part of the baseline, as it is of any sparse run
from mpi4py import MPI

from mpigd import fit


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(spec_path, out):
    comm = MPI.COMM_WORLD
    with open(spec_path) as f:
        runs = json.load(f)
    saved = {}
    for run in runs:
        name, data, model = run.pop("name"), run.pop("data"), run.pop("model")
        baseline = comm.gather(peak_rss(), root=0)
        fitted = fit(data, model, comm=comm, **run)
        theta = np.append(np.ravel(fitted.model.coef), fitted.model.intercept)
        thetas = comm.gather(theta, root=0)
        peaks = comm.gather(peak_rss(), root=0)
        saved.update(
            {
                f"{name}/theta": np.array(thetas),
                f"{name}/loss": fitted.result.fun,
                f"{name}/nit": fitted.result.nit,
                f"{name}/allreduces": fitted.model.info["allreduces"],
                f"{name}/converged": fitted.result.converged,
                f"{name}/peak_rss": np.array(peaks),
                f"{name}/baseline_rss": np.array(baseline),
            }
        )
    if comm.rank == 0:
        np.savez(out, **saved)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
