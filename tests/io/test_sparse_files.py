"""Sparse X (a CSR group) as a file: the partition by non-zeros, reading and checking a
rank's rows, and conversion to CSR groups (LIBSVM, CSV, .h5ad, save_npz). The sums and
training on CSR are in test_sparse.py."""

import itertools

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import run_mpi, sparse_problem, write_csr, write_h5

from mpigd import load_model
from mpigd.errors import MpigdError
from mpigd.io import sparse as io_sparse
from mpigd.io.dataset import inspect_dataset, read_block
from mpigd.partition import balanced_range

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


@pytest.mark.parametrize("size", [1, 3, 4, pytest.param(1500, marks=pytest.mark.slow)])
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


# ----------------------------------------------------------------------- conversion


def write_libsvm(path, X, y):
    with open(path, "w") as f:
        for row, label in zip(X, y, strict=True):
            pairs = " ".join(
                f"{j + 1}:{float(v)!r}" for j, v in zip(row.indices, row.data, strict=True)
            )
            f.write(f"{int(2 * label - 1):+d} {pairs}\n")
    return path


@pytest.mark.slow
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


@pytest.mark.slow
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
