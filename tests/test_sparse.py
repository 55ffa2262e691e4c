"""Sparse X (a CSR group): the partition by non-zeros, reading and checking a rank's rows,
the CSR sums against the dense ones, and training, scoring and predicting under mpiexec
against dense data and scikit-learn."""

import itertools
import json

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import reference_objective, run_mpi, sparse_problem, write_csr, write_h5
from mpi4py import MPI

from mpigd import load_model
from mpigd.errors import MpigdError
from mpigd.io import sparse as io_sparse
from mpigd.io.dataset import inspect_dataset, read_block
from mpigd.kernels import dense, for_rows, sparse
from mpigd.kernels.losses import make_loss
from mpigd.objective import Objective
from mpigd.partition import balanced_range
from mpigd.scaling import standardization

M, N = 1009, 40


# ------------------------------------------------------------------- the partition


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 50])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_balanced_ranges_cover_the_rows_in_order_and_balance_the_cost(size, seed):
    rng = np.random.default_rng(seed)
    m = [0, 1, 5, 40][seed % 4] if size == 50 else 40
    counts = rng.integers(0, 30, m) * (rng.random(m) < 0.7)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    total = int(indptr[-1]) + m
    calls = []

    def cost(row):
        calls.append(row)
        return int(indptr[row]) + row

    ranges = [balanced_range(cost, m, total, size, rank) for rank in range(size)]
    assert ranges[0][0] == 0 and ranges[-1][1] == m
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert all(start <= stop for start, stop in ranges)
    heaviest = max(counts.max() + 1, 1) if m else 0
    for start, stop in ranges:  # within one row of an equal share
        assert abs(cost(stop) - cost(start) - total / size) <= heaviest
    assert len(calls) <= 2 * size * (np.log2(max(m, 1)) + 3) + 2 * size


# ------------------------------------------------------------ reading a rank's rows


@pytest.fixture
def csr_file(tmp_path):
    X, y = sparse_problem("logistic", M, N, seed=4)
    return write_csr(tmp_path / "s.h5", X.astype(np.float32), y), X.astype(np.float32), y


@pytest.mark.parametrize("size", [1, 3, 4, 1500])
def test_ranks_read_their_rows_and_together_all_of_them(csr_file, size):
    path, X, y = csr_file
    info = inspect_dataset(path)
    assert (
        info.csr is not None and info.csr.nnz == X.nnz and (info.n_rows, info.n_features) == X.shape
    )
    parts = [read_block(info, rank, size) for rank in range(size)]
    assert [p.start for p in parts[1:]] == [p.stop for p in parts[:-1]]
    whole = sp.vstack([p.X for p in parts]).tocsr()
    assert whole.dtype == np.float32 and (whole != X).nnz == 0
    np.testing.assert_array_equal(np.concatenate([p.y for p in parts]), y)


def group_edit(change):
    def build(path):
        X, y = sparse_problem("logistic", M, N, seed=4)
        write_csr(path, X, y)
        with h5py.File(path, "a") as f:
            change(f["X"])
        return path

    return build


def replace(name, fn):
    def change(group):
        values = fn(group[name][:])
        del group[name]
        group[name] = values

    return change


def set_last(name, value):
    return replace(name, lambda a: np.concatenate([a[:-1], [value]]))


BAD = {
    "csc": (
        group_edit(lambda g: g.attrs.update({"encoding-type": "csc_matrix"})),
        "is a CSC matrix",
    ),
    "unknown encoding": (
        group_edit(lambda g: g.attrs.update({"encoding-type": "coo"})),
        "not a dataset or a CSR matrix",
    ),
    "no shape": (group_edit(lambda g: g.attrs.__delitem__("shape")), "has no shape attribute"),
    "shape disagrees": (
        group_edit(lambda g: g.attrs.update({"shape": (M + 1, N)})),
        f"indptr has {M + 1} entries but the shape attribute says {M + 1} rows",
    ),
    "no indices": (group_edit(lambda g: g.__delitem__("indices")), "CSR group without indices"),
    "indptr not from 0": (
        group_edit(replace("indptr", lambda a: a + 1)),
        "indptr runs from 1",
    ),
    "float indices": (
        group_edit(replace("indices", lambda a: a.astype(np.float64))),
        "indices must be a 1-D array of integers",
    ),
}

BAD_ROWS = {
    "index out of range": (
        replace("indices", lambda a: np.where(np.arange(len(a)) == len(a) - 1, N, a)),
        f"column indices outside 0 .. {N - 1}",
    ),
    "index twice in a row": (
        replace("indices", lambda a: np.where(np.arange(len(a)) == len(a) - 1, a[-2], a)),
        "rows that list a column index twice",
    ),
    "NaN value": (set_last("data", np.nan), "holds 1 NaN or infinite values"),
    "indptr decreases": (
        replace("indptr", lambda a: np.where(np.arange(len(a)) == len(a) - 2, a[-1] + 1, a)),
        "indptr decreases at row",
    ),
}


def test_rows_are_checked_in_blocks_and_the_counts_add_up(monkeypatch):
    monkeypatch.setattr(io_sparse, "CHECK_VALUES", 7)  # many blocks of about 7 values
    X = sp.csr_matrix(np.arange(1.0, 61.0).reshape(12, 5))  # 5 values a row
    io_sparse.check_rows(X, "X", "f.h5", 100, 112)  # clean: no error
    X.indices[[7, 27, 52]] = X.indices[[6, 26, 51]]  # rows 1, 5 and 10 repeat a column
    X.data[[3, 44]] = np.nan
    with pytest.raises(MpigdError, match=r"3 rows that list a column index twice") as error:
        io_sparse.check_rows(X, "X", "f.h5", 100, 112)
    assert "e.g. row 101, column 1" in str(error.value)
    X.indices[[7, 27, 52]] = [2, 2, 2]
    with pytest.raises(MpigdError, match=r"holds 2 NaN or infinite values"):
        io_sparse.check_rows(X, "X", "f.h5", 100, 112)


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_csr_metadata_is_one_clear_error(tmp_path, case):
    build, message = BAD[case]
    with pytest.raises(MpigdError, match=r"s\.h5") as info:
        inspect_dataset(build(tmp_path / "s.h5"))
    assert message in str(info.value)


@pytest.mark.parametrize("case", BAD_ROWS, ids=list(BAD_ROWS))
def test_bad_csr_rows_are_one_clear_error_naming_the_rows(tmp_path, case):
    change, message = BAD_ROWS[case]
    info = inspect_dataset(group_edit(change)(tmp_path / "s.h5"))
    read_block(info, 0, 3)  # the first rank's rows are fine
    with pytest.raises(MpigdError) as error:
        read_block(info, 2, 3)
    assert message in str(error.value)


# ------------------------------------------------------------------ sums and passes


@pytest.mark.parametrize("kind", ["linear", "logistic", "softmax"])
@pytest.mark.parametrize("weighted", [False, True])
def test_csr_sums_equal_the_dense_ones(kind, weighted):
    X, y = sparse_problem(kind, 300, 25, seed=5)
    loss = make_loss(kind, 3)
    rng = np.random.default_rng(6)
    theta = rng.standard_normal((25 + 1) * loss.n_outputs)
    weights = rng.random(300) if weighted else None
    assert for_rows(X) is sparse and for_rows(X.toarray()) is dense
    f_s, g_s = sparse.local_sums(X, y, theta, loss, weights=weights)
    f_d, g_d = dense.local_sums(X.toarray(), y, theta, loss, weights=weights)
    assert f_s == pytest.approx(f_d, rel=1e-12)
    np.testing.assert_allclose(g_s, g_d, rtol=1e-12, atol=1e-12 * np.abs(g_d).max())
    if kind != "softmax":
        v = rng.standard_normal(26)
        np.testing.assert_allclose(
            sparse.local_hessian(X, y, theta, loss, weights=weights),
            dense.local_hessian(X.toarray(), y, theta, loss, weights=weights),
            rtol=1e-12,
            atol=1e-12,
        )
        np.testing.assert_allclose(
            sparse.local_hessp(X, y, theta, v, loss, weights=weights),
            dense.local_hessp(X.toarray(), y, theta, v, loss, weights=weights),
            rtol=1e-12,
            atol=1e-12,
        )


def test_standardised_objective_on_csr_equals_the_dense_one():
    X, y = sparse_problem("logistic", 400, 30, seed=7)
    comm = MPI.COMM_SELF
    shift = X[0].toarray().ravel()
    scaled_s = standardization(comm, X, shift)
    scaled_d = standardization(comm, X.toarray(), shift)
    np.testing.assert_allclose(scaled_s.mean, scaled_d.mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(scaled_s.std, scaled_d.std, rtol=1e-12, atol=1e-15)
    theta = np.random.default_rng(8).standard_normal(31)
    for weights in (None, np.random.default_rng(9).random(400)):
        f_s, g_s = Objective(
            comm, X, y, make_loss("logistic"), l2=0.1, weights=weights, scaling=scaled_s
        )(theta)
        f_d, g_d = Objective(
            comm, X.toarray(), y, make_loss("logistic"), l2=0.1, weights=weights, scaling=scaled_d
        )(theta)
        assert f_s == pytest.approx(f_d, rel=1e-12)
        np.testing.assert_allclose(g_s, g_d, rtol=1e-10, atol=1e-13)


# ---------------------------------------------------------------- under mpiexec

RUNS = [
    {"model": "linear", "optimizer": "normal", "l2": 1e-3},
    {"model": "linear", "optimizer": "lbfgs", "l2": 1e-3, "standardize": True, "tol": 1e-10},
    {"model": "logistic", "l2": 1e-3, "tol": 1e-10},
    {"model": "logistic", "optimizer": "newton", "l2": 1e-3, "weight_key": "w", "tol": 1e-10},
    {"model": "logistic", "optimizer": "nesterov", "l1": 1e-3, "l2": 1e-3, "tol": 1e-8},
    {"model": "softmax", "l2": 1e-3, "tol": 1e-10},
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sparse")
    out = {}
    for kind in ("linear", "logistic", "softmax"):
        X, y = sparse_problem(kind, M, N, seed=10)
        w = np.random.default_rng(11).random(M)
        out[kind] = (
            write_csr(folder / f"{kind}-csr.h5", X, y),
            write_h5(folder / f"{kind}-dense.h5", X.toarray(), y, w=w),
            X,
            y,
        )
        with h5py.File(out[kind][0], "a") as f:
            f["w"] = w
    return folder, out


def fit_all(folder, files, ranks, layout):
    spec = [
        {"name": f"run{i}", "data": str(files[run["model"]][0 if layout == "csr" else 1]), **run}
        for i, run in enumerate(RUNS)
    ]
    (folder / "spec.json").write_text(json.dumps(spec))
    out = folder / f"{layout}-{ranks}.npz"
    proc = run_mpi(ranks, "tests/mpi_fit.py", folder / "spec.json", out)
    assert proc.returncode == 0, proc.stderr
    return dict(np.load(out))


def test_sparse_training_equals_dense_at_every_rank_count(files):
    folder, data = files
    dense_fit = fit_all(folder, data, 1, "dense")
    for ranks in (1, 2, 3, 4):
        fitted = fit_all(folder, data, ranks, "csr")
        for i, run in enumerate(RUNS):
            thetas = fitted[f"run{i}/theta"]
            assert all(row.tobytes() == thetas[0].tobytes() for row in thetas), run
            np.testing.assert_allclose(
                thetas[0], dense_fit[f"run{i}/theta"][0], rtol=1e-6, atol=1e-7, err_msg=str(run)
            )
            assert fitted[f"run{i}/converged"], run


def test_sparse_logistic_reaches_scikit_learns_objective(files, tmp_path):
    from sklearn.linear_model import LogisticRegression

    path, _, X, y = files[1]["logistic"]
    l2 = 1e-3
    proc = run_mpi(
        2,
        "-m",
        "mpigd",
        "train",
        path,
        "--model",
        "logistic",
        "--l2",
        l2,
        "--tol",
        "1e-9",
        "--out",
        tmp_path / "m.h5",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    ours = load_model(tmp_path / "m.h5")
    sk = LogisticRegression(C=1 / (l2 * M), tol=1e-12, max_iter=10_000).fit(X, y)
    theirs = np.append(sk.coef_.ravel(), sk.intercept_)
    mine = np.append(ours.coef, ours.intercept)
    f_ours = reference_objective("logistic", X.toarray(), y, mine, l2)[0]
    f_theirs = reference_objective("logistic", X.toarray(), y, theirs, l2)[0]
    assert f_ours <= f_theirs * (1 + 1e-6)


def test_sparse_evaluation_and_predictions_do_not_depend_on_the_rank_count(files, tmp_path):
    path = files[1]["softmax"][0]
    model = tmp_path / "m.h5"
    assert (
        run_mpi(
            3,
            "-m",
            "mpigd",
            "train",
            path,
            "--model",
            "softmax",
            "--l2",
            "1e-3",
            "--out",
            model,
            "--quiet",
        ).returncode
        == 0
    )
    outputs = []
    for ranks in (1, 2, 3, 4):
        out = tmp_path / f"p{ranks}.h5"
        proc = run_mpi(ranks, "-m", "mpigd", "predict", model, path, "--out", out, "--quiet")
        assert proc.returncode == 0, proc.stderr
        outputs.append(out.read_bytes())
        scores = tmp_path / f"s{ranks}.json"
        proc = run_mpi(ranks, "-m", "mpigd", "evaluate", model, path, "--json", scores, "--quiet")
        assert proc.returncode == 0, proc.stderr
    assert all(o == outputs[0] for o in outputs)
    values = [json.loads((tmp_path / f"s{r}.json").read_text()) for r in (1, 2, 3, 4)]
    assert all(v["accuracy"] == values[0]["accuracy"] for v in values)
    X, y = files[1]["softmax"][2:]
    assert values[0]["accuracy"] == pytest.approx(np.mean(load_model(model).predict(X) == y))


# ----------------------------------------------------------------------- conversion


def write_libsvm(path, X, y):
    with open(path, "w") as f:
        for row, label in zip(X, y, strict=True):
            pairs = " ".join(
                f"{j + 1}:{float(v)!r}" for j, v in zip(row.indices, row.data, strict=True)
            )
            f.write(f"{int(2 * label - 1):+d} {pairs}\n")
    return path


def test_libsvm_converts_to_a_compact_csr_group_by_default(tmp_path):
    X, y = sparse_problem("logistic", 5000, 2000, density=0.01, seed=12)
    source = write_libsvm(tmp_path / "t.svm", X, y)
    proc = run_mpi(1, "-m", "mpigd", "data", "convert", source, tmp_path / "t.h5", "--quiet")
    assert proc.returncode == 0, proc.stderr
    info = inspect_dataset(tmp_path / "t.h5")
    assert info.csr is not None and info.csr.nnz == X.nnz and info.n_features == 2000
    read = read_block(info, 0, 1)
    assert (read.X != X).nnz == 0 and np.array_equal(read.y, 2 * y - 1)  # -1/+1 kept
    arrays = X.data.nbytes + X.nnz * 4 + (X.shape[0] + 1) * 8 + y.nbytes
    assert (tmp_path / "t.h5").stat().st_size <= 1.5 * arrays
    dense = run_mpi(1, "-m", "mpigd", "data", "convert", source, tmp_path / "d.h5", "--dense")
    assert dense.returncode == 0 and inspect_dataset(tmp_path / "d.h5").csr is None


def test_csv_becomes_sparse_when_asked(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,c,y\n0,1.5,0,1\n0,0,0,0\n2,0,3,1\n")
    proc = run_mpi(
        1, "-m", "mpigd", "data", "convert", tmp_path / "t.csv", tmp_path / "t.h5", "--sparse"
    )
    assert proc.returncode == 0, proc.stderr
    info = inspect_dataset(tmp_path / "t.h5")
    X = read_block(info, 0, 1).X
    assert info.csr.nnz == 3 and X.toarray().tolist() == [[0, 1.5, 0], [0, 0, 0], [2, 0, 3]]


# ---------------------------------------------------------------------- .h5ad files


def write_h5ad(path, X, labels, score):
    import warnings

    import anndata
    import pandas as pd

    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(labels), "score": score},
        index=[f"cell{i}" for i in range(len(score))],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        anndata.AnnData(X=X, obs=obs).write_h5ad(path)
    return path


def test_an_h5ad_file_from_anndata_trains_as_it_is(tmp_path):
    X, y = sparse_problem("softmax", 300, 25, seed=13)
    names = np.array(["B", "NK", "T"])[y.astype(int)]  # categories sort as B, NK, T: codes = y
    score = X @ np.arange(25.0) / 25
    path = write_h5ad(tmp_path / "cells.h5ad", X.astype(np.float32), names, score)
    out = tmp_path / "m.h5"
    argv = ["-m", "mpigd", "train", path, "--model", "softmax", "--y-key", "obs/cell_type"]
    proc = run_mpi(3, *argv, "--l2", "1e-2", "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    dense = write_h5(tmp_path / "d.h5", X.toarray().astype(np.float32), y)
    proc = run_mpi(
        1,
        "-m",
        "mpigd",
        "train",
        dense,
        "--model",
        "softmax",
        "--l2",
        "1e-2",
        "--out",
        tmp_path / "d-m.h5",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(
        load_model(out).coef, load_model(tmp_path / "d-m.h5").coef, rtol=1e-6, atol=1e-8
    )
    linear = run_mpi(
        2,
        "-m",
        "mpigd",
        "train",
        path,
        "--model",
        "linear",
        "--y-key",
        "obs/score",
        "--out",
        tmp_path / "l.h5",
        "--quiet",
    )
    assert linear.returncode == 0, linear.stderr


def test_missing_categorical_labels_are_counted(tmp_path):
    X, y = sparse_problem("softmax", 300, 25, seed=13)
    names = np.array(["B", "NK", "T"], dtype=object)[y.astype(int)]
    names[[5, 7, 299]] = None  # pandas stores a missing category as code -1
    path = write_h5ad(tmp_path / "cells.h5ad", X, names, np.zeros(300))
    info = inspect_dataset(path, y_key="obs/cell_type")
    with pytest.raises(MpigdError, match=r"holds 3 missing labels \(code -1\)"):
        read_block(info, 0, 1)


def test_a_csc_h5ad_is_refused_with_the_way_to_convert_it(tmp_path):
    X, y = sparse_problem("logistic", 50, 10, seed=14)
    path = write_h5ad(tmp_path / "cells.h5ad", X.tocsc(), y.astype(int).astype(str), np.zeros(50))
    with pytest.raises(MpigdError, match=r"is a CSC matrix .*tocsr\(\)"):
        inspect_dataset(path, y_key="obs/score")


def test_a_terabyte_of_dense_data_trains_in_well_under_a_gigabyte_per_rank(tmp_path):
    """200,000 x 1,000,000 with 20 values a row: 1.6 TB dense, 48 MB as CSR."""
    m, n, per_row = 200_000, 1_000_000, 20
    rng = np.random.default_rng(15)
    X = random_csr(rng, m, n, per_row)
    y = (rng.random(m) < 0.5).astype(np.float64)
    path = write_csr(tmp_path / "wide.h5", X, y)
    spec = [{"name": "wide", "data": str(path), "model": "logistic", "l2": 1e-4, "max_iter": 15}]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = run_mpi(2, "tests/mpi_fit.py", tmp_path / "spec.json", tmp_path / "out.npz")
    assert proc.returncode == 0, proc.stderr
    peaks = np.load(tmp_path / "out.npz")["wide/peak_rss"]
    assert len(peaks) == 2 and peaks.max() < 2**30, peaks


def random_csr(rng, m, n, per_row, index_dtype=np.int64):
    """(m, n) CSR with ``per_row`` normal values a row in distinct, sorted columns."""
    indices = np.sort(rng.integers(0, n, (m, per_row)), axis=1)
    indices[:, 1:] += np.cumsum(indices[:, 1:] == indices[:, :-1], axis=1)
    indices = np.minimum(indices, n - 1 - np.arange(per_row)[::-1]).astype(index_dtype)
    values = rng.standard_normal(m * per_row)
    return sp.csr_matrix(
        (values, indices.ravel(), np.arange(0, m * per_row + 1, per_row)), shape=(m, n)
    )


def test_peak_memory_is_within_two_and_a_half_times_the_ranks_share_of_the_csr_arrays(
    tmp_path,
):
    """Beyond the interpreter and libraries, a rank's peak is at most 2.5x its share of
    data + indices + indptr plus the optimiser's state (L-BFGS: 2 x 10 vectors of n + 1,
    and a dozen more for theta, gradients, the reduction buffer and the search)."""
    m, n, per_row, ranks, memory = 600_000, 65_536, 20, 2, 10
    rng = np.random.default_rng(16)
    X = random_csr(rng, m, n, per_row, np.int32)
    y = (rng.random(m) < 0.5).astype(np.float64)
    path = write_csr(tmp_path / "tall.h5", X, y)
    spec = [{"name": "tall", "data": str(path), "model": "logistic", "l2": 1e-4, "max_iter": 10}]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = run_mpi(ranks, "tests/mpi_fit.py", tmp_path / "spec.json", tmp_path / "out.npz")
    assert proc.returncode == 0, proc.stderr
    saved = np.load(tmp_path / "out.npz")
    grown = saved["tall/peak_rss"] - saved["tall/baseline_rss"]
    share = X.nnz / ranks * (X.data.itemsize + X.indices.itemsize) + (m / ranks + 1) * 8
    optimiser = (2 * memory + 12) * (n + 1) * 8
    assert len(grown) == ranks and (grown <= 2.5 * share + optimiser).all(), (
        grown / share,
        share,
        optimiser,
    )


def test_data_info_on_csr_equals_the_dense_statistics(files, tmp_path):
    original, dense_path, X, _ = files[1]["logistic"]
    csr_path = tmp_path / "nan.h5"
    csr_path.write_bytes(original.read_bytes())
    with h5py.File(csr_path, "a") as f:  # a NaN is counted, not an error, in info
        data = f["X/data"][:]
        data[-1] = np.nan
        del f["X/data"]
        f["X/data"] = data
    summaries = []
    for path, ranks in ((csr_path, 3), (csr_path, 1), (dense_path, 2)):
        out = tmp_path / f"{ranks}-{path.stem}.json"
        proc = run_mpi(ranks, "-m", "mpigd", "data", "info", path, "--json", out, "--quiet")
        assert proc.returncode == 0, proc.stderr
        summaries.append(json.loads(out.read_text()))
    sparse_3, sparse_1, dense_2 = summaries
    assert sparse_3["sparse"] == sparse_1["sparse"]
    assert sparse_3["sparse"]["nnz"] == X.nnz
    assert sparse_3["sparse"]["values_per_feature"] == X.getnnz(axis=0).tolist()
    assert sparse_3["feature_stats"]["non_finite"][X.indices[-1]] == 1
    for key in ("min", "max"):
        stored = [v for j, v in enumerate(dense_2["feature_stats"][key]) if j != X.indices[-1]]
        ours = [v for j, v in enumerate(sparse_3["feature_stats"][key]) if j != X.indices[-1]]
        assert ours == stored
    assert sparse_3["classes"] == dense_2["classes"]


def test_split_moves_csr_rows_with_their_values_and_labels(files, tmp_path):
    from mpigd.io.split import split

    path, _, X, y = files[1]["linear"]
    train, test = tmp_path / "train.h5", tmp_path / "test.h5"
    counts = split(path, train, test, test_fraction=0.3, seed=2)
    assert counts == (M - int(np.ceil(0.3 * M)), int(np.ceil(0.3 * M)))
    parts = [read_block(inspect_dataset(p, weight_key="w"), 0, 1) for p in (train, test)]
    assert all(part.info.csr is not None for part in parts)

    def rows(X, y, w):
        dense = X.toarray()
        return sorted(tuple(np.append(dense[i], [y[i], w[i]])) for i in range(X.shape[0]))

    with h5py.File(path) as f:
        w = f["w"][:]
    joined = rows(parts[0].X, parts[0].y, parts[0].weights) + rows(
        parts[1].X, parts[1].y, parts[1].weights
    )
    assert sorted(joined) == rows(X, y, w)
    first = parts[1].X.toarray()[0]
    assert not np.array_equal(first, X.toarray()[0])  # shuffled (this seed moves row 0)


def test_a_scipy_save_npz_file_converts_to_csr_in_row_blocks(tmp_path, monkeypatch):
    from mpigd.io import arrays
    from mpigd.io.convert import convert

    monkeypatch.setattr(arrays, "SPARSE_BLOCK_ROWS", 97)  # many blocks, one row range each
    X, _ = sparse_problem("linear", 1000, 60, seed=16)
    sp.save_npz(tmp_path / "x.npz", X)
    source = convert(tmp_path / "x.npz", tmp_path / "x.h5")
    assert source.sparse and "no label array (a save_npz file)" in source.notes
    read = read_block(inspect_dataset(tmp_path / "x.h5", y_key=None), 0, 1).X
    assert (read != X).nnz == 0
    convert(tmp_path / "x.npz", tmp_path / "d.h5", layout="dense")
    with h5py.File(tmp_path / "d.h5") as f:
        np.testing.assert_array_equal(f["X"][:], X.toarray())
    sp.save_npz(tmp_path / "c.npz", X.tocsc())
    with pytest.raises(MpigdError, match="holds a csc matrix; save it as CSR"):
        convert(tmp_path / "c.npz", tmp_path / "c.h5")
