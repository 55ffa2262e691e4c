"""The compiled fused kernels against the NumPy and scipy.sparse reference kernels.

Every loss, with and without weights, float32 and float64, row counts around the C
block size, column counts around its register chunk, empty and one-row slices, CSR with
each index width and rows without values; extreme and non-finite predictors.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import EPSILON, POWER, ROOT, targets

from mpigd.kernels import compiled, dense, folds, for_rows, select, sparse
from mpigd.kernels.losses import MODELS, make_loss

KINDS = list(MODELS)
needs_compiled = pytest.mark.skipif(
    compiled.name() != "compiled", reason=f"compiled kernels off: {compiled.why_not}"
)


@needs_compiled
def test_the_fused_multiply_add_sweep_can_be_turned_off():
    """MPIGD_KERNELS_NO_FMA chooses the dense sweep that multiplies and adds apart (what
    CPUs without FMA run; tests/run.sh runs this file again under it); the sums of the
    two agree to rounding."""
    script = (
        "import sys, numpy as np; from mpigd.kernels import _fused, compiled;"
        " from mpigd.kernels.losses import make_loss;"
        " rng = np.random.default_rng(5); X = rng.standard_normal((300, 37));"
        " y = (rng.random(300) < 0.5) * 1.0; theta = rng.standard_normal(38) / 4;"
        " f, g = compiled.dense_sweep(X, y, theta, make_loss('logistic'));"
        " print(_fused.FMA, repr(float(f)), *map(repr, g.tolist()))"
    )
    runs = {}
    for off in (False, True, "0"):  # "0" (or empty) leaves it on
        env = {k: v for k, v in os.environ.items() if k != "MPIGD_KERNELS_NO_FMA"}
        if off:
            env["MPIGD_KERNELS_NO_FMA"] = "1" if off is True else off
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        flag, *sums = proc.stdout.split()
        runs[off] = (int(flag), np.array(sums, dtype=float))
    assert runs[True][0] == 0
    assert runs["0"][0] == runs[False][0]
    np.testing.assert_array_equal(runs["0"][1], runs[False][1])
    np.testing.assert_allclose(runs[False][1], runs[True][1], rtol=1e-12, atol=1e-12)


def test_the_compiled_kernels_are_built_unless_turned_off():
    # CI installs with a C compiler: a build that silently failed must fail here.
    if os.environ.get("MPIGD_KERNELS") == "numpy":
        assert compiled.name() == "numpy" and compiled.why_not == "MPIGD_KERNELS=numpy"
    else:
        assert compiled.name() == "compiled", compiled.why_not


def problem(kind, m, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    loss = make_loss(kind, 3, power=POWER, epsilon=EPSILON)
    X = rng.standard_normal((m, n)).astype(dtype)
    y = targets(kind, rng.standard_normal(m), rng)
    theta = rng.standard_normal((n + 1) * loss.n_outputs) / np.sqrt(n + 1)
    return X, y, theta, loss, rng.random(m) + 0.5


def assert_close(fused, reference, dtype):
    # float32 X is read as it is and summed in float64 on both sides: the difference is
    # the order of the sums, not the rounding of X.
    f, g = fused
    f_ref, g_ref = reference
    assert f == pytest.approx(f_ref, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=1e-11, atol=1e-12 * max(1.0, np.abs(g_ref).max()))


@needs_compiled
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("m", "n"), [(0, 5), (1, 5), (1, 40), (130, 1), (200, 16), (257, 37)])
@pytest.mark.parametrize("weighted", [False, True])
def test_dense_fused_sums_equal_the_numpy_reference(kind, dtype, m, n, weighted):
    X, y, theta, loss, weights = problem(kind, m, n, dtype)
    weights = weights if weighted else None
    out = np.full(theta.shape, np.nan)  # stale values in the buffer must not leak in
    fused = compiled.dense_sums(X, y, theta, loss, out, weights=weights)
    assert fused is not None and fused[1] is out
    assert_close(fused, dense.reference_sums(X, y, theta, loss, weights=weights), dtype)
    f, g = compiled.dense_sums(X, y, theta, loss, weights=weights, need_loss=False)
    assert f == 0.0
    np.testing.assert_allclose(g, fused[1], rtol=1e-15, atol=0)


@needs_compiled
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("index", [np.int32, np.int64])
@pytest.mark.parametrize("weighted", [False, True])
def test_csr_fused_sums_equal_the_scipy_reference(kind, dtype, index, weighted):
    X, y, theta, loss, weights = problem(kind, 300, 50, dtype, seed=1)
    X[X < 1.0] = 0.0  # about 16% stored
    X[7] = 0.0  # rows without values
    X[200:210] = 0.0
    X = sp.csr_matrix(X)
    X.indices, X.indptr = X.indices.astype(index), X.indptr.astype(index)
    weights = weights if weighted else None
    fused = compiled.csr_sums(X, y, theta, loss, weights=weights)
    assert_close(fused, sparse.reference_sums(X, y, theta, loss, weights=weights), dtype)
    part = X[100:250]  # a rank's rows of a bigger matrix
    assert_close(
        compiled.csr_sums(part, y[100:250], theta, loss),
        sparse.reference_sums(part, y[100:250], theta, loss),
        dtype,
    )


def _continued(X, y, theta, loss, weights, piece):
    """The sums of compiled.csr_sweep over X's rows in pieces of ``piece`` rows, each
    piece's sweep continuing the last one's (``after``)."""
    grad, total = np.empty_like(theta), None
    for start in range(0, X.shape[0], piece):
        rows = slice(start, start + piece)
        w = None if weights is None else weights[rows]
        total, _ = compiled.csr_sweep(X[rows], y[rows], theta, loss, grad, weights=w, after=total)
    return total, grad


@needs_compiled
@pytest.mark.parametrize("K, piece", [(1, 1 << 18), (64, 64)])
def test_a_csr_sweep_over_several_spans_sums_as_one_block_after_another(K, piece):
    """The CSR sweep gathers a span of rows (_fused.SPAN_VALUES derivatives: 1M rows of one
    output, 16,384 of 64) before it scatters them. Over rows of several spans it gives the
    bits of sweeps over pieces of ``piece`` rows, continued (64: one block each, the order
    of the sweep before spans), and the scipy reference's sums to rounding; an index
    outside the columns names its row, in the first block of a later span and in a block
    within one."""
    from mpigd.kernels import _fused

    span = _fused.SPAN_VALUES // K
    m, n = 4 * span + 100, 8
    rng = np.random.default_rng(7)
    X = sp.random(m, n, density=0.2, format="csr", random_state=rng)
    if K == 1:
        loss, y = make_loss("logistic"), (rng.random(m) < 0.5).astype(float)
    else:
        loss, y = make_loss("softmax", K), rng.integers(0, K, m).astype(float)
    theta = rng.standard_normal((n + 1) * K) / 4
    weights = rng.uniform(0, 2, m)
    f, g = compiled.csr_sweep(X, y, theta, loss, weights=weights)
    f_pieces, g_pieces = _continued(X, y, theta, loss, weights, piece)
    assert f == f_pieces and np.array_equal(g, g_pieces)
    assert_close((f, g), sparse.reference_sums(X, y, theta, loss, weights=weights), np.float64)
    for near in (3 * span, 2 * span + 5 * 64 + 3):
        bad = X.copy()
        row = near + int(np.argmax(np.diff(bad.indptr[near:]) > 0))  # a row with values
        bad.indices[bad.indptr[row]] = n
        with pytest.raises(ValueError, match=rf"\(row {row}\)"):
            compiled.csr_sweep(bad, y, theta, loss, weights=weights)


@needs_compiled
def test_int32_indptr_with_int64_indices_is_widened():
    X, y, theta, loss, _ = problem("logistic", 40, 10, np.float64)
    X = sp.csr_matrix(X)
    X.indices = X.indices.astype(np.int64)
    assert_close(
        compiled.csr_sums(X, y, theta, loss),
        sparse.reference_sums(X, y, theta, loss),
        np.float64,
    )


@needs_compiled
def test_logistic_is_stable_at_extreme_predictors_and_keeps_non_finite_ones():
    loss = make_loss("logistic")
    X = np.array([[800.0], [-800.0], [40.0], [-40.0], [1e-20], [0.0]])
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    theta = np.array([1.0, 0.0])
    assert_close(compiled.dense_sums(X, y, theta, loss), dense.reference_sums(X, y, theta, loss), 0)
    for bad in (np.nan, np.inf):
        f, g = compiled.dense_sums(np.array([[bad], [1.0]]), y[:2], theta, loss)
        with np.errstate(invalid="ignore"):
            f_ref, _ = dense.reference_sums(np.array([[bad], [1.0]]), y[:2], theta, loss)
        assert not np.isfinite(f) and not np.isfinite(f_ref)
        assert (~np.isfinite(g)).any()


@needs_compiled
def test_rows_the_kernel_cannot_read_go_to_the_reference():
    X, y, theta, loss, _ = problem("linear", 30, 4, np.float64)
    assert compiled.dense_sums(np.asfortranarray(X), y, theta, loss) is None
    assert compiled.dense_sums(X.astype(np.int64), y, theta, loss) is None
    wide = np.zeros((2, compiled.DENSE_MAX_FEATURES + 1))
    assert compiled.dense_sums(wide, y[:2], np.zeros(wide.shape[1] + 1), loss) is None
    many = make_loss("softmax", compiled.DENSE_MAX_CLASSES + 1)
    assert compiled.dense_sums(X, y * 0, np.zeros(5 * many.n_outputs), many) is None
    f, _ = dense.local_sums(np.asfortranarray(X), y, theta, loss)
    assert f == pytest.approx(dense.reference_sums(X, y, theta, loss)[0], rel=1e-14)


@needs_compiled
def test_softmax_labels_outside_the_classes_are_refused_before_c_indexes_with_them():
    X, y, theta, loss, _ = problem("softmax", 10, 3, np.float64)
    y[4] = 3.0
    with pytest.raises(ValueError, match=r"0 \.\. 2"):
        compiled.dense_sums(X, y, theta, loss)


def test_the_environment_variable_turns_the_compiled_kernels_off_and_on():
    def which(value):
        code = "from mpigd.kernels import compiled; print(compiled.name())"
        env = {**os.environ, "MPIGD_KERNELS": value}
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        return run.returncode, run.stdout.strip() or run.stderr.strip().splitlines()[-1]

    assert which("numpy") == (0, "numpy")
    status, message = which("fast")
    assert status != 0 and "choose auto, compiled or numpy" in message
    if compiled.name() == "compiled":
        assert which("compiled") == (0, "compiled")


@needs_compiled
def test_arrays_of_the_wrong_length_never_reach_the_c_code():
    # The wrapper hands anything else to the reference kernels, which raise NumPy's
    # error (the C code would refuse it too: tests/kernels/test_memory_safety.py).
    X, y, theta, loss, weights = problem("logistic", 100, 5, np.float64)
    for bad in (
        {"y": y[:10]},
        {"y": y[:, None]},
        {"theta": theta[:3]},
        {"out": np.zeros(2)},
        {"weights": weights[:7]},
    ):
        args = {"y": y, "theta": theta, "out": None, "weights": None, **bad}
        assert compiled.dense_sums(X, args["y"], args["theta"], loss, args["out"],
                                   weights=args["weights"]) is None  # fmt: skip
        assert compiled.csr_sums(sp.csr_matrix(X), args["y"], args["theta"], loss,
                                 args["out"], weights=args["weights"]) is None  # fmt: skip
    with pytest.raises((ValueError, IndexError)):
        dense.local_sums(X, y, theta, loss, out=np.zeros(2))


@needs_compiled
def test_sparse_formats_other_than_csr_use_scipy():
    X, y, theta, loss, _ = problem("logistic", 60, 5, np.float64)
    X[X < 0.5] = 0.0
    csr = sp.csr_matrix(X)
    expected = sparse.reference_sums(csr, y, theta, loss)
    for other in (csr.tocsc(), csr.tocoo()):
        assert compiled.csr_sums(other, y, theta, loss) is None
        assert_close(sparse.local_sums(other.tocsr(), y, theta, loss), expected, 0)
    one_class = make_loss("softmax", 1)
    assert compiled.dense_sums(X, y * 0, np.zeros(6), one_class) is None


def test_compiled_kernels_asked_for_but_not_built_is_one_line(tmp_path):
    """A copy of the package without the extension, run from its folder (so that it is the
    one imported): MPIGD_KERNELS=compiled is one line and status 2, an ImportError in
    Python."""
    shutil.copytree(ROOT / "mpigd", tmp_path / "mpigd")
    for built in (tmp_path / "mpigd" / "kernels").glob("_fused*.so"):
        built.unlink()
    env = {**os.environ, "MPIGD_KERNELS": "compiled"}
    run = subprocess.run(
        [sys.executable, "-m", "mpigd", "train", "absent.h5", "--model", "linear", "--out", "m.h5"],
        env=env, cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("mpigd: error: MPIGD_KERNELS=compiled, but the compiled kernels")
    code = "import mpigd.kernels.compiled"
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True)
    assert b"ImportError" in run.stderr or b"KernelsUnavailable" in run.stderr


# ------------------------------------------------------------- the choice, made once


def layouts():
    """``(label, X, loss, reason)``: rows in each layout, with the loss they are chosen
    for and a piece of why NumPy computes their sums (None: the compiled kernels)."""
    X, _, _, _, _ = problem("logistic", 40, 6, np.float64)
    X[X < 0.3] = 0.0
    wide = np.zeros((3, compiled.DENSE_MAX_FEATURES + 1))
    logistic, softmax = make_loss("logistic"), make_loss("softmax", 3)
    many = make_loss("softmax", compiled.DENSE_MAX_CLASSES + 1)
    return [
        ("dense float64", X, logistic, None),
        ("dense float32", X.astype(np.float32), logistic, None),
        ("dense softmax", X, softmax, None),
        ("CSR", sp.csr_matrix(X), logistic, None),
        ("CSR float32, int64 indices", _int64_csr(X.astype(np.float32)), softmax, None),
        ("CSR softmax of many classes", sp.csr_matrix(X), many, None),
        ("Fortran-ordered", np.asfortranarray(X), logistic, "not C-ordered"),
        ("int64", X.astype(np.int64), logistic, "int64"),
        ("a strided view", X[:, ::2], logistic, "not C-ordered"),
        ("wide", wide, logistic, "BLAS is faster"),
        ("dense softmax of many classes", X, many, "BLAS is faster"),
        ("softmax of one class", X, make_loss("softmax", 1), "softmax of 1 class"),
        ("CSC", sp.csc_matrix(X), logistic, "csc"),
        ("COO", sp.coo_matrix(X), logistic, "coo"),
    ]


def _int64_csr(X):
    csr = sp.csr_matrix(X)
    csr.indices, csr.indptr = csr.indices.astype(np.int64), csr.indptr.astype(np.int64)
    return csr


@pytest.mark.parametrize("case", range(len(layouts())), ids=[c[0] for c in layouts()])
def test_select_names_the_kernels_and_why(case):
    _, X, loss, reason = layouts()[case]
    kernels = select(X, loss)
    want_layout = sparse if sp.issparse(X) else dense
    assert kernels.layout is want_layout
    if compiled.name() == "numpy":  # off or not built: NumPy everywhere, and why
        assert (kernels.name, kernels.reason) == ("numpy", compiled.why_not)
    elif reason is None:
        assert (kernels.name, kernels.reason) == ("compiled", None)
    else:
        assert kernels.name == "numpy" and reason in kernels.reason
    assert kernels.name in repr(kernels)


def _rows(kind, layout, dtype):
    X, y, theta, loss, weights = problem(kind, 150, 20, dtype, seed=3)
    if layout == "csr":
        X[np.abs(X) < 0.8] = 0.0
        X = sp.csr_matrix(X)
    return X, y, theta, loss, weights


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_select_gives_the_same_bits_as_the_per_call_path(kind, layout, dtype):
    X, y, theta, loss, weights = _rows(kind, layout, dtype)
    kernels, per_call = select(X, loss), for_rows(X)
    for w in (None, weights):
        f, g = kernels.local_sums(X, y, theta, loss, weights=w)
        f_ref, g_ref = per_call.local_sums(X, y, theta, loss, weights=w)
        assert f == f_ref and np.array_equal(g, g_ref)
        out = np.full(theta.shape, np.nan)
        assert kernels.local_sums(X, y, theta, loss, out, weights=w)[1] is out
        assert np.array_equal(out, g_ref)
        rows = np.arange(30, 97, 2)  # a mini-batch: rows of the same layout
        w_b = None if w is None else w[rows]
        f, g = kernels.local_sums(X[rows], y[rows], theta, loss, weights=w_b)
        f_ref, g_ref = per_call.local_sums(X[rows], y[rows], theta, loss, weights=w_b)
        assert f == f_ref and np.array_equal(g, g_ref)
    if loss.n_outputs > 1:
        return
    v = np.linspace(-1.0, 1.0, len(theta))
    for method, args in (
        ("local_hessian", (X, y, theta, loss)),
        ("local_curvature", (X, y, theta, loss)),
        ("local_hessp", (X, y, theta, v, loss)),
    ):
        mine = getattr(kernels, method)(*args, weights=weights)
        assert np.array_equal(mine, getattr(per_call, method)(*args, weights=weights)), method
    d = kernels.local_curvature(X, y, theta, loss)
    assert np.array_equal(kernels.curvature_product(X, d, v), per_call.curvature_product(X, d, v))


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_selected_fold_sums_give_the_same_bits_as_the_per_call_path(layout):
    X, y, _, loss, weights = _rows("logistic", layout, np.float64)
    F = 3
    rng = np.random.default_rng(5)
    Theta = rng.standard_normal((X.shape[1] + 1, F))
    fold, labels = rng.integers(0, F, X.shape[0]), np.arange(F)
    class_weights = rng.uniform(0.5, 2.0, (F, 2))
    chosen = folds.select_fold_sums(X, loss)
    assert chosen.name == compiled.name() and chosen.reason == compiled.why_not
    for kwargs in ({}, {"weights": weights, "class_weights": class_weights}):
        got = chosen(X, y, Theta, loss, fold, labels, **kwargs)
        want = folds.fold_sums(X, y, Theta, loss, fold, labels, **kwargs)
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    softmax = folds.select_fold_sums(X, make_loss("softmax", 3))
    assert softmax.name == "numpy" and softmax.reason is not None
    if compiled.name() == "compiled":
        assert chosen.reason is None
        empty = chosen(X[:0], y[:0], Theta, loss, fold[:0], labels)  # a rank without rows
        assert not any(np.any(a) for a in empty)


@needs_compiled
@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [3, 6, 16, 37, 39])
def test_a_fold_models_sums_do_not_depend_on_the_folds_swept_with_it(layout, dtype, n):
    """A cross-validation resumed after a stop sweeps fewer folds at once: each model's
    sums must have the same bits alone, in a group of four outputs, or after one (the
    compiled sweep's promise; the NumPy reference's matrix products sum in BLAS's order,
    which depends on the outputs)."""
    X, y, _, loss, _ = problem("logistic", 150, n, dtype, seed=4)  # ragged tails of n % 16
    if layout == "csr":
        X[np.abs(X) < 0.5] = 0.0
        X = sp.csr_matrix(X)
    F = 6
    rng = np.random.default_rng(6)
    Theta = rng.standard_normal((X.shape[1] + 1, F))
    fold = rng.integers(0, F, X.shape[0])
    sweep = folds.select_fold_sums(X, loss)
    every = sweep(X, y, Theta, loss, fold, np.arange(F))
    for subset in ([4], [5], [3, 4, 5], [1, 2, 3, 4, 5], [5, 0, 1, 2, 3]):
        some = sweep(X, y, Theta[:, subset], loss, fold, np.array(subset))
        for got, want in zip(some, every, strict=True):
            assert np.array_equal(got, want[..., subset]), subset


@needs_compiled
@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_arrays_that_disagree_with_the_rows_are_a_value_error_from_the_chosen_kernels(layout):
    """The compiled kernels, chosen once, check nothing in Python on a call: what they
    cannot follow is the C code's ValueError, never a crash."""
    X, y, theta, loss, weights = _rows("logistic", layout, np.float64)
    kernels = select(X, loss)
    assert kernels.name == "compiled"
    bad_calls = [
        {"y": y[:10]},
        {"y": y[:, None]},
        {"theta": theta[:3]},
        {"out": np.zeros(2)},
        {"out": np.zeros(2 * len(theta))[::2]},
        {"weights": weights[:7]},
        {"X": X.astype(np.float16) if layout == "dense" else X[:, :5]},
    ]
    if layout == "dense":
        bad_calls.append({"X": np.asfortranarray(X)})
    for bad in bad_calls:
        args = {"X": X, "y": y, "theta": theta, "out": None, "weights": None, **bad}
        with pytest.raises(ValueError):
            kernels.local_sums(args["X"], args["y"], args["theta"], loss, args["out"],
                               weights=args["weights"])  # fmt: skip
    chosen = folds.select_fold_sums(X, loss)
    fold, Theta = np.zeros(X.shape[0], np.int64), np.zeros((X.shape[1] + 1, 2))
    for bad in ({"fold": fold[:5]}, {"Theta": Theta[:-1]}, {"Theta": Theta[:, 0]}):
        args = {"fold": fold, "Theta": Theta, **bad}
        with pytest.raises(ValueError):
            chosen(X, y, args["Theta"], loss, args["fold"], np.arange(2))


def test_select_with_the_compiled_kernels_turned_off():
    code = (
        "import numpy as np, scipy.sparse as sp\n"
        "from mpigd.kernels import select\n"
        "from mpigd.kernels.folds import select_fold_sums\n"
        "from mpigd.kernels.losses import make_loss\n"
        "X, loss = np.eye(4, 3), make_loss('logistic')\n"
        "for k in (select(X, loss), select(sp.csr_matrix(X), loss), select_fold_sums(X, loss)):\n"
        "    print(k.name, k.reason)\n"
    )
    env = {**os.environ, "MPIGD_KERNELS": "numpy"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["numpy MPIGD_KERNELS=numpy"] * 3


@needs_compiled
@pytest.mark.parametrize("kind", ["poisson", "gamma", "tweedie"])
def test_overflow_where_it_does_not_count_stays_out_of_the_sums(kind):
    # A row of weight 0 (a held-out row in cross-validation) whose exp overflows, and a
    # tweedie row with y = 0 whose second term's exp does: neither makes a NaN.
    loss = make_loss(kind, power=1.9)
    X = np.array([[1.0], [0.5], [900.0], [-900.0]])
    y = np.array([1.0, 2.0, 1.0, 1.0 if kind != "tweedie" else 0.0])
    weights = np.array([1.0, 1.0, 0.0, 1.0 if kind == "tweedie" else 0.0])
    theta = np.array([1.0, 0.0])
    for X_ in (X, sp.csr_matrix(X)):
        fused = (compiled.csr_sweep if sp.issparse(X_) else compiled.dense_sweep)(
            X_, y, theta, loss, weights=weights
        )
        reference = for_rows(X_).reference_sums(X_, y, theta, loss, weights=weights)
        assert np.isfinite(fused[0]) and np.isfinite(fused[1]).all()
        assert_close(fused, reference, np.float64)
