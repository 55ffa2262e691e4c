"""Nothing a caller passes can drive a kernel out of bounds.

The compiled entry points (``_fused.dense_sums``, ``_fused.csr_sums``) refuse every
argument they cannot index safely with a ``ValueError``, an array of another element
type, byte order or layout than they read too; the package checks in-memory
CSR matrices where they enter (the estimators' ``fit``/``predict``/``score``,
:func:`mpigd.fit` with rows in memory, :meth:`mpigd.LinearModel.decision_function`) with
one line naming the array to fix, and never changes the caller's arrays. Under the
sanitizer step of ``tests/run.sh`` (AddressSanitizer and UBSan) these tests also prove
that no check reads a byte it should not.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import run_mpi

import mpigd
from mpigd.errors import InvalidInputError
from mpigd.io.dataset import DatasetInfo, LocalData
from mpigd.io.memory import checked_csr, checked_sparse
from mpigd.model import LinearModel


def _fused():
    try:
        return importlib.import_module("mpigd.kernels._fused")
    except ImportError as exc:  # the NumPy fallback: nothing compiled to check
        pytest.skip(f"the compiled kernels are not built here ({exc})")


M, N = 5, 3


def call(args: dict) -> tuple:
    """The grouped arguments of ``_fused.dense_sums`` or ``_fused.csr_sums`` for named
    ``args``: ``(rows, model, (grad, add, start)[, folds])``, folds when ``args["fold"]``
    is given."""
    values = ("data", "indices", "indptr") if "data" in args else ("X",)
    rows = tuple(args[k] for k in (*values, "m", "n", "y", "weights"))
    model = (args["theta"], args["loss"], args.get("param", 0.0), args["K"], args["need_loss"])
    out = (args["grad"], False, 0.0)  # overwritten, not added to
    if args["fold"] is None:
        return rows, model, out
    return rows, model, out, tuple(args[k] for k in ("fold", "labels", "cw", "loss_sums"))


def csr_args(**change):
    """The arguments of ``_fused.csr_sums`` (by name, see :func:`call`) for a valid 5 x 3
    logistic problem, with ``change`` applied."""
    X = sp.csr_matrix(  # rows of 2, 1, 1, 1 and 2 values, unsorted in the last
        (np.arange(1.0, 8.0), np.array([0, 2, 1, 0, 2, 1, 0]), np.array([0, 2, 3, 4, 5, 7])),
        shape=(M, N),
    )
    args = {
        "data": X.data.copy(), "indices": X.indices.astype(np.int32),
        "indptr": X.indptr.astype(np.int32), "m": M, "n": N,
        "y": np.array([0.0, 1, 0, 1, 1]), "theta": np.linspace(-1, 1, N + 1),
        "weights": np.empty(0), "loss": 1, "K": 1, "grad": np.empty(N + 1),
        "need_loss": True, "fold": None, "labels": np.empty(0, np.int64),
        "cw": np.empty(0), "loss_sums": np.zeros(1),
    }  # fmt: skip
    args.update(change)
    return args


def dense_args(**change):
    """The arguments of ``_fused.dense_sums`` (by name) for a valid 5 x 3 softmax problem
    of 3 classes, with ``change`` applied."""
    K = 3
    args = {
        "X": np.arange(M * N, dtype=np.float64).reshape(M, N) / 10, "m": M,
        "n": N, "y": np.array([0.0, 1, 2, 1, 0]), "theta": np.linspace(-1, 1, (N + 1) * K),
        "weights": np.empty(0), "loss": 2, "K": K, "grad": np.empty((N + 1) * K),
        "need_loss": True, "fold": None, "labels": np.empty(0, np.int64),
        "cw": np.empty(0), "loss_sums": np.zeros(1),
    }  # fmt: skip
    args.update(change)
    return args


def test_the_valid_arguments_run():
    fused = _fused()
    assert np.isfinite(fused.csr_sums(*call(csr_args())))
    assert np.isfinite(fused.dense_sums(*call(dense_args())))


def test_folds_without_rows_add_nothing():
    fused = _fused()
    for entry, args in (
        (fused.csr_sums, csr_args(m=0, y=np.empty(0), indptr=np.zeros(1, np.int32))),
        (fused.dense_sums, dense_args(X=np.empty((0, N)), m=0, y=np.empty(0), loss=1)),
    ):
        K = args["K"]
        folds = {
            "fold": np.empty(0, np.int64),
            "labels": np.arange(K),
            "loss_sums": np.zeros(2 * K),
        }
        args.update(folds, grad=np.full((N + 1) * K, np.nan))
        assert entry(*call(args)) == 0.0
        assert not args["grad"].any() and not args["loss_sums"].any()


BAD_CSR = {
    "an index beyond the width": (
        {"indices": np.array([0, 7, 1, 2, 0, 1, 2], np.int32)},
        "outside",
    ),
    "a negative index": ({"indices": np.array([0, -5, 1, 2, 0, 1, 2], np.int32)}, "outside"),
    "an int64 index of 2^62": (
        {"indices": np.array([0, 2**62, 1, 2, 0, 1, 2]), "indptr": np.array([0, 2, 3, 4, 5, 7])},
        "outside",
    ),
    "indptr that decreases": ({"indptr": np.array([0, 2, 1, 4, 5, 7], np.int32)}, "decreases"),
    "indptr past the values": ({"indptr": np.array([0, 2, 3, 4, 5, 99], np.int32)}, "past"),
    "indptr below 0": ({"indptr": np.array([-4, 2, 3, 4, 5, 7], np.int32)}, "below 0"),
    "indptr too short": ({"indptr": np.array([0, 2, 3, 4, 7], np.int32)}, "indptr holds"),
    "a row count beyond indptr": ({"m": 50}, "holds"),
    "indices shorter than data": ({"indices": np.array([0, 1, 1], np.int32)}, "indices holds"),
    "int64 indices with int32 indptr": (
        {"indices": np.array([0, 1, 1, 2, 0, 1, 2], np.int64)},
        "int64 indptr",
    ),
    "int16 indices": (
        {"indices": np.array([0, 2, 1, 0, 2, 1, 0], np.int16)},
        "indices must hold int32 or int64",
    ),
    "unsigned indptr": (
        {"indptr": np.array([0, 2, 3, 4, 5, 7], np.uint32)},
        "indptr must hold int32 or int64",
    ),
    "int64 data": ({"data": np.arange(1, 8)}, "data must hold float32 or float64"),
    "big-endian data": ({"data": np.arange(1.0, 8.0).astype(">f8")}, "native byte order"),
    "data in two dimensions, one column": ({"data": np.arange(1.0, 8.0)[:, None]}, None),
    "float32 y": ({"y": np.array([0, 1, 0, 1, 1], np.float32)}, "y must hold float64"),
    "y in two dimensions": ({"y": np.array([[0.0, 1, 0, 1, 1]])}, "in one dimension"),
    "indptr of every other entry": (
        {"indptr": np.array([0, 9, 2, 9, 3, 9, 4, 9, 5, 9, 7], np.int32)[::2]},
        "indptr must be a C-contiguous array",
    ),
    "y of the wrong length": ({"y": np.zeros(3)}, "y holds"),
    "theta of the wrong length": ({"theta": np.zeros(2)}, "theta holds"),
    "grad of the wrong length": ({"grad": np.empty(99)}, "grad holds"),
    "weights of the wrong length": ({"weights": np.ones(4)}, "weights holds"),
    "a negative row count": ({"m": -1}, "need m, n >= 0"),
    "no outputs": ({"K": 0}, "K >= 1"),
    "an unknown loss": ({"loss": 8}, "loss code 8"),
    "a tweedie power of 2": ({"loss": 5, "param": 2.0}, "1 < power < 2"),
    "a NaN tweedie power": ({"loss": 5, "param": np.nan}, "1 < power < 2"),
    "a huber epsilon of 0": ({"loss": 6, "param": 0.0}, "epsilon > 0"),
    "folds without their labels": (
        {"fold": np.zeros(M, np.int64), "labels": np.empty(0, np.int64)},
        "labels holds",
    ),
    "fold ids of the wrong length": ({"fold": np.zeros(2, np.int64)}, "fold holds"),
    "int32 fold ids": ({"fold": np.zeros(M, np.int32)}, "fold must hold int64"),
}


@pytest.mark.parametrize("case", BAD_CSR)
def test_csr_entry_point_refuses(case):
    fused = _fused()
    change, message = BAD_CSR[case]
    if message is None:  # not bad: any dimensions, so long as the bytes are the values
        assert np.isfinite(fused.csr_sums(*call(csr_args(**change))))
        return
    with pytest.raises(ValueError, match=message):
        fused.csr_sums(*call(csr_args(**change)))


BAD_DENSE = {
    "a softmax label beyond the classes": ({"y": np.array([0.0, 1, 3, 1, 0])}, "row 2"),
    "a negative softmax label": ({"y": np.array([0.0, -1, 2, 1, 0])}, "row 1"),
    "a NaN softmax label": ({"y": np.array([0.0, 1, np.nan, 1, 0])}, "row 2"),
    "X shorter than m x n": ({"m": 6, "y": np.zeros(6)}, "X holds"),
    "a width beyond X": ({"n": 4, "theta": np.zeros(15), "grad": np.empty(15)}, "X holds"),
    "softmax with one output": (
        {"K": 1, "theta": np.zeros(N + 1), "grad": np.empty(N + 1)},
        "does not go with K = 1",
    ),
    "a width that overflows": ({"n": 2**62}, "holds"),
    "class weights of the wrong length": (
        {
            "loss": 1,
            "fold": np.zeros(M, np.int64),
            "labels": np.arange(3),
            "cw": np.ones(4),
            "loss_sums": np.zeros(6),
        },
        "class weights holds",
    ),
    "loss sums of the wrong length": (
        {
            "loss": 1,
            "fold": np.zeros(M, np.int64),
            "labels": np.arange(3),
            "loss_sums": np.zeros(2),
        },
        "loss_sums holds",
    ),
    "softmax fold models": (
        {"fold": np.zeros(M, np.int64), "labels": np.arange(3), "loss_sums": np.zeros(6)},
        "fold models",
    ),
    "Fortran-ordered X": ({"X": np.asfortranarray(np.ones((M, N)))}, "X must be a C-contiguous"),
    "float16 X": ({"X": np.ones((M, N), np.float16)}, "X must hold float32 or float64"),
    "a read-only grad": (
        {"grad": np.lib.stride_tricks.as_strided(np.empty((N + 1) * 3), writeable=False)},
        "read-only|writable",
    ),
    "class weights in float32": (
        {
            "loss": 1,
            "fold": np.zeros(M, np.int64),
            "labels": np.arange(3),
            "cw": np.ones((3, 2), np.float32),
            "loss_sums": np.zeros(6),
        },
        "class weights must hold float64",
    ),
}


def test_written_buffers_may_not_share_memory_with_what_the_sweep_reads():
    """Labels and indices are checked before the sweep; a grad that shares their memory
    would change them under it."""
    fused = _fused()
    shared = np.zeros(64)
    args = dense_args(grad=shared[: (N + 1) * 3], y=shared[:M])
    with pytest.raises(ValueError, match="grad shares memory with an input"):
        fused.dense_sums(*call(args))
    memory = np.zeros(16)  # the indices an int64 view of the grad's first bytes
    args = csr_args(
        grad=memory[: N + 1],
        indices=memory.view(np.int64)[:7],
        indptr=np.array([0, 2, 3, 4, 5, 7]),
    )
    with pytest.raises(ValueError, match="grad shares memory with an input"):
        fused.csr_sums(*call(args))
    folds = {"loss": 1, "fold": np.zeros(M, np.int64), "labels": np.arange(3), "K": 3}
    theta = np.zeros(3 * (N + 1))
    args = dense_args(**folds, theta=theta, grad=np.empty(3 * (N + 1)), loss_sums=theta[:6])
    with pytest.raises(ValueError, match="loss_sums shares memory with an input"):
        fused.dense_sums(*call(args))


@pytest.mark.parametrize("case", BAD_DENSE)
def test_dense_entry_point_refuses(case):
    fused = _fused()
    change, message = BAD_DENSE[case]
    with pytest.raises(ValueError, match=message):
        fused.dense_sums(*call(dense_args(**change)))


# ------------------------------------------------------------- matrices from the caller


def hostile(kind: str) -> sp.csr_matrix:
    X = sp.csr_matrix(np.eye(4, 3) + np.eye(4, 3, k=1))
    if kind == "index 7":
        X.indices[0] = 7
    elif kind == "index -5":
        X.indices[0] = -5
    elif kind == "indptr decreases":
        X.indptr[2] = 0
    elif kind == "indptr past the values":
        X.indptr[-1] = 99
    return X


HOSTILE = {
    "index 7": "X holds 1 column index outside 0 .. 2 (e.g. 7 in row 0)",
    "index -5": "X holds 1 column index outside 0 .. 2 (e.g. -5 in row 0)",
    "indptr decreases": "X.indptr decreases at row 1",
    "indptr past the values": "X.indptr ends at 99, but X stores only 5 values",
}
Y = np.array([0, 1, 0, 1])


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("estimator", [mpigd.LogisticRegression, mpigd.LinearRegression])
def test_estimators_refuse_a_hostile_csr_everywhere(kind, estimator):
    X = hostile(kind)
    before = [a.copy() for a in (X.data, X.indices, X.indptr)]
    with pytest.raises(ValueError, match=HOSTILE[kind].replace("(", r"\(").replace(")", r"\)")):
        estimator().fit(X, Y)
    fitted = estimator().fit(hostile("none"), Y)
    methods = ["predict", "decision_function"] if estimator is mpigd.LogisticRegression else []
    for method in ["predict", *methods]:
        with pytest.raises(ValueError, match="X"):
            getattr(fitted, method)(X)
    with pytest.raises(ValueError, match="X"):
        fitted.score(X, Y)
    after = [X.data, X.indices, X.indptr]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("kind", HOSTILE)
def test_fit_and_models_refuse_a_hostile_csr(kind):
    X = hostile(kind)
    info = DatasetInfo("", "X", "y", 4, 3, X.dtype, np.dtype(np.float64))
    with pytest.raises(InvalidInputError, match="X"):
        mpigd.fit(LocalData(info, 0, 4, X, Y.astype(float)), "logistic")
    model = LinearModel("logistic", np.array([1.0, -1.0, 0.5]), 0.1)
    with pytest.raises(ValueError, match="X"):
        model.decision_function(X)


def test_local_rows_of_the_wrong_length_are_refused():
    X = sp.csr_matrix(np.eye(4, 3))
    info = DatasetInfo("", "X", "y", 4, 3, X.dtype, np.dtype(np.float64))
    with pytest.raises(InvalidInputError, match=r"y has shape \(3,\) but X has 4 rows"):
        mpigd.fit(LocalData(info, 0, 4, X, np.zeros(3)), "logistic")


def test_unsorted_and_repeated_columns_become_a_canonical_copy():
    data, indices, indptr = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2, 0, 2, 1]), [0, 3, 4]
    X = sp.csr_matrix((data, indices, indptr), shape=(2, 3))
    before = X.indices.copy()
    Y_ = checked_csr(X)
    assert Y_ is not X and Y_.has_canonical_format
    np.testing.assert_array_equal(Y_.toarray(), [[2.0, 0.0, 4.0], [0.0, 4.0, 0.0]])
    np.testing.assert_array_equal(X.indices, before)  # the caller's arrays as they were
    canonical = sp.csr_matrix(np.eye(3))
    assert checked_csr(canonical) is canonical  # nothing to copy


def test_a_coo_matrix_is_converted_by_the_estimators_and_refused_by_fit():
    X = sp.coo_matrix(np.eye(4, 3))
    assert mpigd.LinearRegression().fit(X, np.arange(4.0)).coef_.shape == (3,)
    info = DatasetInfo("", "X", "y", 4, 3, X.dtype, np.dtype(np.float64))
    with pytest.raises(InvalidInputError, match=r"coo matrix; pass it as CSR"):
        mpigd.fit(LocalData(info, 0, 4, X, np.arange(4.0)), "linear")


LOCAL_LABELS = {
    ("softmax", -1.0): "integers 0, 1, 2, ...; found 1 other values (e.g. -1 in row 4)",
    ("softmax", 0.5): "class labels must be integers",
    ("softmax", np.nan): "y holds NaN or infinite values",
    ("logistic", 7.0): "logistic labels must be 0 or 1",
}


@pytest.mark.parametrize(("model", "bad"), LOCAL_LABELS)
def test_labels_in_memory_are_checked_as_a_files_are(model, bad):
    """Labels index memory (softmax) or must be 0/1 (logistic): rows in memory are checked
    as a file's rows are, whichever kernels run (NumPy would wrap -1 around silently)."""
    X = np.random.default_rng(0).standard_normal((30, 3))
    y = np.arange(30.0) % (3 if model == "softmax" else 2)
    y[4] = bad
    info = DatasetInfo("", "X", "y", 30, 3, X.dtype, np.dtype(np.float64))
    with pytest.raises(InvalidInputError, match=re.escape(LOCAL_LABELS[model, bad])):
        mpigd.fit(LocalData(info, 0, 30, X, y), model, l2=1e-2)


def test_values_and_weights_in_memory_are_checked():
    X, y = np.eye(4, 3), np.array([0.0, 1, 0, 1])
    info = DatasetInfo("", "X", "y", 4, 3, X.dtype, np.dtype(np.float64))
    X_nan = X.copy()
    X_nan[2, 1] = np.inf
    with pytest.raises(InvalidInputError, match="X holds 1 NaN or infinite values"):
        mpigd.fit(LocalData(info, 0, 4, X_nan, y), "logistic")
    with pytest.raises(InvalidInputError, match="weights must be >= 0"):
        mpigd.fit(LocalData(info, 0, 4, X, y, np.array([1.0, -1, 1, 1])), "logistic")
    with pytest.raises(InvalidInputError, match="2-D float32 or float64 array"):
        mpigd.fit(LocalData(info, 0, 4, X.astype(np.int64), y), "logistic")


@pytest.mark.parametrize(
    "indptr",
    [
        np.array([0, 5, 2], np.uint64),  # its difference wraps to a huge positive number
        np.array([0, 100, -100], np.int8),
        np.array([0, 2**63 - 1, -2]),  # its difference overflows int64 to positive
    ],
    ids=["uint64", "int8", "int64 overflow"],
)
def test_a_decreasing_indptr_is_seen_whatever_its_dtype(indptr):
    X = sp.csr_matrix((np.array([1.0, 2, 3]), np.array([0, 1, 0]), np.array([0, 2, 3])))
    X.indptr = indptr
    with pytest.raises(InvalidInputError, match=r"X\.indptr decreases at row 1"):
        checked_csr(X)
    with pytest.raises(ValueError, match=r"X\.indptr decreases at row 1"):
        mpigd.LinearRegression().fit(X, np.array([1.0, 2.0]))


def test_other_sparse_formats_are_checked_before_scipy_converts_them():
    model = LinearModel("linear", np.ones(3), 0.0)
    coo = sp.coo_matrix(np.eye(4, 3))
    coo.row[0] = 10**8  # scipy's conversion to CSR would write far outside its arrays
    csc = sp.csc_matrix(np.eye(4, 3))
    csc.indices[0] = 10**8
    for X, message in (
        (coo, r"X.row holds indices outside 0 .. 3 \(e.g. 100000000\)"),
        (csc, r"X is CSC, so X.T is CSR: X.T holds 1 column index outside 0 .. 3"),
    ):
        with pytest.raises(ValueError, match=message):
            model.decision_function(X)
        with pytest.raises(ValueError, match=message):
            mpigd.LinearRegression().fit(X, np.arange(4.0))
        fitted = mpigd.LinearRegression().fit(np.eye(4, 3), np.arange(4.0))
        with pytest.raises(ValueError, match=message):
            fitted.predict(X)
    good = sp.csr_array(np.eye(4, 3) + np.eye(4, 3, k=1))
    want = model.decision_function(good)
    for fmt in ("csc", "coo", "lil", "dok"):  # the formats scipy converts safely, or checked
        np.testing.assert_array_equal(model.decision_function(good.asformat(fmt)), want)
    for fmt in ("dia", "bsr"):  # scikit-learn's checks accept a refusal that says "sparse"
        with pytest.raises(ValueError, match=f"X is a sparse {fmt} matrix.*pass it as CSR"):
            model.decision_function(good.asformat(fmt))


def test_ranks_agree_on_rows_in_memory_that_are_spoiled_on_one_rank():
    """mpigd.fit with rows in memory at P = 2: text labels, no labels, another width or
    weights on one rank only are the same one-line error on every rank, then in step."""
    proc = run_mpi(2, "tests/mpi/mpi_local_rows.py", env={"MPIGD_COLLECTIVE_TIMEOUT": "30"})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    said = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    assert said == {
        "text labels": "y must hold numbers, one a row (on rank 1)",
        "no labels": "y is missing: training a logistic model needs a label a row (on rank 1)",
        "another width": "X has 4 columns but its DatasetInfo says 3 features (on rank 1)",
        "weights on one rank": "row weights are given on rank 0 but not on rank 1: give them "
        "on every rank or on none",
    }
    assert proc.stdout.strip().splitlines()[-1] == "in step"


def test_one_dimensional_and_unsigned_sparse_input_is_one_clear_error_or_used():
    with pytest.raises(InvalidInputError, match=r"X must be 2-D, not of shape \(3,\)"):
        checked_sparse(sp.coo_array(np.ones(3)))
    with pytest.raises(InvalidInputError, match=r"X must be 2-D"):
        checked_csr(sp.csr_array(np.ones(3)))
    X = sp.csr_matrix(np.eye(4, 3) + np.eye(4, 3, k=1))
    X.indptr, X.indices = X.indptr.astype(np.uint64), X.indices.astype(np.uint16)
    checked = checked_csr(X)  # in range: used, with the index types scipy computes with
    assert {checked.indices.dtype, checked.indptr.dtype} <= {np.dtype(np.int32), np.dtype(np.int64)}
    np.testing.assert_array_equal(checked.toarray(), np.eye(4, 3) + np.eye(4, 3, k=1))
    info = DatasetInfo("", "X", "y", 4, 3, X.dtype, np.dtype(np.float64))
    fitted = mpigd.fit(LocalData(info, 0, 4, X, np.array([0.0, 1, 0, 1])), "logistic", l2=1e-2)
    assert fitted.model.coef.shape == (3,)
    with pytest.raises(mpigd.MpigdError, match="the ranks hold 4 rows in all, but the data"):
        mpigd.fit(LocalData(replace(info, n_rows=5), 0, 4, X, np.array([0.0, 1, 0, 1])), "logistic")


#: Another thread changes indices (or indptr) while a CSR sweep of 1.1M rows runs with the
#: GIL released: it turns the first value's column (or row end) of every 997th row of
#: the first span bad and back, over and over, until the call returns, and counts the
#: changes it made while the call ran.
_RACE = """
import sys, threading, numpy as np
from mpigd.kernels import _fused
m, n, per = 1_100_000, 1000, 20
indptr = (np.arange(m + 1) * per).astype(np.int32)
indices = np.random.default_rng(0).integers(0, n, m * per).astype(np.int32)
data, y, theta = np.ones(m * per), np.zeros(m), np.zeros(n + 1)
target, at = (indptr, np.arange(1, m, 997)) if sys.argv[1] == "indptr" else (
    indices, indptr[:-1:997])
good, bad = target[at].copy(), np.int32(2**31 - 1)
running, done, changes = threading.Event(), threading.Event(), [0]
def change():
    running.wait()
    while not done.is_set():
        changes[0] += 1  # before the change: a sweep it made fail has seen one
        target[at] = bad
        target[at] = good
thread = threading.Thread(target=change)
thread.start()
running.set()
try:
    total = _fused.csr_sums(
        (data, indices, indptr, m, n, y, np.empty(0)), (theta, 1, 0.0, 1, 1),
        (np.empty(n + 1), 0, 0.0),
    )
    print("sums", total)
except ValueError as exc:
    print("refused", exc)
during = changes[0]
done.set()
thread.join()
print("changes", during)
"""


@pytest.mark.parametrize("array", ["indices", "indptr"])
def test_arrays_changed_by_another_thread_during_a_csr_sweep_are_never_followed(array):
    """The CSR sweep checks each row range and column index where it reads it, the value
    checked being the one followed: indices or indptr that another thread changes during
    a sweep (the GIL is released) are refused or summed, never followed outside the
    buffers (a build that followed them crashed here)."""
    _fused()
    done = subprocess.run(
        [sys.executable, "-c", _RACE, array], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = r"(sums \S+|refused .*\(row \d+\))\nchanges (\d+)\n"
    found = re.fullmatch(outcome, done.stdout)
    assert found, done.stdout
    assert int(found[2]) > 0, "the other thread changed nothing while the sweep ran"
