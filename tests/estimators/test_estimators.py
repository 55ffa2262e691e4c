"""The scikit-learn estimators: scikit-learn's own conformance suite, label round trips,
the documented mapping of mpigd's penalties to scikit-learn's, and the estimators under
mpiexec against the file-based fit."""

from __future__ import annotations

import copy
import pickle
import time

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import random_problem, run_mpi, write_h5
from sklearn import linear_model
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import mpigd
from mpigd.estimators import (
    GammaRegressor,
    HuberRegressor,
    InvalidInputError,
    LinearRegression,
    LinearSVC,
    LogisticRegression,
    PoissonRegressor,
    TweedieRegressor,
)

ESTIMATORS = [
    LinearRegression(), LogisticRegression(), PoissonRegressor(), GammaRegressor(),
    TweedieRegressor(), HuberRegressor(), LinearSVC(),
]  # fmt: skip


@parametrize_with_checks(ESTIMATORS)
def test_scikit_learn_check_estimator(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    "labels",
    [
        np.array([-1, 1]),
        np.array([3, 7]),
        np.array(["no", "yes"]),
        np.array([1.0, 2.0]),
        np.array(["a", "b", "c"]),
        np.array([10, -4, 6]),
    ],
    ids=["pm1", "ints", "strings", "floats", "three-strings", "three-ints"],
)
def test_any_class_labels_round_trip(labels):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    index = np.argmax(X[:, : len(labels)] + 0.3 * rng.standard_normal((300, len(labels))), 1)
    y = labels[index]
    est = LogisticRegression(l2=1e-3).fit(X, y)
    np.testing.assert_array_equal(est.classes_, np.unique(labels))
    predicted = est.predict(X)
    assert predicted.dtype == y.dtype and set(predicted) <= set(labels)
    assert est.score(X, y) > 0.8
    assert est.predict_proba(X).shape == (300, len(labels))
    coef_rows = 1 if len(labels) == 2 else len(labels)
    assert est.coef_.shape == (coef_rows, 3) and est.intercept_.shape == (coef_rows,)


def test_fit_from_a_path_equals_fit_from_arrays(tmp_path):
    X, y = random_problem("logistic", 200, 3, seed=1)
    labels = np.where(y > 0, 1.0, -1.0)  # LIBSVM's labels
    path = write_h5(tmp_path / "d.h5", X, labels)
    from_file = LogisticRegression(l2=1e-3).fit(path)
    from_arrays = LogisticRegression(l2=1e-3).fit(X, labels)
    np.testing.assert_array_equal(from_file.classes_, [-1.0, 1.0])
    np.testing.assert_allclose(from_file.coef_, from_arrays.coef_, rtol=1e-12)
    assert from_file.n_features_in_ == 3
    np.testing.assert_array_equal(from_file.predict(X), from_arrays.predict(X))


def test_clone_deepcopy_pickle_and_pipelines():
    X, y = random_problem("logistic", 120, 3, seed=2)
    est = LogisticRegression(l2=1e-2, standardize=True).fit(X, y)
    for copied in (copy.deepcopy(est), pickle.loads(pickle.dumps(est))):
        np.testing.assert_array_equal(copied.predict_proba(X), est.predict_proba(X))
    assert clone(est).get_params() == est.get_params()
    pipe = make_pipeline(StandardScaler(), LinearRegression()).fit(X, X @ [1.0, 2.0, 3.0])
    assert pipe.score(X, X @ [1.0, 2.0, 3.0]) > 0.999999


def test_sparse_rows_equal_dense_rows():
    X, y = random_problem("logistic", 150, 5, seed=3)
    dense = LogisticRegression(l2=1e-2).fit(X, y)
    sparse = LogisticRegression(l2=1e-2).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-9)


def test_not_converging_is_scikit_learns_warning():
    from sklearn.exceptions import ConvergenceWarning

    X, y = random_problem("logistic", 80, 3)
    with pytest.warns(ConvergenceWarning, match="not converged"):
        LogisticRegression(max_iter=2).fit(X, y)


def test_bad_input_is_a_value_error_and_mpigds_error():
    X, y = random_problem("logistic", 50, 2)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LogisticRegression().fit(X, np.zeros(50))
    with pytest.raises(InvalidInputError, match="l2 must be a finite number >= 0"):
        LogisticRegression(l2=-1.0).fit(X, y)
    assert issubclass(InvalidInputError, mpigd.MpigdError)


def test_messages_are_one_line_and_plain():
    X, y = random_problem("logistic", 50, 2)
    with pytest.raises(ValueError, match=r"only one class: 0$"):  # not np.int64(0)
        LogisticRegression().fit(X, np.zeros(50, dtype=np.int64))
    X[3, 1] = np.nan
    with pytest.raises(ValueError) as caught:
        LinearRegression().fit(X, y)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 160
    assert str(caught.value).startswith("Input X contains NaN: drop or fix those rows")


def test_labels_or_weights_with_a_path_are_refused(tmp_path):
    path = write_h5(tmp_path / "d.h5", *random_problem("linear", 20, 2))
    with pytest.raises(ValueError, match="sample_weight goes with rows in memory"):
        LinearRegression().fit(path, sample_weight=np.ones(20))
    with pytest.raises(ValueError, match="y goes with rows in memory, not with an HDF5 path"):
        LinearRegression().fit(path, np.arange(20.0))


def test_communicators_by_name_and_a_bad_one():
    X, y = random_problem("linear", 50, 2)
    named = LinearRegression(comm="world").fit(X, y).coef_
    np.testing.assert_array_equal(named, LinearRegression(comm="self").fit(X, y).coef_)
    np.testing.assert_array_equal(named, LinearRegression().fit(X, y).coef_)
    with pytest.raises(InvalidInputError, match=r"comm='wrld' is not an MPI communicator"):
        LinearRegression(comm="wrld").fit(X, y)


# ------------------------------------- the mapping to scikit-learn's parameters (README)


def _sample(kind, m=400, n=5, seed=4):
    X, y = random_problem(kind, m, n, seed=seed)
    return X, y, np.random.default_rng(seed).uniform(0.5, 2.0, m)


def test_logistic_C_is_one_over_l2_times_the_total_weight():
    X, y, w = _sample("logistic")
    C = 0.7
    ours = LogisticRegression(l2=1.0 / (C * w.sum()), tol=1e-10).fit(X, y, sample_weight=w)
    theirs = linear_model.LogisticRegression(C=C, tol=1e-12, max_iter=10_000)
    theirs.fit(X, y, sample_weight=w)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=1e-6, atol=1e-8)


def test_ridge_alpha_is_l2_times_m():
    X, y, _ = _sample("linear")
    alpha = 3.0
    ours = LinearRegression(l2=alpha / len(y)).fit(X, y)
    theirs = linear_model.Ridge(alpha=alpha).fit(X, y)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-9)
    assert ours.intercept_ == pytest.approx(theirs.intercept_, rel=1e-9)


@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_lasso_and_elastic_net_alpha(l1_ratio):
    X, y, _ = _sample("linear")
    alpha = 0.05
    ours = LinearRegression(l1=alpha * l1_ratio, l2=alpha * (1 - l1_ratio), tol=1e-10)
    ours.fit(X, y)
    theirs = linear_model.ElasticNet(alpha=alpha, l1_ratio=l1_ratio, tol=1e-12, max_iter=100_000)
    theirs.fit(X, y)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, atol=1e-6)
    assert ours.intercept_ == pytest.approx(theirs.intercept_, abs=1e-6)


@pytest.mark.parametrize(
    ("ours", "theirs", "kind"),
    [
        (PoissonRegressor(alpha=0.05, tol=1e-10), linear_model.PoissonRegressor, "poisson"),
        (GammaRegressor(alpha=0.05, tol=1e-10), linear_model.GammaRegressor, "gamma"),
        (TweedieRegressor(power=1.3, alpha=0.05, tol=1e-10), linear_model.TweedieRegressor,
         "tweedie"),
    ],
    ids=["poisson", "gamma", "tweedie"],
)  # fmt: skip
def test_log_link_regressors_take_scikit_learns_alpha(ours, theirs, kind):
    X, y, w = _sample(kind)
    extra = {"power": 1.3, "link": "log"} if kind == "tweedie" else {}
    reference = theirs(alpha=0.05, tol=1e-12, max_iter=10_000, **extra).fit(X, y, sample_weight=w)
    ours.fit(X, y, sample_weight=w)
    np.testing.assert_allclose(ours.coef_, reference.coef_, rtol=1e-6, atol=1e-8)
    assert ours.intercept_ == pytest.approx(reference.intercept_, rel=1e-6, abs=1e-8)
    np.testing.assert_allclose(ours.predict(X), reference.predict(X), rtol=1e-6)
    # score is D^2 of the deviance, weighted, as scikit-learn's
    assert ours.score(X, y, w) == pytest.approx(reference.score(X, y, w), rel=1e-6)


def test_linear_svc_C_is_one_over_l2_times_the_total_weight():
    # liblinear penalises the intercept as a weight on a constant column of
    # intercept_scaling: a large one makes that penalty vanish.
    from sklearn.svm import LinearSVC as Liblinear

    X, y, w = _sample("svm")
    labels = np.where(y > 0, "yes", "no")
    C = 0.5
    ours = LinearSVC(l2=1.0 / (C * w.sum()), tol=1e-10).fit(X, labels, sample_weight=w)
    theirs = Liblinear(C=C, tol=1e-12, max_iter=100_000, intercept_scaling=1e3, dual=False)
    theirs.fit(X, labels, sample_weight=w)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    assert ours.decision_function(X).shape == (len(y),) and not hasattr(ours, "predict_proba")


def test_linear_svc_refuses_three_classes():
    X, y, _ = _sample("softmax")
    with pytest.raises(InvalidInputError, match="Only binary classification is supported"):
        LinearSVC().fit(X, y)


def test_huber_regression_shrugs_off_gross_outliers():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((500, 3))
    truth = np.array([1.0, -2.0, 0.5])
    y = X @ truth + 0.3 * rng.standard_normal(500)
    y[:25] += 100.0  # five percent of the rows are gross outliers
    robust = HuberRegressor(epsilon=1.0).fit(X, y)
    plain = LinearRegression().fit(X, y)
    assert np.abs(robust.coef_ - truth).max() < 0.1 < np.abs(plain.coef_ - truth).max()


# ----------------------------------------------------------------------- under mpiexec


@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
@pytest.mark.slow
def test_estimators_under_mpiexec_equal_the_file_fit(ranks, tmp_path):
    proc = run_mpi(ranks, "tests/mpi/mpi_estimators.py", tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "18"


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.slow
def test_ranks_agree_before_they_compute(ranks, tmp_path):
    """Different parameters, input kinds, paths, widths or dtypes on the ranks, or an error
    on one rank: the same one-line ValueError on every rank (no hang, no MPI error), and
    the ranks still in step for the next fit."""
    proc = run_mpi(ranks, "tests/mpi/mpi_estimators_agree.py", tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    said = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    last = ranks - 1
    expected = {
        "parameters": "(l2=0.001 on rank 0 but 0.0 on rank 1): every rank must call fit",
        "kinds": "rank 0 passed a path but rank 1 arrays",
        "paths": "every rank must pass the same HDF5 path",
        "widths": "rank 0's X has 2 features but rank 1's 3",
        "dtypes": "rank 0's X holds float32 but rank 1's float64",
        "hostile": f"X holds 1 column index outside 0 .. 2 (e.g. 7 in row 0); X.indices must "
        f"index its 3 columns (on rank {last})",
        "y missing": f"requires y to be passed, but the target y is None. (on rank {last})",
        "comm": "comm='wrld' is not an MPI communicator",
        "weights": "sample_weight given on rank 0 but not given on rank 1",
        "score": "rows but y has 1 (on rank 1)",
    }
    for case, message in expected.items():
        assert message in said.get(case, ""), (case, proc.stdout)
    assert proc.stdout.strip().splitlines()[-1] == "in step"
    assert "Message truncated" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_rank_that_fails_before_fit_ends_the_job_at_the_deadline():
    """A rank that fails in the calling program never reaches fit: the others cannot
    learn why, and the collective deadline ends the job with one line, instead of a hang."""
    started = time.monotonic()
    proc = run_mpi(2, "tests/mpi/mpi_outside.py", env={"MPIGD_COLLECTIVE_TIMEOUT": "3"})
    took = time.monotonic() - started
    assert proc.returncode != 0 and took < 60, (took, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mpigd: ")]
    assert len(lines) == 1, proc.stderr
    assert "rank 0: a collective call waited more than 3 s for the other ranks" in lines[0]
    assert "fitted" not in proc.stdout
