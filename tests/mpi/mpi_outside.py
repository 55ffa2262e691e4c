"""Run by the tests under ``mpiexec -n 2``: rank 1 fails in the calling program before it
reaches ``fit`` (as scikit-learn's GridSearchCV does with fewer rows than folds on one
rank) and lingers there (a debugger, a slow clean-up); rank 0 waits in the estimator's
first collective until the collective deadline ends the job. Were rank 1 to exit at once,
mpiexec could end the job first, before rank 0's line: the test would race it.
Usage: python tests/mpi/mpi_outside.py
"""

import time
import traceback

import numpy as np
from mpi4py import MPI

from mpigd import LinearRegression

comm = MPI.COMM_WORLD
X, y = np.eye(4, 2), np.arange(4.0)
if comm.rank == 1:
    try:
        raise RuntimeError("the calling program failed on rank 1")
    except RuntimeError:
        traceback.print_exc()
        time.sleep(120)  # only rank 0's deadline ends the job before this
        raise
LinearRegression().fit(X, y)
print("fitted", flush=True)
