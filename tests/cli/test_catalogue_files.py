"""A catalogue of odd *files*: ``save_npz`` matrices valid and broken, CSR groups whose
``shape`` attribute lies, ``.h5ad`` label columns, a CSR file 2^40 features wide, and
LIBSVM's -1/+1 labels on their way through convert, train and predict.

Each case runs as a user would, through :func:`test_catalogue.run_case` (one
``mpigd: error:`` line naming the problem, exit status 2, no traceback, inputs unchanged,
no partial output), or succeeds; the cases marked ``mpi`` run again under mpiexec at
P = 1 and 3. The tests after the catalogue check the results that must be right, not only
the exit status.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
import zipfile

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import ROOT, random_problem, run_mpi, sparse_problem
from test_catalogue import Case, command, csr, files, run_case, text

from mpigd.cli import main
from mpigd.errors import EXIT_INPUT, EXIT_OK
from mpigd.io.convert import convert
from mpigd.model import LinearModel

# Hundreds of processes, one a case; the quick check has test_cli.py.
pytestmark = pytest.mark.slow

# ------------------------------------------------------------------- save_npz files

#: The CSR matrix of the .npz cases: 50 rows, 6 features, 120 values, row 0 not empty.
CSR = sp.random(50, 6, density=0.4, format="csr", random_state=0, dtype=np.float64)


def unsorted(X: sp.csr_matrix) -> sp.csr_matrix:
    """X with the column indices of every row reversed: the same matrix, valid CSR."""
    X = X.copy()
    for i in range(X.shape[0]):
        a, b = X.indptr[i], X.indptr[i + 1]
        X.indices[a:b], X.data[a:b] = X.indices[a:b][::-1].copy(), X.data[a:b][::-1].copy()
    X.has_sorted_indices = False
    return X


def repeated(X: sp.csr_matrix) -> sp.csr_matrix:
    """X with row 0's first value split in two halves in the same column, after the
    row's other values (valid CSR, not canonical: scipy sums them, exactly)."""
    a, b = X.indptr[0], X.indptr[1]
    half = X.data[a] / 2
    data = np.insert(X.data, b, half)
    data[a] = half
    indices = np.insert(X.indices, b, X.indices[a])
    indptr = X.indptr + np.r_[0, np.ones(X.shape[0], dtype=X.indptr.dtype)]
    return sp.csr_matrix((data, indices, indptr), shape=X.shape)


def saved(matrix):
    """``scipy.sparse.save_npz`` of ``matrix`` (uncompressed, so nothing is re-sorted)."""
    return lambda path, tmp: sp.save_npz(path, matrix, compressed=False)


def npz(**changes):
    """The arrays save_npz writes for :data:`CSR`, some replaced (None: left out)."""

    def make(path, tmp):
        arrays = {
            "format": np.array("csr"),
            "shape": np.array(CSR.shape),
            "data": CSR.data,
            "indices": CSR.indices,
            "indptr": CSR.indptr,
        }
        arrays.update(changes)
        np.savez(path, **{k: v for k, v in arrays.items() if v is not None})

    return make


def changed(name: str, at: int, value):
    array = getattr(CSR, name).copy()
    array[at] = value
    return array


def overflowing(indptr):
    """``indptr`` that decreases from 2^63 - 1 to -2 after row 1: its difference overflows
    int64 to a positive number, so only a comparison of neighbours sees the decrease."""
    spoiled = np.asarray(indptr, dtype=np.int64).copy()
    spoiled[1], spoiled[2] = 2**63 - 1, -2
    return spoiled


def _replace(group, name: str, change) -> None:
    values = change(group[name][:])
    del group[name]
    group[name] = values


def short_indices(path, tmp):
    """The save_npz arrays of :data:`CSR` with ``indices`` cut short of its header."""
    with zipfile.ZipFile(path, "w") as z:
        for name, value in (("format", np.array("csr")), ("shape", np.array(CSR.shape))):
            z.writestr(f"{name}.npy", npy_bytes(value))
        for name in ("data", "indices", "indptr"):
            raw = npy_bytes(getattr(CSR, name))
            z.writestr(f"{name}.npy", raw[:-8] if name == "indices" else raw)


def npy_bytes(value) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, value)
    return buffer.getvalue()


def not_npy_members(path, tmp):
    with zipfile.ZipFile(path, "w") as z:
        for name in ("format", "shape", "data", "indices", "indptr"):
            z.writestr(f"{name}.npy", b"not an array")


# ------------------------------------------------------------------------ .h5ad files

#: Rows of the .h5ad cases.
CELLS = 60
CELL_TYPES = np.array(["B", "NK", "T"])


def cells():
    """X (CSR), the class of each row (0, 1, 2) and a flag per row."""
    X, y = sparse_problem("softmax", CELLS, 12, seed=7)
    return X, y.astype(int), np.arange(CELLS) % 3 == 1


def h5ad(spoil=None, *, pairs: bool = False, csc_layer: bool = False):
    """An .h5ad as anndata writes it: X CSR, obs columns cell_type (categorical), flag
    (booleans) and score (row numbers); ``spoil(file)`` damages it afterwards."""

    def make(path, tmp):
        import anndata
        import pandas as pd

        X, y, flag = cells()
        obs = pd.DataFrame(
            {"cell_type": pd.Categorical(CELL_TYPES[y]), "flag": flag, "score": np.arange(CELLS)},
            index=[f"cell{i}" for i in range(CELLS)],
        )
        adata = anndata.AnnData(X=X, obs=obs)
        adata.obsm["pca"] = np.arange(CELLS * 2.0).reshape(CELLS, 2)
        if pairs:
            adata.obsp["distances"] = sp.identity(CELLS, format="csr")
        if csc_layer:
            adata.layers["counts"] = X.tocsc()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            adata.write_h5ad(path)
        if spoil:
            with h5py.File(path, "a") as f:
                spoil(f)

    return make


def codes(*rows, value):
    """Set the cell_type codes of ``rows`` to ``value``."""

    def spoil(f):
        dataset = f["obs/cell_type/codes"]
        values = dataset[:]
        values[list(rows)] = value
        dataset[...] = values

    return spoil


def without_categories(f):
    del f["obs/cell_type/categories"]


# ----------------------------------------------------------------- LIBSVM -1/+1 labels


def plus_minus_text(m: int = 101) -> tuple[str, np.ndarray]:
    """A LIBSVM text of a logistic problem with labels -1/+1, and those labels."""
    X, y = random_problem("logistic", m, 3, seed=11)
    labels = 2 * y - 1
    lines = [
        f"{int(label):+d} " + " ".join(f"{j + 1}:{v!r}" for j, v in enumerate(row.tolist()))
        for row, label in zip(X, labels, strict=True)
    ]
    return "\n".join(lines) + "\n", labels


#: Rows labelled -1 in :func:`plus_minus_text`.
MINUS_ONES = int((plus_minus_text()[1] == -1).sum())


def converted(path, tmp):
    """pm.svm (labels -1/+1) and its conversion."""
    source = tmp / "pm.svm"
    source.write_text(plus_minus_text()[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 1-based indices
        convert(source, path)


def plus_minus_model(path, tmp):
    """A logistic model trained with --labels auto on -1/+1 labels (its classes kept)."""
    model = LinearModel("logistic", np.array([1.0, -1.0, 0.5]), 0.1, {"labels": "auto"})
    model.arrays["classes"] = np.array([-1.0, 1.0])
    model.save(path)


def wide_csr(**attrs):
    return csr(**{"shape": (101, 2**40), **attrs})


# ---------------------------------------------------------------------------- cases

SHAPE_RULE = "it must be (rows, features), two whole numbers >= 0"

CASES = {
    # save_npz: valid matrices convert
    "convert a save_npz CSR with unsorted rows": Case(
        "data convert {tmp}/u.npz {tmp}/new.h5",
        EXIT_OK,
        "",
        (files(u__npz=saved(unsorted(CSR))),),
        mpi=True,
    ),
    "convert a save_npz CSR that repeats a column in a row": Case(
        "data convert {tmp}/r.npz {tmp}/new.h5",
        EXIT_OK,
        "",
        (files(r__npz=saved(repeated(CSR))),),
    ),
    "convert a compressed save_npz CSR densely": Case(
        "data convert {tmp}/c.npz {tmp}/new.h5 --dense",
        EXIT_OK,
        "",
        (files(c__npz=lambda path, tmp: sp.save_npz(path, unsorted(CSR))),),
    ),
    # save_npz: other formats
    "convert a COO .npz": Case(
        "data convert {tmp}/coo.npz {tmp}/new.h5",
        EXIT_INPUT,
        "holds a coo matrix; save it as CSR (X.tocsr())",
        (files(coo__npz=saved(CSR.tocoo())),),
        ("new.h5",),
        mpi=True,
    ),
    "convert a CSC .npz": Case(
        "data convert {tmp}/csc.npz {tmp}/new.h5",
        EXIT_INPUT,
        "holds a csc matrix; save it as CSR (X.tocsr())",
        (files(csc__npz=saved(CSR.tocsc())),),
        ("new.h5",),
    ),
    # save_npz: broken CSR
    "convert a save_npz CSR with a column index past the width": Case(
        "data convert {tmp}/b.npz {tmp}/new.h5",
        EXIT_INPUT,
        "'indices' holds 1 column index outside 0 .. 5 (the shape's 6 features), e.g. 6 in row",
        (files(b__npz=npz(indices=changed("indices", 7, 6))),),
        ("new.h5",),
    ),
    "convert a save_npz CSR with a negative column index": Case(
        "data convert {tmp}/b.npz {tmp}/new.h5",
        EXIT_INPUT,
        "column index outside 0 .. 5 (the shape's 6 features), e.g. -1 in row",
        (files(b__npz=npz(indices=changed("indices", 100, -1))),),
        ("new.h5",),
    ),
    "convert a save_npz CSR whose indptr decreases": Case(
        "data convert {tmp}/b.npz {tmp}/new.h5",
        EXIT_INPUT,
        "'indptr' decreases at row 9; it must not",
        (files(b__npz=npz(indptr=changed("indptr", 10, CSR.indptr[9] - 1))),),
        ("new.h5",),
    ),
    "convert a save_npz CSR whose indptr is a row short": Case(
        "data convert {tmp}/b.npz {tmp}/new.h5",
        EXIT_INPUT,
        "'indptr' has 50 entries but the shape says 50 rows (it needs rows + 1)",
        (files(b__npz=npz(indptr=CSR.indptr[:-1])),),
        ("new.h5",),
    ),
    "convert a save_npz CSR whose data and indices differ in length": Case(
        "data convert {tmp}/b.npz {tmp}/new.h5",
        EXIT_INPUT,
        "'data' has 119 values but 'indices' has 120; they must be as long",
        (files(b__npz=npz(data=CSR.data[:-1])),),
        ("new.h5",),
    ),
    "convert a save_npz CSR without indptr": Case(
        "data convert {tmp}/b.npz {tmp}/new.h5",
        EXIT_INPUT,
        "is a save_npz CSR matrix without 'indptr'",
        (files(b__npz=npz(indptr=None)),),
        ("new.h5",),
    ),
    "convert a save_npz file without its format": Case(
        "data convert {tmp}/b.npz {tmp}/new.h5",
        EXIT_INPUT,
        "looks like a scipy.sparse.save_npz file without its 'format' array",
        (files(b__npz=npz(format=None)),),
        ("new.h5",),
    ),
    "convert a save_npz CSR whose indptr runs past the values": Case(
        "data convert {tmp}/b.npz {tmp}/new.h5",
        EXIT_INPUT,
        "'indptr' reaches 125 by row 49, beyond the 120 values of 'data'",
        (files(b__npz=npz(indptr=changed("indptr", -1, 125))),),
        ("new.h5",),
    ),
    "convert a save_npz CSR whose indptr stops short of the values": Case(
        "data convert {tmp}/b.npz {tmp}/new.h5",
        EXIT_INPUT,
        "'indptr' ends at 119 but 'data' holds 120 values",
        (files(b__npz=npz(indptr=changed("indptr", -1, 119))),),
        ("new.h5",),
    ),
    "convert a save_npz CSR whose indptr starts at 1": Case(
        "data convert {tmp}/b.npz {tmp}/new.h5",
        EXIT_INPUT,
        "'indptr' starts at 1; it must start at 0",
        (files(b__npz=npz(indptr=CSR.indptr + 1)),),
        ("new.h5",),
    ),
    "convert a save_npz CSR with a 3-long shape": Case(
        "data convert {tmp}/b.npz {tmp}/new.h5",
        EXIT_INPUT,
        "the 'shape' array is (50, 6, 1); it must be (rows, features)",
        (files(b__npz=npz(shape=np.array([50, 6, 1]))),),
        ("new.h5",),
    ),
    "convert a save_npz CSR whose indices end early": Case(
        "data convert {tmp}/b.npz {tmp}/new.h5",
        EXIT_INPUT,
        "b.npz:indices ends early: it holds fewer values than its header says",
        (files(b__npz=short_indices),),
        ("new.h5",),
    ),
    "convert a save_npz file whose members are not arrays": Case(
        "data convert {tmp}/b.npz {tmp}/new.h5",
        EXIT_INPUT,
        "b.npz:format is not a NumPy array (.npy)",
        (files(b__npz=not_npy_members),),
        ("new.h5",),
    ),
    "convert a save_npz CSR whose indptr overflows when subtracted": Case(
        "data convert {tmp}/b.npz {tmp}/new.h5",
        EXIT_INPUT,
        "'indptr' decreases at row 1; it must not",
        (files(b__npz=npz(indptr=overflowing(CSR.indptr))),),
        ("new.h5",),
    ),
    "train on a CSR group whose indptr overflows when subtracted": Case(
        "train {tmp}/o.h5 --model logistic --out {tmp}/new.h5",
        EXIT_INPUT,
        "'X'/indptr decreases at row 1; it must not",
        (files(o__h5=csr(lambda group: _replace(group, "indptr", overflowing))),),
        ("new.h5",),
        mpi=True,
    ),
    # inputs with no rows or no features: one line, not an HDF5 chunk error
    "convert a LIBSVM file of labels only": Case(
        "data convert {tmp}/l.svm {tmp}/new.h5",
        EXIT_INPUT,
        "l.svm holds no feature columns: its rows list no index:value pairs; give --features",
        (files(l__svm=text("1\n0\n")),),
        ("new.h5",),
    ),
    "convert a CSV of the label column only": Case(
        "data convert {tmp}/l.csv {tmp}/new.h5",
        EXIT_INPUT,
        "l.csv holds no feature columns: mpigd needs at least one (a label column",
        (files(l__csv=text("y\n1\n0\n")),),
        ("new.h5",),
        mpi=True,
    ),
    "convert a .npy of one column": Case(
        "data convert {tmp}/one.npy {tmp}/new.h5",
        EXIT_INPUT,
        "one.npy holds no feature columns: mpigd needs at least one (a label column",
        (files(one__npy=lambda path, tmp: np.save(path, np.zeros((4, 1)))),),
        ("new.h5",),
    ),
    "convert a .npy of no rows": Case(
        "data convert {tmp}/z.npy {tmp}/new.h5",
        EXIT_INPUT,
        "z.npy holds no data rows",
        (files(z__npy=lambda path, tmp: np.save(path, np.zeros((0, 3)))),),
        ("new.h5",),
    ),
    "convert a .npz of no rows": Case(
        "data convert {tmp}/z.npz {tmp}/new.h5",
        EXIT_INPUT,
        "z.npz holds no data rows",
        (files(z__npz=lambda path, tmp: np.savez(path, X=np.zeros((0, 3)), y=np.zeros(0))),),
        ("new.h5",),
    ),
    # CSR groups whose shape attribute lies
    "train on CSR whose shape attribute is negative": Case(
        "train {tmp}/s.h5 --model logistic --out {tmp}/new.h5",
        EXIT_INPUT,
        f"'X' has the shape attribute (101, -20); {SHAPE_RULE}",
        (files(s__h5=csr(shape=(101, -20))),),
        ("new.h5",),
        mpi=True,
    ),
    "info on CSR whose shape attribute is text": Case(
        "data info {tmp}/s.h5",
        EXIT_INPUT,
        f"'X' has the shape attribute ('101,20'); {SHAPE_RULE}",
        (files(s__h5=csr(shape="101,20")),),
    ),
    "split CSR whose shape attribute is 3 long": Case(
        "data split {tmp}/s.h5 --test-fraction 0.2",
        EXIT_INPUT,
        f"'X' has the shape attribute (101, 20, 1); {SHAPE_RULE}",
        (files(s__h5=csr(shape=(101, 20, 1))),),
        ("s-train.h5", "s-test.h5"),
    ),
    "predict on CSR whose shape attribute is not whole": Case(
        "predict {tmp}/m.h5 {tmp}/s.h5 --out {tmp}/p.h5",
        EXIT_INPUT,
        f"'X' has the shape attribute (101.5, 3.0); {SHAPE_RULE}",
        (files(s__h5=csr(shape=(101.5, 3.0))),),
        ("p.h5",),
    ),
    "evaluate on CSR without a shape attribute": Case(
        "evaluate {tmp}/m.h5 {tmp}/s.h5",
        EXIT_INPUT,
        f"'X' has no shape attribute; {SHAPE_RULE}",
        (files(s__h5=csr(change=lambda group: group.attrs.__delitem__("shape"))),),
    ),
    # a CSR file 2^40 features wide
    "info on CSR 2^40 features wide": Case(
        "data info {tmp}/w.h5 --json {tmp}/w.json",
        EXIT_OK,
        "",
        (files(w__h5=wide_csr()),),
        mpi=True,
    ),
    # .h5ad label columns
    "train on an obs code beyond the categories": Case(
        "train {tmp}/c.h5ad --model softmax --y-key obs/cell_type --out {tmp}/new.h5",
        EXIT_INPUT,
        "column 'obs/cell_type' holds 2 codes outside its 3 categories (e.g. code 7)",
        (files(c__h5ad=h5ad(codes(3, CELLS - 1, value=7))),),
        ("new.h5",),
        mpi=True,
    ),
    "train --labels auto on an obs code beyond the categories": Case(
        "train {tmp}/c.h5ad --model softmax --labels auto --y-key obs/cell_type --out {tmp}/n.h5",
        EXIT_INPUT,
        "holds 1 codes outside its 3 categories (e.g. code 3) in rows",
        (files(c__h5ad=h5ad(codes(5, value=3))),),
        ("n.h5",),
    ),
    "info on an obs code beyond the categories": Case(
        "data info {tmp}/c.h5ad --y-key obs/cell_type",
        EXIT_INPUT,
        "column 'obs/cell_type' holds 1 codes outside its 3 categories (e.g. code -5)",
        (files(c__h5ad=h5ad(codes(0, value=-5))),),
    ),
    "train on a missing obs label": Case(
        "train {tmp}/c.h5ad --model softmax --y-key obs/cell_type --out {tmp}/new.h5",
        EXIT_INPUT,
        "column 'obs/cell_type' holds 2 missing labels (code -1)",
        (files(c__h5ad=h5ad(codes(1, 2, value=-1))),),
        ("new.h5",),
    ),
    "train on a categorical column without categories": Case(
        "train {tmp}/c.h5ad --model softmax --y-key obs/cell_type --out {tmp}/new.h5",
        EXIT_INPUT,
        "the categorical column 'obs/cell_type' has no 1-D array 'categories'",
        (files(c__h5ad=h5ad(without_categories)),),
        ("new.h5",),
    ),
    "info --y-key a categorical obs column": Case(
        "data info {tmp}/c.h5ad --y-key obs/cell_type",
        EXIT_OK,
        "",
        (files(c__h5ad=h5ad()),),
        mpi=True,
    ),
    "train --y-key a categorical obs column": Case(
        "train {tmp}/c.h5ad --model softmax --l2 1e-2 --y-key obs/cell_type --out {tmp}/n.h5",
        EXIT_OK,
        "",
        (files(c__h5ad=h5ad()),),
    ),
    "train --y-key an obs column of booleans": Case(
        "train {tmp}/c.h5ad --model logistic --l2 1e-2 --y-key obs/flag --out {tmp}/n.h5",
        EXIT_OK,
        "",
        (files(c__h5ad=h5ad()),),
    ),
    "info --y-key an obs column of booleans": Case(
        "data info {tmp}/c.h5ad --y-key obs/flag", EXIT_OK, "", (files(c__h5ad=h5ad()),)
    ),
    "split an h5ad": Case(
        "data split {tmp}/c.h5ad --test-fraction 0.25",
        EXIT_OK,
        "",
        (files(c__h5ad=h5ad()),),
        mpi=True,
    ),
    "split an h5ad with pairs of rows warns": Case(
        "data split {tmp}/c.h5ad --test-fraction 0.25",
        EXIT_OK,
        "obsp/distances: a matrix of pairs of rows cannot be split by rows",
        (files(c__h5ad=h5ad(pairs=True)),),
    ),
    "split an h5ad with a CSC layer": Case(
        "data split {tmp}/c.h5ad --test-fraction 0.25",
        EXIT_INPUT,
        "'layers/counts' is a CSC matrix (column-compressed, common in .h5ad); mpigd reads rows",
        (files(c__h5ad=h5ad(csc_layer=True)),),
        ("c-train.h5ad", "c-test.h5ad"),
    ),
    # LIBSVM -1/+1 labels
    "convert LIBSVM -1/+1 labels": Case(
        "data convert {tmp}/pm.svm {tmp}/new.h5",
        EXIT_OK,
        "",
        (files(pm__svm=text(plus_minus_text()[0])),),
    ),
    "convert a LIBSVM index beyond --features": Case(
        "data convert {tmp}/w.svm {tmp}/new.h5 --features 2",
        EXIT_INPUT,
        "w.svm: line 2: index 3 exceeds the given number of features, 2 (--features)",
        (files(w__svm=text("1 1:0.5\n-1 3:1\n")),),
        ("new.h5",),
    ),
    "train logistic on -1/+1 labels as class indices": Case(
        "train {tmp}/pm.h5 --model logistic --out {tmp}/new.h5",
        EXIT_INPUT,
        "logistic labels must be 0 or 1 (any two values: --labels auto); found "
        f"{MINUS_ONES} other values (e.g. -1) in rows ",
        (files(pm__h5=converted),),
        ("new.h5",),
        mpi=True,
    ),
    "train softmax on -1/+1 labels as class indices": Case(
        "train {tmp}/pm.h5 --model softmax --out {tmp}/new.h5",
        EXIT_INPUT,
        f"class labels must be integers 0, 1, 2, ...; found {MINUS_ONES} other values (e.g. "
        "-1) in rows ",
        (files(pm__h5=converted),),
        ("new.h5",),
    ),
    "train --labels auto on -1/+1 labels": Case(
        "train {tmp}/pm.h5 --model logistic --labels auto --out {tmp}/new.h5",
        EXIT_OK,
        "",
        (files(pm__h5=converted),),
    ),
    "predict -1/+1 with a --labels auto model": Case(
        "predict {tmp}/pmm.h5 {tmp}/pm.h5 --out {tmp}/p.h5",
        EXIT_OK,
        "",
        (files(pm__h5=converted, pmm__h5=plus_minus_model),),
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_case(case, tmp_path):
    run_case(CASES[case], tmp_path, None)


MPI_CASES = [name for name, case in CASES.items() if case.mpi]


@pytest.mark.parametrize("ranks", [1, 3])
@pytest.mark.parametrize("case", MPI_CASES)
def test_case_under_mpiexec(case, ranks, tmp_path):
    run_case(CASES[case], tmp_path, ranks)


def test_the_catalogue_covers_every_kind_of_file():
    assert len(CASES) >= 25
    argv = " ".join(case.argv for case in CASES.values())
    for suffix in (".npz", ".h5ad", ".svm", "s.h5", "w.h5"):
        assert suffix in argv
    assert {"data convert", "data info", "data split", "train"} <= {
        command(CASES[name]) for name in MPI_CASES
    }


# --------------------------------------------------------- results that must be right


def read_csr(path) -> sp.csr_matrix:
    with h5py.File(path) as f:
        group = f["X"]
        parts = (group["data"][:], group["indices"][:], group["indptr"][:])
        return sp.csr_matrix(parts, shape=tuple(group.attrs["shape"]))


@pytest.mark.parametrize("block_rows", [8192, 7])  # one block; a block ends mid-matrix
@pytest.mark.parametrize("kind", ["unsorted", "repeated"])
def test_a_valid_save_npz_converts_to_scipys_canonical_matrix(
    tmp_path, monkeypatch, kind, block_rows
):
    from mpigd.io import arrays

    monkeypatch.setattr(arrays, "SPARSE_BLOCK_ROWS", block_rows)
    X = unsorted(CSR) if kind == "unsorted" else repeated(CSR)
    sp.save_npz(tmp_path / "x.npz", X, compressed=False)
    before = (tmp_path / "x.npz").read_bytes()
    convert(tmp_path / "x.npz", tmp_path / "x.h5")
    assert (tmp_path / "x.npz").read_bytes() == before
    got, want = read_csr(tmp_path / "x.h5"), sp.load_npz(tmp_path / "x.npz")
    want.sum_duplicates()  # scipy's own canonical form: sorted, each column once
    assert got.has_canonical_format
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.data, want.data)
    np.testing.assert_array_equal(got.toarray(), CSR.toarray())
    with h5py.File(tmp_path / "x.h5") as f:
        assert f["X/data"].shape == (CSR.nnz,)  # no value left over from the repeat


def test_info_of_a_csr_file_2_to_the_40_wide(tmp_path):
    wide_csr()(tmp_path / "w.h5", tmp_path)
    assert main(["data", "info", str(tmp_path / "w.h5"), "--json", str(tmp_path / "w.json")]) == 0
    summary = json.loads((tmp_path / "w.json").read_text())
    X, y = sparse_problem("logistic", 101, 20, seed=3)
    assert summary["features"] == 2**40 and summary["sparse"]["nnz"] == X.nnz
    assert summary["feature_stats"] is None and summary["sparse"]["values_per_feature"] is None
    assert "1,099,511,627,776 features" in summary["note"]
    assert summary["classes"] == {"0": int((y == 0).sum()), "1": int((y == 1).sum())}


def test_info_reads_the_labels_train_reads(tmp_path):
    h5ad()(tmp_path / "c.h5ad", tmp_path)
    _, y, flag = cells()
    path = str(tmp_path / "c.h5ad")
    for key, want, names in (
        ("obs/cell_type", y, {"0": "B", "1": "NK", "2": "T"}),
        ("obs/flag", flag.astype(int), None),
    ):
        out = tmp_path / f"{key.replace('/', '-')}.json"
        assert main(["data", "info", path, "--y-key", key, "--json", str(out), "--quiet"]) == 0
        summary = json.loads(out.read_text())
        assert summary["classes"] == {str(k): int((want == k).sum()) for k in np.unique(want)}
        assert summary.get("class_names") == names


def test_obs_booleans_are_labels_0_and_1(tmp_path):
    from mpigd.io.dataset import inspect_dataset, read_block

    h5ad()(tmp_path / "c.h5ad", tmp_path)
    info = inspect_dataset(tmp_path / "c.h5ad", y_key="obs/flag")
    np.testing.assert_array_equal(read_block(info, 0, 1).y, cells()[2].astype(float))


def test_split_of_an_h5ad_keeps_the_obs_columns_with_their_rows(tmp_path):
    from mpigd.io.split import split

    h5ad()(tmp_path / "c.h5ad", tmp_path)
    X, y, flag = cells()
    n_train, n_test = split(
        tmp_path / "c.h5ad", tmp_path / "a.h5ad", tmp_path / "b.h5ad", test_fraction=0.25, seed=3
    )
    seen = []
    with h5py.File(tmp_path / "c.h5ad") as f:
        categories = f["obs/cell_type/categories"][:]
        obs_attrs = dict(f["obs"].attrs)
    for name, rows in (("a.h5ad", n_train), ("b.h5ad", n_test)):
        with h5py.File(tmp_path / name) as f:
            ids = f["obs/score"][:]  # each row's number in the original file
            assert len(ids) == rows
            seen.append(ids)
            index = [name.decode() for name in f["obs/_index"][:]]
            assert index == [f"cell{i}" for i in ids]
            np.testing.assert_array_equal(f["obs/cell_type/codes"][:], y[ids])
            np.testing.assert_array_equal(f["obs/cell_type/categories"][:], categories)
            np.testing.assert_array_equal(f["obs/flag"][:], flag[ids])
            np.testing.assert_array_equal(f["obsm/pca"][:], 2 * ids[:, None] + [0, 1])
            assert dict(f["obs/cell_type"].attrs)["encoding-type"] == "categorical"
            assert dict(f["obs"].attrs).keys() == obs_attrs.keys()
            assert f.attrs["encoding-type"] == "anndata"
        np.testing.assert_array_equal(read_csr(tmp_path / name).toarray(), X[ids].toarray())
    ids = np.concatenate(seen)
    np.testing.assert_array_equal(np.sort(ids), np.arange(CELLS))  # every row once
    assert not np.array_equal(ids, np.arange(CELLS))  # shuffled


def test_a_split_h5ad_reads_back_in_anndata_and_trains(tmp_path):
    import anndata

    h5ad()(tmp_path / "c.h5ad", tmp_path)
    assert main(["data", "split", str(tmp_path / "c.h5ad"), "--test-fraction", "0.3"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = anndata.read_h5ad(tmp_path / "c.h5ad")
        part = anndata.read_h5ad(tmp_path / "c-test.h5ad")  # the default name keeps .h5ad
    assert part.n_obs == 18 and list(part.obs.columns) == ["cell_type", "flag", "score"]
    original = whole.obs.loc[part.obs_names]
    assert (part.obs["cell_type"] == original["cell_type"]).all()
    assert (part.obs["flag"] == original["flag"]).all()
    assert list(part.obs["cell_type"].cat.categories) == list(CELL_TYPES)
    argv = ["train", str(tmp_path / "c-train.h5ad"), "--model", "softmax", "--l2", "1e-2"]
    argv += ["--y-key", "obs/cell_type", "--out", str(tmp_path / "m.h5"), "--quiet"]
    assert main(argv) == 0


def test_libsvm_plus_minus_labels_come_back_from_predict(tmp_path):
    content, labels = plus_minus_text()
    (tmp_path / "pm.svm").write_text(content)

    def mpigd(*args, ranks=None):
        argv = ["-m", "mpigd", *map(str, args)]
        if ranks:
            return run_mpi(ranks, *argv)
        return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT)

    done = mpigd("data", "convert", tmp_path / "pm.svm", tmp_path / "pm.h5")
    assert done.returncode == 0 and "labels -1/+1 kept as they are" in done.stdout, done.stderr
    with h5py.File(tmp_path / "pm.h5") as f:
        np.testing.assert_array_equal(f["y"][:], labels)
    model = tmp_path / "m.h5"
    done = mpigd("train", tmp_path / "pm.h5", "--model", "logistic", "--labels", "auto",
                 "--l2", "1e-3", "--out", model, "--quiet", ranks=2)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = tmp_path / "p.h5"
    done = mpigd("predict", model, tmp_path / "pm.h5", "--out", out, ranks=3)
    assert done.returncode == 0, done.stderr
    with h5py.File(out) as f:
        predicted = f["prediction"][:]
    assert set(np.unique(predicted)) == {-1.0, 1.0}
    assert np.mean(predicted == labels) > 0.6  # a model of the labels, not of their sign flipped
