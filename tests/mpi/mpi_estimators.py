"""Run by the tests under ``mpiexec -n P``: the scikit-learn estimators on each rank's
own rows against :func:`mpigd.fit` on the file (what ``mpigd train`` runs).

Usage: python tests/mpi/mpi_estimators.py FOLDER. Each rank passes its block of rows (the
blocks a file read gives); the fitted attributes must equal the file fit's to 1e-12 and
be bit-identical on every rank, the collective ``score`` must be the score over all rows,
and string labels must round-trip. Rank 0 prints the number of cases checked.
"""

import sys
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

from mpigd import estimators, fit
from mpigd.estimators import InvalidInputError, LinearRegression, LogisticRegression
from mpigd.partition import block_range


def same_everywhere(comm, array) -> bool:
    arrays = comm.allgather(np.asarray(array))
    return all(np.array_equal(a, arrays[0]) for a in arrays)


def main(folder: Path) -> None:
    comm = MPI.COMM_WORLD
    rng = np.random.default_rng(3)
    m, n = 211, 4
    X = rng.standard_normal((m, n))
    z = X @ rng.standard_normal(n)
    w = rng.uniform(0.5, 2.0, m)
    cases = {
        "linear": (z + 0.2 * rng.standard_normal(m), "linear"),
        "logistic": ((z + rng.standard_normal(m) > 0).astype(float), "logistic"),
        "softmax": (np.digitize(z, [-0.5, 0.5]).astype(float), "softmax"),
        "poisson": (rng.poisson(np.exp(z / 3)).astype(float), "poisson"),
        "gamma": (rng.gamma(2.0, np.exp(z / 3) / 2), "gamma"),
        "tweedie": (rng.poisson(np.exp(z / 3)) * rng.gamma(2.0, 1.0, m), "tweedie"),
        "huber": (z + rng.standard_t(1.5, m), "huber"),
        "svm": ((z + rng.standard_normal(m) > 0).astype(float), "svm"),
    }
    kinds = {
        "linear": LinearRegression, "logistic": LogisticRegression,
        "softmax": LogisticRegression, "poisson": estimators.PoissonRegressor,
        "gamma": estimators.GammaRegressor, "tweedie": estimators.TweedieRegressor,
        "huber": estimators.HuberRegressor, "svm": estimators.LinearSVC,
    }  # fmt: skip
    extra = {"tweedie": {"power": 1.3}, "huber": {"epsilon": 1.0}}
    start, stop = block_range(m, comm.size, comm.rank)
    checked = 0
    for name, (y, model) in cases.items():
        path = folder / f"{name}.h5"
        if comm.rank == 0:
            with h5py.File(path, "w") as f:
                f["X"], f["y"], f["w"] = X, y, w
        comm.Barrier()
        for standardize in (False, True):
            reference = fit(path, model, comm=comm, l2=1e-3, weight_key="w", tol=1e-9,
                            standardize=standardize, **extra.get(model, {})).model  # fmt: skip
            kind = kinds[model]
            penalty = {"alpha" if model in ("poisson", "gamma", "tweedie") else "l2": 1e-3}
            est = kind(**penalty, tol=1e-9, standardize=standardize, **extra.get(model, {}))
            est.fit(X[start:stop], y[start:stop], sample_weight=w[start:stop])
            coef = est.coef_[0] if model in ("logistic", "svm") else est.coef_
            expected = reference.coef.T if model == "softmax" else reference.coef
            np.testing.assert_allclose(coef, expected, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(np.ravel(est.intercept_), np.ravel(reference.intercept),
                                       rtol=1e-12, atol=1e-14)  # fmt: skip
            assert same_everywhere(comm, est.coef_) and same_everywhere(comm, est.intercept_)
            score = est.score(X[start:stop], y[start:stop])
            assert same_everywhere(comm, score)
            if model in ("logistic", "softmax", "svm"):
                assert score == np.mean(est.predict(X) == y)
            else:  # every rank passing every row: the same ratio of sums
                assert abs(est.score(X, y) - score) <= 1e-12 * max(1.0, abs(score))
            checked += 1
    # string labels: the classes of all ranks, whatever each rank holds
    names = np.array(["cat", "dog", "emu"])[cases["softmax"][0].astype(int)]
    est = LogisticRegression(l2=1e-3).fit(X[start:stop], names[start:stop])
    assert list(est.classes_) == ["cat", "dog", "emu"]
    assert set(est.predict(X)) <= {"cat", "dog", "emu"}
    assert same_everywhere(comm, est.coef_)
    checked += 1
    # The last rank holds no rows: fit and score count it as empty, on every rank alike.
    mine = slice(start, stop) if comm.rank < comm.size - 1 or comm.size == 1 else slice(0, 0)
    y = cases["logistic"][0]
    est = LogisticRegression(l2=1e-3).fit(X[mine], y[mine])
    assert same_everywhere(comm, est.coef_)
    kept = np.concatenate(comm.allgather(np.arange(m)[mine]))
    assert est.score(X[mine], y[mine]) == np.mean(est.predict(X[kept]) == y[kept])
    # Bad rows on one rank: every rank raises the same error, none waits in the reduction.
    bad = X[mine].copy()
    if (comm.rank == comm.size - 1 and len(bad) == 0) or comm.size == 1:
        bad = np.full((1, n), np.nan)
    try:
        est.score(bad, y[: len(bad)])
    except InvalidInputError as exc:
        assert "NaN" in str(exc), exc
    except ValueError as exc:  # one process: scikit-learn's own error
        assert comm.size == 1 and "NaN" in str(exc), exc
    else:
        raise AssertionError("NaN rows on one rank were scored")
    checked += 1
    if comm.rank == 0:
        print(checked)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
