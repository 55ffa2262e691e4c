"""Run by the tests under ``mpiexec -n 2``: rank 1 fails in the calling program before it
reaches ``fit`` (as scikit-learn's GridSearchCV does with fewer rows than folds on one
rank); rank 0 waits in the estimator's first collective until the collective deadline
ends the job. Usage: python tests/mpi/mpi_outside.py
"""

import numpy as np
from mpi4py import MPI

from mpigd import LinearRegression

comm = MPI.COMM_WORLD
X, y = np.eye(4, 2), np.arange(4.0)
if comm.rank == 1:
    raise RuntimeError("the calling program failed on rank 1")
LinearRegression().fit(X, y)
print("fitted", flush=True)
