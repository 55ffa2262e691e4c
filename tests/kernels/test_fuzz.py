"""Property-based fuzzing (hypothesis) of what takes untrusted input: the compiled entry
points and the text parsers.

For the kernels, every drawn argument list is either one the C code may follow, and then
its sums equal the NumPy/scipy reference's, or one it must refuse with a ``ValueError``,
decided by an independent statement of what is safe. For the parsers, a well-formed text
converts to exactly the matrix it spells, and a spoiled line is one :class:`MpigdError`
naming its line, never another exception. Under the sanitizer step of ``tests/run.sh``
every example also runs under AddressSanitizer and UBSan.
"""

from __future__ import annotations

import importlib
import warnings

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mpigd.errors import MpigdError
from mpigd.io.convert import convert
from mpigd.kernels import dense, folds, sparse
from mpigd.kernels.losses import make_loss

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def fused():
    try:
        return importlib.import_module("mpigd.kernels._fused")
    except ImportError as exc:
        pytest.skip(f"the compiled kernels are not built here ({exc})")


def _loss_of(K: int):
    return make_loss("softmax", K) if K > 1 else make_loss("logistic")


#: The single-output loss codes of the C kernel, by name.
CODES = {0: "linear", 1: "logistic", 3: "poisson", 4: "gamma", 5: "tweedie", 6: "huber", 7: "svm"}


def _param_ok(code: int, param: float) -> bool:
    """Whether the C kernel takes this parameter for this loss."""
    if code == 5:
        return 1.0 < param < 2.0
    return param > 0.0 if code == 6 else True


def _single_loss(call: dict):
    """The reference loss of a drawn single-output call."""
    name, param = CODES[call["loss"]], call.get("param", 0.0)
    return make_loss(name, power=param if name == "tweedie" else 1.5,
                     epsilon=param if name == "huber" else 1.35)  # fmt: skip


def grouped(call: dict) -> tuple:
    """The arguments of ``_fused.dense_sums`` or ``_fused.csr_sums`` for a drawn call:
    ``(rows, model, (grad, add, start)[, folds])``."""
    values = ("data", "indices", "indptr") if "data" in call else ("X",)
    rows = tuple(call[k] for k in (*values, "m", "n", "y", "weights"))
    model = (call["theta"], call["loss"], call.get("param", 0.0), call["K"], call["need_loss"])
    out = (call["grad"], False, 0.0)  # overwritten, not added to
    if "fold" not in call:
        return rows, model, out
    return rows, model, out, tuple(call[k] for k in ("fold", "labels", "cw", "loss_sums"))


def _labels(draw, m: int, K: int) -> np.ndarray:
    """Labels of m rows, mostly valid class indices; sometimes one is not."""
    y = np.array(draw(st.lists(st.integers(0, K - 1 if K > 1 else 1), min_size=m, max_size=m)))
    y = y.astype(np.float64)
    if m and K > 1 and draw(st.booleans()) and draw(st.booleans()):
        y[draw(st.integers(0, m - 1))] = draw(st.sampled_from([-1.0, float(K), np.nan, 1e300]))
    return y


@st.composite
def csr_calls(draw):
    """Arguments of ``_fused.csr_sums``: structure drawn near the edges of validity."""
    m, n, K = draw(st.integers(0, 7)), draw(st.integers(0, 5)), draw(st.sampled_from([1, 2, 3]))
    nnz = draw(st.integers(0, 16))
    f32, i64 = draw(st.booleans()), draw(st.booleans())
    p64 = i64 or draw(st.booleans())
    if draw(st.booleans()):  # a valid partition of some of the values, from a base
        base = draw(st.integers(0, 2))
        cuts = sorted(draw(st.lists(st.integers(0, max(nnz - base, 0)), min_size=m, max_size=m)))
        indptr = [base] + [base + c for c in cuts]
    else:  # anything
        indptr = draw(st.lists(st.integers(-3, nnz + 3), min_size=m + 1, max_size=m + 1))
    if draw(st.integers(0, 9)) == 0:  # a length that disagrees with m
        indptr = indptr[:-1] if indptr and draw(st.booleans()) else [*indptr, nnz]
    low, high = (0, n - 1) if draw(st.booleans()) else (-3, n + 2)
    if low > high:
        low, high = -2, 2
    indices = draw(st.lists(st.integers(low, high), min_size=nnz, max_size=nnz))
    if draw(st.integers(0, 9)) == 0:
        indices = indices[:-1] if indices else [0]
    index_type = np.int64 if i64 else np.int32
    if draw(st.integers(0, 19)) == 0:  # a type the kernel does not read
        index_type = draw(st.sampled_from([np.int16, np.uint32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    data = rng.standard_normal(nnz).astype(np.float32 if f32 else np.float64)
    y = _labels(draw, m, K)
    theta = rng.standard_normal((n + 1) * K)
    weights = rng.uniform(0, 2, m) if draw(st.booleans()) else np.empty(0)
    return {
        "data": data, "indices": np.array(indices).astype(index_type),
        "indptr": np.array(indptr, dtype=np.int64 if p64 else np.int32),
        "m": m, "n": n, "y": y, "theta": theta, "weights": weights, "loss": 2 if K > 1 else 1,
        "K": K, "grad": np.empty_like(theta), "need_loss": True,
    }  # fmt: skip


def csr_is_safe(a) -> bool:
    """What csr_sums may follow, stated independently of the C code."""
    indptr, m, n, K = a["indptr"], a["m"], a["n"], a["K"]
    nnz = len(a["data"])
    if a["indices"].dtype not in (np.int32, np.int64):
        return False
    if len(a["indices"]) != nnz or len(indptr) != m + 1 or indptr[0] < 0:
        return False
    if (np.diff(indptr) < 0).any() or indptr[-1] - indptr[0] > nnz:
        return False
    used = a["indices"][: indptr[-1] - indptr[0]]
    if len(used) and (used.min() < 0 or used.max() >= n):
        return False
    y = a["y"]
    return K == 1 or bool(np.all((y >= 0) & (y < K)))


@FUZZ
@given(csr_calls())
def test_csr_sums_follow_only_what_is_safe(fused, call):
    if not csr_is_safe(call):
        with pytest.raises(ValueError):
            fused.csr_sums(*grouped(call))
        return
    total = fused.csr_sums(*grouped(call))
    base, stop = call["indptr"][0], call["indptr"][-1]
    X = sp.csr_matrix(
        (
            call["data"][: stop - base].astype(np.float64),
            call["indices"][: stop - base],
            call["indptr"] - base,
        ),
        shape=(call["m"], call["n"]),
    )
    weights = call["weights"] if len(call["weights"]) else None
    loss = _loss_of(call["K"])
    want, grad = sparse.reference_sums(X, call["y"], call["theta"], loss, weights=weights)
    np.testing.assert_allclose(total, want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(call["grad"], grad, rtol=1e-9, atol=1e-9)


@st.composite
def dense_calls(draw):
    """Arguments of ``_fused.dense_sums``, sizes sometimes disagreeing with the buffers."""
    m, n, K = draw(st.integers(0, 6)), draw(st.integers(0, 5)), draw(st.sampled_from([1, 2, 4]))
    f32 = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = rng.standard_normal((m, n)).astype(np.float32 if f32 else np.float64)
    theta = rng.standard_normal((n + 1) * K)
    call = {
        "X": X, "m": m, "n": n, "y": _labels(draw, m, K), "theta": theta,
        "weights": rng.uniform(0, 2, m) if draw(st.booleans()) else np.empty(0),
        "loss": 2 if K > 1 else draw(st.sampled_from(sorted(CODES))), "K": K,
        "grad": np.empty_like(theta), "need_loss": True,
    }  # fmt: skip
    call["param"] = {5: 1.5, 6: 1.0}.get(call["loss"], 0.0)
    lies = ["m", "n", "K", "y", "theta", "weights", "y type", "X type", "param"]
    lie = draw(st.sampled_from([None] * 6 + lies))
    if lie in ("m", "n", "K"):
        call[lie] += draw(st.sampled_from([-1, 1, 2**40]))
    elif lie == "y type":  # as many bytes as m float64s: only the element type says no
        call["y"] = np.zeros(2 * m, np.float32)
    elif lie == "X type":
        call["X"] = call["X"].astype(np.int64 if f32 else np.float16)
    elif lie == "param":  # any parameter: out of range for tweedie or huber, unused by others
        call["param"] = draw(st.sampled_from([0.0, -1.0, 1.0, 1.3, 2.0, np.nan, np.inf]))
    elif lie is not None:
        call[lie] = np.zeros(max(len(call[lie]) + draw(st.sampled_from([-1, 1])), 0))
    return call


def dense_is_safe(a) -> bool:
    m, n, K = a["m"], a["n"], a["K"]
    if a["X"].dtype not in (np.float32, np.float64) or a["y"].dtype != np.float64:
        return False
    if min(m, n) < 0 or K < 1 or a["X"].size != m * n or len(a["y"]) != m:
        return False
    if len(a["theta"]) != (n + 1) * K or len(a["grad"]) != (n + 1) * K:
        return False
    if len(a["weights"]) not in (0, m) or (a["loss"] == 2) != (K > 1):
        return False
    if not _param_ok(a["loss"], a["param"]):
        return False
    y = a["y"]
    return K == 1 or bool(np.all((y >= 0) & (y < K)))


@FUZZ
@given(dense_calls())
def test_dense_sums_follow_only_what_is_safe(fused, call):
    if not dense_is_safe(call):
        with pytest.raises(ValueError):
            fused.dense_sums(*grouped(call))
        return
    total = fused.dense_sums(*grouped(call))
    loss = _loss_of(call["K"]) if call["K"] > 1 else _single_loss(call)
    weights = call["weights"] if len(call["weights"]) else None
    X = call["X"].astype(np.float64)
    want, grad = dense.reference_sums(X, call["y"], call["theta"], loss, weights=weights)
    np.testing.assert_allclose(total, want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(call["grad"], grad, rtol=1e-9, atol=1e-9)


@st.composite
def fold_calls(draw):
    """Arguments of ``_fused.dense_sums`` or ``_fused.csr_sums`` for F fold models, the
    fold buffers' lengths sometimes disagreeing with m and F."""
    m, n, F = draw(st.integers(0, 6)), draw(st.integers(0, 4)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = rng.standard_normal((m, n)).astype(draw(st.sampled_from([np.float32, np.float64])))
    X[rng.random((m, n)) < 0.4] = 0.0
    theta = rng.standard_normal((n + 1) * F)
    call = {
        "X": X, "m": m, "n": n, "y": rng.integers(0, 2, m).astype(np.float64), "theta": theta,
        "weights": rng.uniform(0, 2, m) if draw(st.booleans()) else np.empty(0),
        "loss": draw(st.sampled_from([0, 1])), "K": F, "grad": np.empty_like(theta),
        "need_loss": True, "fold": rng.integers(0, F + 1, m),
        "labels": rng.permutation(F + 1)[:F],
        "cw": rng.uniform(0.5, 2, (F, 2)) if draw(st.booleans()) else np.empty(0),
        "loss_sums": np.zeros(2 * F),
    }  # fmt: skip
    lie = draw(st.sampled_from([None] * 6 + ["fold", "labels", "cw", "loss_sums", "softmax"]))
    wrong = draw(st.sampled_from([-1, 1]))
    if lie == "softmax":
        call["loss"] = 2
    elif lie == "fold":
        call["fold"] = np.zeros(m + 1 if m == 0 else m + wrong, np.int64)
    elif lie == "labels":
        call["labels"] = np.arange(F + wrong)
    elif lie is not None:  # never empty: an empty cw means "no class weights"
        call[lie] = np.ones(2 * F + wrong)
    if draw(st.booleans()):
        csr = sp.csr_matrix(X)
        del call["X"]
        call = {"data": csr.data, "indices": csr.indices, "indptr": csr.indptr, **call}
    return call


def fold_is_safe(a) -> bool:
    m, F = a["m"], a["K"]
    return (
        a["loss"] in (0, 1)
        and len(a["fold"]) == m
        and len(a["labels"]) == F
        and a["cw"].size in (0, 2 * F)
        and len(a["loss_sums"]) == 2 * F
    )


@FUZZ
@given(fold_calls())
def test_fold_sums_follow_only_what_is_safe(fused, call):
    entry = fused.csr_sums if "data" in call else fused.dense_sums
    if not fold_is_safe(call):
        with pytest.raises(ValueError):
            entry(*grouped(call))
        return
    entry(*grouped(call))
    m, n, F = call["m"], call["n"], call["K"]
    if "data" in call:
        X = sp.csr_matrix((call["data"], call["indices"], call["indptr"]), shape=(m, n))
    else:
        X = call["X"]
    loss = make_loss("linear" if call["loss"] == 0 else "logistic")
    want = folds.reference_fold_sums(
        X.astype(np.float64), call["y"], call["theta"].reshape(n + 1, F), loss, call["fold"],
        call["labels"], weights=call["weights"] if len(call["weights"]) else None,
        class_weights=call["cw"].reshape(F, 2) if call["cw"].size else None,
    )  # fmt: skip
    got = call["loss_sums"][:F], call["loss_sums"][F:], call["grad"].reshape(n + 1, F)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------- the parsers

FEATURES = 6
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False)
#: Tokens that spoil a line, each a different way a field can be malformed.
SPOILERS = ["3:", ":4", "a:1", "1:x", "1:2:3", "0x", "nan:1", "2:1e999999x", "7:1", "-2:1"]


@st.composite
def libsvm_texts(draw):
    """A LIBSVM text of 1-based rows (labels 0/1), and where a spoiler went, if anywhere."""
    rows = draw(st.lists(st.dictionaries(st.integers(1, FEATURES), finite, max_size=4),
                         min_size=1, max_size=8))  # fmt: skip
    labels = draw(st.lists(st.sampled_from([0, 1]), min_size=len(rows), max_size=len(rows)))
    lines = []
    for label, row in zip(labels, rows, strict=True):
        pairs = [f"{j}:{v!r}" for j, v in row.items()]
        lines.append(" ".join([str(label), *pairs]))
    spoiled = None
    if draw(st.booleans()):
        spoiled = draw(st.integers(0, len(lines) - 1))
        lines[spoiled] += " " + draw(st.sampled_from(SPOILERS))
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    text = ending.join(lines) + draw(st.sampled_from(["", ending]))
    return text, rows, labels, spoiled


def read_back(path):
    with h5py.File(path) as f:
        X = f["X"]
        if isinstance(X, h5py.Group):
            parts = (X["data"][:], X["indices"][:], X["indptr"][:])
            return sp.csr_matrix(parts, shape=tuple(X.attrs["shape"])).toarray(), f["y"][:]
        return X[:], f["y"][:]


@FUZZ
@given(libsvm_texts())
@pytest.mark.slow
def test_libsvm_parses_what_it_spells_or_names_the_line(tmp_path_factory, case):
    text, rows, labels, spoiled = case
    folder = tmp_path_factory.mktemp("svm")
    source, out = folder / "in.svm", folder / "out.h5"
    source.write_bytes(text.encode())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spoiled is not None:
            with pytest.raises(MpigdError, match=f"line {spoiled + 1}"):
                convert(source, out, fmt="libsvm", n_features=FEATURES, zero_based=False)
            assert not out.exists()
            return
        convert(source, out, fmt="libsvm", n_features=FEATURES, zero_based=False)
    X, y = read_back(out)
    want = np.zeros((len(rows), FEATURES))
    for i, row in enumerate(rows):
        for j, v in row.items():
            want[i, j - 1] = v
    np.testing.assert_array_equal(X, want)  # correctly rounded, as float() parses
    np.testing.assert_array_equal(y, labels)


@st.composite
def csv_texts(draw):
    width = draw(st.integers(1, 4))
    rows = draw(st.lists(st.lists(finite, min_size=width, max_size=width), min_size=1,
                         max_size=8))  # fmt: skip
    labels = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=len(rows), max_size=len(rows)))
    lines = [
        ",".join([*map(repr, row), repr(label)]) for row, label in zip(rows, labels, strict=True)
    ]
    spoiled = None
    if draw(st.booleans()):
        spoiled = draw(st.integers(0, len(lines) - 1))
        fields = lines[spoiled].split(",")
        fields[draw(st.integers(0, width - 1))] = draw(st.sampled_from(["x", "1..2", "--1", "1e"]))
        lines[spoiled] = ",".join(fields)
    return "\n".join(lines) + "\n", rows, labels, spoiled


@FUZZ
@given(csv_texts())
@pytest.mark.slow
def test_csv_parses_what_it_spells_or_names_the_line(tmp_path_factory, case):
    text, rows, labels, spoiled = case
    assume(len(rows) > 0)
    folder = tmp_path_factory.mktemp("csv")
    source, out = folder / "in.csv", folder / "out.h5"
    source.write_text(text)
    if spoiled is not None:
        with pytest.raises(MpigdError, match=f"line {spoiled + 1}"):
            convert(source, out, fmt="csv", header=False)
        assert not out.exists()
        return
    convert(source, out, fmt="csv", header=False)
    X, y = read_back(out)
    np.testing.assert_array_equal(X, np.array(rows))
    np.testing.assert_array_equal(y, labels)
