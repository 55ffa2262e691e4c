"""``mpigd data convert`` of text on every rank (mpigd.io.text_convert), under real mpiexec
at rank counts that do not divide the rows (and more ranks than lines): the same file,
byte for byte, for any rank count; LIBSVM equal to scikit-learn's loader; parts, globs
and gzip parts equal to their concatenation; CSV equal to NumPy's reading; errors named
by file and global line, on one line, with nothing left behind. One launch a rank count."""

from __future__ import annotations

import gzip
import json
import os

import h5py
import numpy as np
import pytest
from conftest import ROOT, run_mpi, run_mpi_commands

from mpigd.errors import EXIT_INPUT

RANKS = [1, 2, 3]


def libsvm_text(rows: int, seed: int, unsorted: bool = True) -> str:
    """LIBSVM lines with the odd things files hold: CRLF, blank and comment lines, qid
    tokens, unsorted indices, rows with no pairs, exponents, a comment after the pairs."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(rows):
        k = int(rng.integers(0, 9))
        index = np.sort(rng.choice(np.arange(1, 60), k, replace=False))
        tokens = [f"{j}:{rng.normal() * 10.0 ** rng.integers(-5, 5):.{i % 17 + 1}g}" for j in index]
        pairs = " ".join(tokens[::-1] if i % 11 == 0 and unsorted else tokens)
        label = rng.choice(["-1", "+1", "1", "0.5e0"])
        qid = " qid:3" if i % 13 == 0 else ""
        comment = " # note" if i % 9 == 0 else ""
        lines.append(f"{label}{qid} {pairs}{comment}" + ("\r\n" if i % 5 == 0 else "\n"))
        if i % 31 == 0:
            lines.append("\n# a comment line\n")
    return "".join(lines).rstrip("\n")  # no final newline


CSV_HEADER = "a,b,c,y\n"


def csv_rows(rows: int, seed: int) -> str:
    values = np.random.default_rng(seed).normal(size=(rows, 4))
    return "".join(",".join(f"{v:.9g}" for v in row) + "\n" for row in values)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    (d / "edge.svm").write_text(libsvm_text(700, 1))
    (d / "sorted.svm").write_text(libsvm_text(700, 1, unsorted=False))  # as scikit-learn needs
    parts = [libsvm_text(300, s) + "\n" for s in (2, 3, 4)]
    (d / "whole.svm").write_text("".join(parts))
    (d / "part-00000.svm").write_text(parts[0])
    (d / "part-00001.svm.gz").write_bytes(gzip.compress(parts[1].encode()))
    (d / "part-00002.svm").write_text(parts[2])
    (d / "tiny.svm").write_text("1 1:2\n-1 2:3\n")
    (d / "a.csv").write_text(CSV_HEADER + csv_rows(250, 5))
    (d / "b.csv").write_text(CSV_HEADER + csv_rows(101, 6))
    (d / "t.tsv").write_text(csv_rows(99, 7).replace(",", "\t").replace("\n", "\r\n"))
    lines = libsvm_text(900, 8).split("\n")
    lines[776] = "1 3:0.5 4:oops"
    (d / "bad.svm").write_text("\n".join(lines))
    (d / "wide.svm").write_text("1 1:1\n" * 500 + "1 70:1\n")
    (d / "other.csv").write_text("a,b,c,z\n1,2,3,4\n")
    from mpigd.io.criteo import write_criteo

    write_criteo(d / "day_0.tsv", 401, seed=3)
    return d


COMMANDS = {  # name: (arguments after "data convert", expected status)
    "edge": (["{d}/edge.svm"], 0),
    "sorted": (["{d}/sorted.svm"], 0),
    "parts": (["{d}/part-*"], 0),
    "whole": (["{d}/whole.svm"], 0),
    "tiny": (["{d}/tiny.svm"], 0),
    "dense": (["{d}/edge.svm", "--dense"], 0),
    "csv": (["{d}/a.csv", "{d}/b.csv"], 0),
    "tsv": (["{d}/t.tsv", "--label", "0", "--sparse"], 0),
    "bad": (["{d}/bad.svm"], EXIT_INPUT),
    "wide": (["{d}/wide.svm", "--features", "50"], EXIT_INPUT),
    "headers": (["{d}/a.csv", "{d}/other.csv"], EXIT_INPUT),
    "criteo": (["{d}/day_0.tsv", "--label", "0", "--categorical", "14-39", "--hash-bits", "10"], 0),
    "hash-label": (
        ["{d}/day_0.tsv", "--label", "0", "--categorical", "0-39", "--hash-bits", "4"],
        EXIT_INPUT,
    ),
}


@pytest.fixture(scope="module")
def converted(inputs, tmp_path_factory):
    """``{ranks: (folder, {name: outcome})}``: every command, one launch a rank count."""
    done = {}
    for ranks in RANKS:
        out = tmp_path_factory.mktemp(f"p{ranks}")
        commands = [
            ["data", "convert", *(a.format(d=inputs) for a in args), out / f"{name}.h5", "--quiet"]
            for name, (args, _) in COMMANDS.items()
        ]
        outcomes = out / "outcomes.json"
        proc = run_mpi_commands(ranks, commands, out / "commands.json", outcomes)
        assert proc.returncode == 0, proc.stderr
        done[ranks] = out, dict(zip(COMMANDS, json.loads(outcomes.read_text()), strict=True))
    return done


def read(path):
    with h5py.File(path) as f:
        if isinstance(f["X"], h5py.Group):
            X = tuple(f["X"][k][:] for k in ("data", "indices", "indptr"))
        else:
            X = f["X"][:]
        return X, f["y"][:] if "y" in f else None


def test_every_command_ends_as_expected_on_every_rank(converted):
    for ranks, (_, outcomes) in converted.items():
        for name, (_, status) in COMMANDS.items():
            assert set(outcomes[name]["status"]) == {status}, (ranks, name, outcomes[name])


def test_the_output_is_the_same_file_for_any_rank_count(converted):
    one = converted[1][0]
    for ranks in RANKS[1:]:
        for name, (_, status) in COMMANDS.items():
            if status == 0:
                ours = (converted[ranks][0] / f"{name}.h5").read_bytes()
                assert ours == (one / f"{name}.h5").read_bytes(), (ranks, name)


def test_libsvm_equals_scikit_learns_loader(inputs, converted):
    from sklearn.datasets import load_svmlight_file

    X, y = load_svmlight_file(str(inputs / "sorted.svm"), zero_based=False)
    (data, indices, indptr), ours_y = read(converted[3][0] / "sorted.h5")
    np.testing.assert_array_equal(ours_y, y)
    np.testing.assert_array_equal(indptr, X.indptr)
    np.testing.assert_array_equal(indices, X.indices)
    assert data.view(np.int64).tolist() == X.data.view(np.int64).tolist()  # bit for bit
    dense, _ = read(converted[2][0] / "dense.h5")  # the unsorted lines, sorted
    np.testing.assert_array_equal(dense, X.toarray())


def test_parts_glob_and_gzip_equal_their_concatenation(converted):
    for ranks in RANKS:
        folder = converted[ranks][0]
        parts, whole = read(folder / "parts.h5"), read(folder / "whole.h5")
        for a, b in zip([*parts[0], parts[1]], [*whole[0], whole[1]], strict=True):
            np.testing.assert_array_equal(a, b)


def test_csv_files_with_headers_equal_numpys_reading(inputs, converted):
    a = np.loadtxt(inputs / "a.csv", delimiter=",", skiprows=1)
    b = np.loadtxt(inputs / "b.csv", delimiter=",", skiprows=1)
    X, y = read(converted[3][0] / "csv.h5")
    np.testing.assert_array_equal(X, np.vstack([a, b])[:, :3])
    np.testing.assert_array_equal(y, np.concatenate([a, b])[:, 3])
    with h5py.File(converted[3][0] / "csv.h5") as f:
        assert list(f["X"].attrs["feature_names"]) == ["a", "b", "c"]
        assert f["y"].attrs["name"] == "y"
    t = np.loadtxt(inputs / "t.tsv", delimiter="\t")
    (data, indices, indptr), y = read(converted[2][0] / "tsv.h5")
    import scipy.sparse as sp

    X = sp.csr_matrix((data, indices, indptr), shape=(len(t), 3)).toarray()
    np.testing.assert_array_equal(X, t[:, 1:])
    np.testing.assert_array_equal(y, t[:, 0])


def test_hashed_criteo_rows_are_their_counts_then_feature_hashers_columns(inputs, converted):
    import scipy.sparse as sp
    from sklearn.feature_extraction import FeatureHasher

    rows = [line.split("\t") for line in (inputs / "day_0.tsv").read_text().splitlines()]
    counts = np.array([[float(v) if v else 0.0 for v in row[1:14]] for row in rows])
    tokens = [{str(c): row[c] for c in range(14, 40) if row[c]} for row in rows]
    hashed = FeatureHasher(n_features=2**10, input_type="dict", alternate_sign=True)
    expected = sp.hstack([sp.csr_matrix(counts), hashed.transform(tokens)]).tocsr()
    expected.sort_indices()
    (data, indices, indptr), y = read(converted[3][0] / "criteo.h5")
    np.testing.assert_array_equal(y, [float(row[0]) for row in rows])
    np.testing.assert_array_equal(indptr, expected.indptr)
    np.testing.assert_array_equal(indices, expected.indices)
    np.testing.assert_array_equal(data, expected.data)


@pytest.mark.parametrize(
    "name, message",
    [
        ("hash-label", "--categorical includes the label column, 0"),
        ("bad", "bad.svm: line 777, column 3: '4:oops' is not index:value"),
        ("wide", "wide.svm: line 501: index 70 exceeds the given number of features, 50"),
        ("headers", "other.csv: line 1: a header that is not"),
    ],
)
def test_an_error_is_one_line_naming_the_file_and_line_and_leaves_nothing(converted, name, message):
    for ranks, (folder, outcomes) in converted.items():
        stderr = "".join(outcomes[name]["stderr"])
        lines = [line for line in stderr.splitlines() if line.startswith("mpigd: error")]
        assert len(lines) == 1 and message in lines[0], (ranks, stderr)
        assert not (folder / f"{name}.h5").exists()
        assert not list(folder.glob(f".{name}.h5.*"))  # no temporary file left


def test_a_write_failing_on_one_rank_is_one_line_and_leaves_nothing(tmp_path):
    """The last of 3 ranks may write only the first 64 KiB of any file (as if its disk
    were full there): every rank ends, with one line naming the output and why."""
    rng = np.random.default_rng(5)
    lines = [
        f"{i % 2} " + " ".join(f"{j}:{v:.6f}" for j, v in enumerate(rng.random(20), 1))
        for i in range(4000)
    ]  # 80,000 values, 640 KB: the last rank's start past 400 KB
    (tmp_path / "in.svm").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.h5"
    limit = ROOT / "tests" / "mpi" / "mpi_write_limit.py"
    proc = run_mpi(3, limit, 65536, "data", "convert", tmp_path / "in.svm", out, "--quiet")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mpigd: error")]
    assert proc.returncode == EXIT_INPUT, proc.stderr
    assert errors == [
        f"mpigd: error: cannot write {out}: it would exceed the largest file "
        "this process may write (ulimit -f) or its file system holds (on rank 2)"
    ], proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.svm"]  # no output, no temporary


def test_an_input_that_changes_while_read_is_named(tmp_path):
    from mpigd.errors import MpigdError
    from mpigd.io.ingest import list_inputs

    path = tmp_path / "growing.svm"
    path.write_text("1 1:1\n")
    inputs = list_inputs([str(path)], tmp_path / "out.h5")
    inputs.check_unchanged()
    with open(path, "a") as f:
        f.write("0 2:1\n")
    with pytest.raises(MpigdError, match=r"growing\.svm changed while it was read"):
        inputs.check_unchanged()


def test_qid_tokens_are_ignored_with_one_warning(converted):
    for ranks, (_, outcomes) in converted.items():
        stderr = "".join(outcomes["edge"]["stderr"])
        warned = [line for line in stderr.splitlines() if "qid: tokens of" in line]
        assert len(warned) == 1 and "of 54 lines are ignored" in warned[0], (ranks, stderr)


def test_an_input_changed_between_the_passes_leaves_no_output(tmp_path, monkeypatch):
    """The text is read twice (counting, then writing); an input rewritten in between,
    to the same size, is refused before the output is put in place: the old output
    stays as it was and no temporary file is left."""
    from mpigd.cli import main
    from mpigd.io import text_convert

    src, out = tmp_path / "in.svm", tmp_path / "out.h5"
    src.write_text("1 1:0.5\n-1 2:1\n1 1:0.5\n")
    out.write_bytes(b"the user's old output")
    counted = text_convert.counted

    def rewritten(comm, reader, counts):
        plan = counted(comm, reader, counts)
        src.write_text(src.read_text().replace("0.5", "0.7"))
        os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
        return plan

    monkeypatch.setattr(text_convert, "counted", rewritten)
    assert main(["data", "convert", str(src), str(out), "--quiet"]) == EXIT_INPUT
    assert out.read_bytes() == b"the user's old output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.svm", "out.h5"]


@pytest.mark.parametrize("fmt", ["libsvm", "csv", "hashed"])
def test_many_small_blocks_through_one_scratch_give_the_same_file(tmp_path, monkeypatch, fmt):
    """Every block of each pass is parsed into the arrays of the block before: with
    blocks of 4 KiB (hundreds of them, some lines longer than a block) the datasets are
    those of one 8 MiB block."""
    from mpigd.cli import main
    from mpigd.io import ranges

    rng = np.random.default_rng(5)
    if fmt == "libsvm":
        src, extra = tmp_path / "in.svm", []
        src.write_text(libsvm_text(3000, 5) + "\n1 " + " ".join(f"{j}:1" for j in range(1, 900)))
    else:
        src = tmp_path / "in.csv"
        rows = [f"{rng.integers(2)},{rng.normal():.6g},c{rng.integers(50)},{rng.random():.3g}"
                for _ in range(4000)]  # fmt: skip
        src.write_text("y,a,b,c\n" + "\n".join(rows) + "\n")
        extra = ["--label", "y"] + (["--categorical", "b", "--hash-bits", "6"] * (fmt == "hashed"))
        if fmt == "csv":
            src.write_text(src.read_text().replace(",c", ",1"))

    def datasets(path):
        with h5py.File(path) as f:
            found = {}
            f.visititems(
                lambda k, v: found.update({k: v[()]}) if isinstance(v, h5py.Dataset) else None
            )
            return found

    assert main(["data", "convert", str(src), str(tmp_path / "big.h5"), "--quiet", *extra]) == 0
    monkeypatch.setattr(ranges.piece_blocks, "__defaults__", (4096,))
    assert main(["data", "convert", str(src), str(tmp_path / "small.h5"), "--quiet", *extra]) == 0
    big, small = datasets(tmp_path / "big.h5"), datasets(tmp_path / "small.h5")
    assert big.keys() == small.keys() and len(big) >= 2
    for name in big:
        assert big[name].tobytes() == small[name].tobytes(), name
