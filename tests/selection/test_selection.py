"""Cross-validation: folds, the fold sums against one model at a time, lockstep
optimisers against separate runs, the path's choices, and the whole of ``mpigd cv``
under mpiexec at several rank counts."""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    EPSILON,
    POWER,
    random_problem,
    run_mpi,
    run_mpi_commands,
    sparse_problem,
    write_h5,
)
from mpi4py import MPI

from mpigd.errors import MpigdError
from mpigd.kernels import compiled
from mpigd.kernels.dense import reference_sums
from mpigd.kernels.folds import fold_scores, fold_sums, reference_fold_sums
from mpigd.kernels.losses import MODELS, make_loss
from mpigd.optimize import lbfgs
from mpigd.optimize.lockstep import run_lockstep
from mpigd.partition import hash_folds
from mpigd.scaling import Scaling
from mpigd.selection.penalties import choose, penalty_path

# ------------------------------------------------------------------------------ folds


@pytest.mark.parametrize("folds", [2, 5, 7])
def test_hash_folds_do_not_depend_on_how_rows_are_split(folds):
    whole = hash_folds(3, 0, 1000, folds)
    cuts = [0, 1, 333, 334, 999, 1000]
    pieces = [hash_folds(3, a, b, folds) for a, b in itertools.pairwise(cuts)]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    counts = np.bincount(whole, minlength=folds)
    assert counts.min() > 0.7 * 1000 / folds  # about balanced
    assert not np.array_equal(hash_folds(4, 0, 1000, folds), whole)  # the seed matters


def test_penalty_path():
    np.testing.assert_allclose(penalty_path("1e-1:1e-5:5"), [1e-1, 1e-2, 1e-3, 1e-4, 1e-5])
    assert penalty_path("0.5:0.5:1").tolist() == [0.5]
    assert penalty_path([1e-3, 1.0, 1e-3, 0.0]).tolist() == [1.0, 1e-3, 0.0]
    for bad, why in [
        ("1:0.1:0", "empty"),
        ("0.1:1:3", "HIGH >= LOW > 0"),
        ("1:0:3", "HIGH >= LOW > 0"),
        ("1:0.1", "HIGH:LOW:COUNT"),
        ("a:b:c", "HIGH:LOW:COUNT"),
        ([], "empty"),
        ([-1.0], ">= 0"),
    ]:
        with pytest.raises(MpigdError, match=why):
            penalty_path(bad)


def test_choose_best_and_one_standard_error():
    val = np.array([[0.9, 1.1], [0.5, 0.7], [0.45, 0.55], [0.46, 0.48]])
    best, within = choose(val, larger_is_better=False)
    assert best == 3  # mean 0.47
    # se of the best = std([0.46, 0.48], ddof=1) / sqrt(2) = 0.01: 0.5 is not within
    assert within == 3
    val[2] = [0.47, 0.49]  # mean 0.48 <= 0.47 + 0.01
    assert choose(val, larger_is_better=False) == (3, 2)
    accuracy = 1.0 - val
    assert choose(accuracy, larger_is_better=True) == (3, 2)


# ------------------------------------------------------------------------ fold sums


def _one_model_sums(X, y, theta, loss, weights):
    return reference_sums(np.asarray(X.todense()) if sp.issparse(X) else X, y, theta, loss,
                          weights=weights)  # fmt: skip


@pytest.mark.parametrize("model", [*MODELS])
@pytest.mark.parametrize("layout", ["dense", "csr", "float32"])
@pytest.mark.parametrize("kernel", ["reference", "dispatch"])
def test_fold_sums_equal_each_model_on_its_training_rows(model, layout, kernel):
    rng = np.random.default_rng(1)
    m, n, F = 300, 6, 4
    if layout == "csr":
        X, y = sparse_problem(model, m, n, density=0.5, seed=2)
    else:
        X, y = random_problem(model, m, n, seed=2)
        X = X.astype(np.float32) if layout == "float32" else X
    n_classes = 3
    if model == "softmax":
        y = rng.integers(0, n_classes, m).astype(np.float64)
    loss = make_loss(model, n_classes, power=POWER, epsilon=EPSILON)
    fold = hash_folds(0, 0, m, F)
    labels = np.array([3, 0, 2])  # three of the four fold models, in any order
    weights = rng.uniform(0.5, 2.0, m)
    classes = n_classes if model == "softmax" else 2
    classifier = model in ("logistic", "softmax", "svm")
    class_weights = rng.uniform(0.5, 2.0, (3, classes)) if classifier else None
    p = (n + 1) * loss.n_outputs
    Theta = rng.standard_normal((p, 3)) * 0.3
    sums = reference_fold_sums if kernel == "reference" else fold_sums
    loss_sums, held_out, grads = sums(
        X, y, Theta, loss, fold, labels, weights=weights, class_weights=class_weights
    )
    for a, j in enumerate(labels):
        w = weights * (fold != j)
        if class_weights is not None:
            w = w * class_weights[a][y.astype(int)]
        expected_loss, expected_grad = _one_model_sums(X, y, Theta[:, a], loss, w)
        assert loss_sums[a] == pytest.approx(expected_loss, rel=1e-12)
        np.testing.assert_allclose(grads[:, a], expected_grad, rtol=1e-11, atol=1e-11)
        validation, _ = _one_model_sums(X, y, Theta[:, a], loss, (fold == j).astype(float))
        assert held_out[a] == pytest.approx(validation, rel=1e-12)


@pytest.mark.skipif(
    compiled.name() != "compiled", reason=f"no compiled kernels: {compiled.why_not}"
)
@pytest.mark.parametrize("model", [m for m in MODELS if m != "softmax"])
def test_the_compiled_fold_sweep_is_used_for_single_output_models(model):
    X, y = random_problem(model, 50, 3)
    fold = hash_folds(0, 0, 50, 3)
    out = compiled.fold_sums(X, y, np.zeros((4, 3)), make_loss(model), fold, np.arange(3),
                             None, None)  # fmt: skip
    assert out is not None


def test_fold_scores_use_the_model_that_held_each_row_out():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    fold = hash_folds(1, 0, 40, 4)
    Theta = rng.standard_normal((4, 4))
    z = fold_scores(X, Theta, 1, fold, np.arange(4))
    expected = np.array([X[i] @ Theta[:3, f] + Theta[3, f] for i, f in enumerate(fold)])
    np.testing.assert_allclose(z, expected, rtol=1e-13)
    Z = fold_scores(X, rng.standard_normal((8, 4)), 2, fold, np.arange(4))
    assert Z.shape == (40, 2)


def test_scaling_from_raw_inverts_to_raw():
    scaling = Scaling(np.array([1.0, -2.0, 3.0]), np.array([2.0, 0.0, 0.5]))
    theta = np.array([0.3, 0.0, -1.2, 0.7])  # a constant column's weight is 0
    np.testing.assert_allclose(scaling.from_raw(scaling.to_raw(theta)), theta, atol=1e-15)
    Theta = np.arange(8.0).reshape(4, 2) / 7
    Theta[1] = 0.0
    flat = Theta.ravel()
    np.testing.assert_allclose(scaling.from_raw(scaling.to_raw(flat, 2), 2), flat, atol=1e-15)


# ----------------------------------------------------------------------- lockstep


def _quadratic(A, b):
    return lambda x: (0.5 * x @ A @ x - b @ x, A @ x - b)


def test_lockstep_runs_are_bit_identical_to_separate_runs():
    rng = np.random.default_rng(0)
    problems = []
    for _ in range(4):
        Q = rng.standard_normal((6, 6))
        problems.append(_quadratic(Q @ Q.T + np.eye(6), rng.standard_normal(6)))
    separate = [lbfgs(fun, np.zeros(6), tol=1e-10) for fun in problems]
    batches = []

    def batch(points):
        batches.append(sorted(points))
        return {j: problems[j](theta) for j, theta in points.items()}

    tasks = [lambda fun: lbfgs(fun, np.zeros(6), tol=1e-10) for _ in problems]
    together = run_lockstep(tasks, batch)
    for a, b in zip(separate, together, strict=True):
        np.testing.assert_array_equal(a.x, b.x)
        assert (a.nit, a.nfev) == (b.nit, b.nfev)
    assert len(batches) == max(r.nfev for r in separate)  # one batch per round
    assert [len(b) for b in batches] == sorted(
        (sum(r.nfev > k for r in separate) for k in range(len(batches))), reverse=True
    )  # finished problems drop out


def test_lockstep_errors_end_every_thread():
    def failing_batch(points):
        raise MpigdError("the pass failed")

    tasks = [lambda fun: lbfgs(fun, np.zeros(2)) for _ in range(3)]
    with pytest.raises(MpigdError, match="the pass failed"):
        run_lockstep(tasks, failing_batch)

    def task(fun):
        fun(np.zeros(2))
        raise ValueError("a task failed")

    quadratic = _quadratic(np.eye(2), np.ones(2))
    with pytest.raises(ValueError, match="a task failed"):
        run_lockstep(
            [task, lambda fun: lbfgs(fun, np.zeros(2))],
            lambda points: {j: quadratic(x) for j, x in points.items()},
        )


# ------------------------------------------------------------------ under mpiexec


@pytest.mark.slow
def test_cv_record_is_the_same_at_every_rank_count(tmp_path):
    """103 rows (no rank count divides it), weights, standardised, 1se; with fold ids in
    contiguous blocks, so that at 4 ranks some ranks hold no rows of some folds."""
    X, y = random_problem("logistic", 103, 4, seed=5)
    rng = np.random.default_rng(5)
    path = write_h5(tmp_path / "d.h5", X, y, s=rng.uniform(0.5, 2, 103), f=np.arange(103) // 26)
    records = {}
    choices = {"hash": ["--folds", "5", "--seed", "9"], "key": ["--folds", "4", "--fold-key", "f"]}
    for ranks in (1, 2, 3, 4):  # both fold choices in one job per rank count
        commands = [
            ["cv", path, "--model", "logistic", "--l2-path", "1:1e-3:4", "--weight-key", "s",
             "--standardize", "--rule", "1se", "--metric", "roc_auc", "--tol", "1e-7", *choice,
             "--out", tmp_path / f"{folds}{ranks}.h5", "--json", tmp_path / f"{folds}{ranks}.json",
             "--quiet"]
            for folds, choice in choices.items()
        ]  # fmt: skip
        proc = run_mpi_commands(ranks, commands, tmp_path / f"commands-{ranks}.json")
        assert proc.returncode == 0, proc.stderr
        for folds in choices:
            record = json.loads((tmp_path / f"{folds}{ranks}.json").read_text())
            assert record.pop("seconds") > 0
            records[folds, ranks] = record
    for folds in ("hash", "key"):
        one = records[folds, 1]
        assert len(one["val"]) == 4 and len(one["val"][0]) == (5 if folds == "hash" else 4)
        for ranks in (2, 3, 4):
            other = records[folds, ranks]
            assert other.keys() == one.keys()
            for key, value in one.items():
                if isinstance(value, list):
                    np.testing.assert_allclose(other[key], value, rtol=1e-9, err_msg=key)
                else:
                    assert other[key] == value, key


@pytest.mark.slow
def test_cv_with_more_ranks_than_rows(tmp_path):
    """Ranks that hold no rows sum nothing, in the compiled fold sweep too: the record at
    P = 8 on 6 rows (two ranks without any) is the one at P = 1."""
    X, y = random_problem("logistic", 6, 3, seed=2)
    y[:] = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]  # both classes in every fold model's rows
    path = write_h5(tmp_path / "six.h5", X, y, f=np.array([0, 0, 0, 1, 1, 1]))
    records = []
    for ranks in (1, 8):
        out = tmp_path / f"cv{ranks}"
        proc = run_mpi(
            ranks, "-m", "mpigd", "cv", path, "--model", "logistic", "--l2-path", "1:0.1:2",
            "--folds", "2", "--fold-key", "f", "--out", f"{out}.h5", "--json", f"{out}.json",
            "--quiet",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        records.append(json.loads((tmp_path / f"{out}.json").read_text()))
    np.testing.assert_allclose(records[1]["val"], records[0]["val"], rtol=1e-12)
    assert records[1]["chosen"] == records[0]["chosen"]


@pytest.mark.slow
def test_each_cell_equals_training_without_the_fold_and_evaluating_on_it():
    proc = run_mpi(3, "tests/mpi/mpi_cv.py", timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    checked = json.loads(proc.stdout.strip().splitlines()[-1])
    models = ("linear", "logistic", "softmax", "poisson", "gamma", "tweedie", "huber", "svm")
    assert checked == {**dict.fromkeys(models, 12), "l1": 8}


def test_fold_models_agree_with_comm_self_objective():
    """The fold objectives' values at a point are those of Objective on the rows
    outside each fold (one process)."""
    from mpigd.objective import Objective
    from mpigd.selection.objective import FoldObjectives

    X, y = random_problem("logistic", 90, 3, seed=4)
    fold = hash_folds(2, 0, 90, 3)
    loss = make_loss("logistic")
    objectives = FoldObjectives(MPI.COMM_SELF, X, y, loss, fold, 3)
    objectives.penalize(0.1)
    theta = np.array([0.2, -0.1, 0.3, 0.05])
    values = objectives({0: theta, 2: theta})
    for j in (0, 2):
        keep = fold != j
        single = Objective(MPI.COMM_SELF, X[keep], y[keep], loss, l2=0.1)
        f, g = single(theta)
        assert values[j][0] == pytest.approx(f, rel=1e-13)
        np.testing.assert_allclose(values[j][1], g, rtol=1e-12)
    assert objectives.n_evals == 1


def test_cv_on_label_values_equals_cv_on_class_indices(tmp_path):
    import mpigd

    X, y = random_problem("logistic", 120, 3, seed=8)
    indices = write_h5(tmp_path / "i.h5", X, y)
    values = write_h5(tmp_path / "v.h5", X, 2 * y - 1)  # LIBSVM's -1/+1
    options = dict(comm=MPI.COMM_SELF, folds=3, l2_path="1:1e-2:3", tol=1e-8)
    plain = mpigd.cv(indices, "logistic", **options)
    mapped = mpigd.cv(values, "logistic", labels="auto", **options)
    np.testing.assert_allclose(mapped.record["val"], plain.record["val"], rtol=1e-12)
    assert mapped.record["classes"] == [-1.0, 1.0] and "classes" not in plain.record
    np.testing.assert_array_equal(mapped.model.arrays["classes"], [-1.0, 1.0])
    assert set(mapped.model.predict(X)) <= {-1.0, 1.0}
    with pytest.raises(MpigdError, match="labels must be 0 or 1"):
        mpigd.cv(values, "logistic", **options)


def test_a_fold_that_holds_every_row_of_a_class_is_warned_about(tmp_path):
    import mpigd
    from mpigd.train.labels import EmptyClassWarning

    X, _ = random_problem("logistic", 40, 3, seed=2)
    y = (np.arange(40) < 8).astype(np.float64)  # class 1: rows 0..7, all in fold 0
    fold = np.where(np.arange(40) < 8, 0, 1 + np.arange(40) % 3)
    path = write_h5(tmp_path / "d.h5", X, y, f=fold, v=np.where(y > 0, 7.0, -3.0))
    options = dict(comm=MPI.COMM_SELF, folds=4, fold_key="f", l2_path="1:0.1:2", refit=False)
    message = (
        r"1 fold model of 4 trains on no rows of a class \(e.g. model 0: every row of class "
        r"1 is in fold 0\)"
    )
    with pytest.warns(EmptyClassWarning, match=message):
        mpigd.cv(path, "logistic", **options)
    with pytest.warns(EmptyClassWarning, match="every row of class 7 is in fold 0"):
        mpigd.cv(path, "logistic", labels="auto", y_key="v", **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptyClassWarning)
        mpigd.cv(path, "logistic", **{**options, "fold_key": None, "folds": 3})


def test_every_model_has_metrics_and_the_command_line_offers_them_all():
    from mpigd.cli.cv import METRIC_CHOICES
    from mpigd.selection.penalties import METRICS, MODEL_METRICS

    assert sorted(METRIC_CHOICES) == sorted(METRICS)
    assert set(MODEL_METRICS) == set(MODELS)
    assert all(set(names) <= set(METRICS) for names in MODEL_METRICS.values())
