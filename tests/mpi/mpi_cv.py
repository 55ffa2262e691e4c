"""Run by the tests under ``mpiexec -n P``: every cell of a cross-validation table
against ``mpigd.fit(..., exclude_fold=k)`` followed by the metric on fold k's rows.

For every model with row weights (tweedie at power 1.3, huber at epsilon 1), and a
logistic L1 path:
each (penalty, fold) validation metric must equal the separately trained model's to
1e-6, relative, and the final model's parameters must be bit-identical on every rank.
Rank 0 prints, as its last line, the number of cells checked per case (JSON).
"""

import json
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

from mpigd import cv, fit
from mpigd.evaluation import metrics
from mpigd.partition import block_range, hash_folds

FOLDS, SEED = 4, 11
MODELS = ("linear", "logistic", "softmax", "poisson", "gamma", "tweedie", "huber", "svm")
PARAMETERS = {"tweedie": {"power": 1.3}, "huber": {"epsilon": 1.0}}
POWERS = {"poisson": 1.0, "gamma": 2.0, "tweedie": 1.3}


def make_data(path: Path, model: str, m: int = 157, n: int = 5) -> None:
    rng = np.random.default_rng(7)
    X = rng.standard_normal((m, n))
    z = X @ rng.standard_normal(n)
    if model in ("linear", "huber"):
        y = z + 0.5 * rng.standard_normal(m)
    elif model in ("logistic", "svm"):
        y = (z + rng.standard_normal(m) > 0).astype(np.float64)
    elif model == "poisson":
        y = rng.poisson(np.exp(z / 3)).astype(np.float64)
    elif model in ("gamma", "tweedie"):
        y = rng.gamma(2.0, np.exp(z / 3) / 2) * (rng.random(m) < (0.7 if model == "tweedie" else 1))
    else:
        y = np.digitize(z + 0.5 * rng.standard_normal(m), [-0.7, 0.7]).astype(np.float64)
    with h5py.File(path, "w") as f:
        f["X"], f["y"], f["s"] = X, y, rng.uniform(0.5, 2.0, m)


def check(comm, path: Path, model: str, options: dict, penalty: str) -> int:
    common = dict(comm=comm, weight_key="s", tol=1e-10, ftol=0.0, seed=SEED)
    result = cv(path, model, folds=FOLDS, **options, **common)
    record = result.record
    thetas = comm.allgather(np.append(np.ravel(result.model.coef), result.model.intercept))
    assert all(np.array_equal(theta, thetas[0]) for theta in thetas), "final model differs"
    with h5py.File(path, "r") as f:
        m = f["X"].shape[0]
        start, stop = block_range(m, comm.size, comm.rank)
        X, y = f["X"][start:stop], f["y"][start:stop]
    fold = hash_folds(SEED, start, stop, FOLDS)
    cells = 0
    fixed = {key: value for key, value in options.items() if not key.endswith("_path")}
    optimizer = "nesterov" if penalty == "l1" else "lbfgs"
    for i, value in enumerate(record[penalty]):
        for k in range(FOLDS):
            alone = fit(
                path, model, optimizer=optimizer, **{penalty: value}, **fixed,
                folds=FOLDS, exclude_fold=k, **common,
            ).model  # fmt: skip
            rows = fold == k
            z = alone.decision_function(X[rows])
            score = metrics.of_model(comm, model, y[rows], z, power=POWERS.get(model))
            expected, got = score[record["metric"]], record["val"][i][k]
            assert abs(got - expected) <= 1e-6 * abs(expected), (model, value, k, got, expected)
            cells += 1
    return cells


def main() -> None:
    comm = MPI.COMM_WORLD
    folder = tempfile.mkdtemp() if comm.rank == 0 else None
    folder = Path(comm.bcast(folder))
    checked = {}
    for model in MODELS:
        path = folder / f"{model}.h5"
        if comm.rank == 0:
            make_data(path, model)
        comm.Barrier()
        options = {"l2_path": "1:1e-3:3", **PARAMETERS.get(model, {})}
        checked[model] = check(comm, path, model, options, "l2")
    options = {"l1_path": "0.05:0.005:2", "l2": 1e-3, "standardize": True}
    checked["l1"] = check(comm, folder / "logistic.h5", "logistic", options, "l1")
    if comm.rank == 0:
        print(json.dumps(checked))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
