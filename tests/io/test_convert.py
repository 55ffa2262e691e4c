"""mpigd data convert: round trips, streaming in bounded memory, errors that name the line."""

import os
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from mpigd.cli import main
from mpigd.errors import MpigdError
from mpigd.io.convert import convert


@pytest.fixture
def table():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((257, 4))
    X[3, 1] = 0.0
    return X, (rng.random(257) < 0.5).astype(float)


def read(path):
    """X (dense, also from a CSR group), y and X's attributes."""
    with h5py.File(path) as f:
        X = f["X"]
        if isinstance(X, h5py.Group):
            parts = (X["data"][:], X["indices"][:], X["indptr"][:])
            dense = sp.csr_matrix(parts, shape=tuple(X.attrs["shape"])).toarray()
        else:
            dense = X[:]
        return dense, (f["y"][:] if "y" in f else None), dict(X.attrs)


def write_csv(path, X, y, header=True, delimiter=","):
    with open(path, "w") as f:
        if header:
            f.write(delimiter.join(["a", "b", "target", "c", "d"]) + "\n")
        for row, label in zip(X, y, strict=True):
            fields = [repr(float(v)) for v in row]
            f.write(delimiter.join([*fields[:2], repr(float(label)), *fields[2:]]) + "\n")
    return path


@pytest.mark.parametrize("header", [True, False])
def test_csv_round_trip(tmp_path, table, header):
    X, y = table
    src = write_csv(tmp_path / "t.csv", X, y, header=header)
    label = "target" if header else "2"
    source = convert(src, tmp_path / "t.h5", label=label)
    X2, y2, attrs = read(tmp_path / "t.h5")
    np.testing.assert_array_equal(X2, X)  # repr() round-trips float64 exactly
    np.testing.assert_array_equal(y2, y)
    assert source.n_rows == 257 and source.n_features == 4
    if header:
        assert list(attrs["feature_names"]) == ["a", "b", "c", "d"]


def test_tsv_float32_compressed_and_no_label(tmp_path, table):
    X, y = table
    src = write_csv(tmp_path / "t.tsv", X, y, delimiter="\t")
    convert(src, tmp_path / "t.h5", label="none", dtype="float32", compression="gzip")
    X2, y2, _ = read(tmp_path / "t.h5")
    assert y2 is None and X2.dtype == np.float32 and X2.shape == (257, 5)
    np.testing.assert_array_equal(X2[:, 2], y.astype(np.float32))
    with h5py.File(tmp_path / "t.h5") as f:
        assert f["X"].compression == "gzip"
        assert f["X"].chunks[1] == 5  # chunks are blocks of whole rows


def test_libsvm_round_trip_keeps_minus_one_labels(tmp_path, table):
    X, y = table
    with open(tmp_path / "t.svm", "w") as f:
        f.write("# a comment line\n")
        for row, label in zip(X, y, strict=True):
            pairs = " ".join(f"{j + 1}:{float(v)!r}" for j, v in enumerate(row) if v != 0)
            f.write(f"{int(2 * label - 1):+d} qid:1 {pairs}  # trailing comment\n")
    source = convert(tmp_path / "t.svm", tmp_path / "t.h5")
    X2, y2, _ = read(tmp_path / "t.h5")
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, 2 * y - 1)  # -1/+1, as the file spells them
    assert set(np.unique(y2)) == {-1.0, 1.0}
    assert "labels -1/+1 kept as they are (train a classifier with --labels auto)" in source.notes


@pytest.mark.parametrize("dense", [False, True])
def test_libsvm_labels_are_never_remapped(tmp_path, dense):
    """0/1, -1/+1, 1/2 and -1/0/+1 come out as they went in, sparse or dense."""
    text = "-1 1:1\n+1 2:1\n0 1:2\n2 2:3\n"
    (tmp_path / "t.svm").write_text(text)
    layout = "dense" if dense else None
    source = convert(tmp_path / "t.svm", tmp_path / "t.h5", layout=layout, zero_based=False)
    np.testing.assert_array_equal(read(tmp_path / "t.h5")[1], [-1, 1, 0, 2])
    assert not any("labels" in note for note in source.notes)


def test_libsvm_zero_based_and_fixed_width(tmp_path):
    (tmp_path / "t.svm").write_text("1.5 0:1 2:3\n-2 1:4\n")
    convert(tmp_path / "t.svm", tmp_path / "t.h5", n_features=5)
    X, y, _ = read(tmp_path / "t.h5")
    np.testing.assert_array_equal(X, [[1, 0, 3, 0, 0], [0, 4, 0, 0, 0]])
    np.testing.assert_array_equal(y, [1.5, -2])  # not -1/+1: kept as they are


@pytest.mark.parametrize("kind", ["npy", "npz", "npz-single"])
def test_numpy_round_trip(tmp_path, table, kind):
    X, y = table
    if kind == "npy":
        np.save(tmp_path / "t.npy", np.column_stack([X, y]))
        src = tmp_path / "t.npy"
    elif kind == "npz":
        np.savez_compressed(tmp_path / "t.npz", X=X, y=y.astype(np.int64))
        src = tmp_path / "t.npz"
    else:
        np.savez(tmp_path / "t.npz", np.column_stack([X, y]))
        src = tmp_path / "t.npz"
    convert(src, tmp_path / "t.h5")
    X2, y2, _ = read(tmp_path / "t.h5")
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b,y\n1,2,0\n3,4\n", "line 3 has 2 fields, expected 3"),
        ("a,b,y\n1,2,0\n\n3,x,1\n", "line 4, column 2 ('b'): 'x' is not a finite number"),
        ("a,b,y\n1,,0\n", "line 2, column 2 ('b'): an empty field is not a finite number"),
        ("1,2,0\n1,nan,1\n", "line 2, column 2: 'nan' is not a finite number"),
    ],
)
def test_malformed_csv_names_line_and_column(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(MpigdError, match=re.escape(f"bad.csv: {message}")):
        convert(tmp_path / "bad.csv", tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()
    assert os.listdir(tmp_path) == ["bad.csv"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 1:2\n0 1:x\n", "line 2, column 2: '1:x' is not index:value"),
        ("1 1:2\n0 3\n", "line 2, column 2: '3' is not index:value"),
        ("1 1:2\n1,2 1:1\n", "line 2, column 1: label '1,2' is not a finite number"),
        ("1 1:2\ninf 1:1\n", "line 2, column 1: label 'inf' is not a finite number"),
        ("1 1:2\n0 1.5:1\n", "line 2, column 2: '1.5:1' is not index:value"),
        ("1 1:2\n0 1:nan\n", "line 2, column 2: '1:nan' is not a finite number"),
        ("1 1:2\n0 5 1:2:3\n", "line 2, column 2: '5' is not index:value"),  # counts agree
        ("1 1:2\n1:2 3:4 5\n", "line 2, column 1: label '1:2' is not a finite number"),
    ],
)
def test_malformed_libsvm_names_line_and_column(tmp_path, text, message):
    (tmp_path / "bad.svm").write_text(text)
    with pytest.raises(MpigdError, match=re.escape(message)):
        convert(tmp_path / "bad.svm", tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_cli_reports_one_line_and_status_2(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("1,2\n3,4,5\n")
    assert main(["data", "convert", str(tmp_path / "bad.csv"), str(tmp_path / "o.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mpigd: error: {tmp_path / 'bad.csv'}: line 2 has 3 fields, expected 2"]
    assert main(["data", "convert", str(tmp_path / "bad.csv"), str(tmp_path / "bad.csv")]) == 2
    assert "is an input file" in capsys.readouterr().err


@pytest.mark.slow
def test_conversion_streams_a_file_larger_than_its_memory_limit(tmp_path):
    """A 256 MB CSV converts with peak memory under 64 MB above the interpreter's own."""
    rng = np.random.default_rng(0)
    block = "".join(
        ",".join(f"{v:.6f}" for v in row) + "\n" for row in rng.standard_normal((8192, 9))
    ).encode()
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:
        while f.tell() < 256 * 2**20:
            f.write(block)
    rows = big.stat().st_size // len(block) * 8192

    def peak_rss(*args) -> int:
        proc = subprocess.Popen([sys.executable, "-m", "mpigd", *args], stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read()
        return usage.ru_maxrss * 1024  # kilobytes on Linux

    baseline = peak_rss("--version")
    limit = baseline + 64 * 2**20
    assert big.stat().st_size > 3 * limit - 3 * baseline  # far larger than the allowance
    peak = peak_rss("data", "convert", str(big), str(tmp_path / "big.h5"), "--quiet")
    assert peak < limit, f"peak {peak / 2**20:.0f} MiB, baseline {baseline / 2**20:.0f} MiB"
    with h5py.File(tmp_path / "big.h5") as f:
        assert f["X"].shape == (rows, 8)
        np.testing.assert_allclose(f["X"][8192 + 5], np.round(f["X"][5], 6))


def test_block_parser_agrees_with_the_line_parser():
    """The vectorised LIBSVM block parser gives what the per-line parser gives."""
    from mpigd.io.text import _fast_block, _slow_block

    rng = np.random.default_rng(1)
    lines = []
    for i in range(500):
        pairs = sorted(rng.choice(50, rng.integers(0, 6), replace=False) + 1)
        text = " ".join(f"{j}:{rng.standard_normal():.17g}" for j in pairs)
        lines.append((i + 1, f"{rng.integers(-1, 2)} {text}{'  # note' if i % 7 == 0 else ''}\n"))
        if i % 50 == 0:
            lines.append((i + 1, "\n"))
    fast, slow = _fast_block(lines), _slow_block("t.svm", lines)
    assert fast is not None
    for name in ("labels", "row", "index", "value"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name))


def test_a_conversion_loads_neither_the_training_modules_nor_numpy_ma(tmp_path):
    """A conversion's start is its own: ``mpigd train``'s modules are imported when it
    runs, and the label counts do without ``np.unique`` (whose first call imports
    ``numpy.ma``), about 50 ms of each rank's start together."""
    (tmp_path / "a.svm").write_text("1 1:0.5 3:2\n-1 2:1\n")
    code = (
        "import sys; from mpigd.cli import main; "
        f"status = main(['data', 'convert', {str(tmp_path / 'a.svm')!r}, "
        f"{str(tmp_path / 'a.h5')!r}, '--quiet']); "
        "print(status, *sorted(m for m in ('mpigd.train.driver', 'mpigd.objective', "
        "'numpy.ma') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["0"], done.stdout + done.stderr
