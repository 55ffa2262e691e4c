"""Bad input under real mpiexec at P = 1 and 3.

Every case asserts the exit status on every rank, one message from rank 0, that every
rank was done within BOUND seconds, and that the data file is byte-for-byte unchanged.
The cases run one after another in one job per rank count, each as ``python -m mpigd``
runs it (tests/mpi/mpi_commands.py); a whole job's exit status is checked by the tests
after them and by the command-line catalogue (tests/cli/test_catalogue*.py).
"""

import hashlib
import json
import os
import time

import h5py
import numpy as np
import pytest
from conftest import random_problem, run_mpi, run_mpi_commands, write_h5

from mpigd.errors import EXIT_DIVERGED, EXIT_INPUT, EXIT_OK

RANKS = [1, 3]
BOUND = 30.0  # seconds for a whole failing job, start-up included
M, N = 101, 3


def good_arrays(kind="logistic"):
    return random_problem(kind, M, N, seed=2)


def with_x(X):
    return lambda tmp: write_h5(tmp / "d.h5", X, good_arrays()[1])


def with_y(y):
    return lambda tmp: write_h5(tmp / "d.h5", good_arrays()[0], y)


def layout(**datasets):
    def build(tmp):
        with h5py.File(tmp / "d.h5", "w") as f:
            for key, value in datasets.items():
                f.create_group(key) if isinstance(value, str) else f.create_dataset(key, data=value)
        return tmp / "d.h5"

    return build


def good(tmp):
    return write_h5(tmp / "d.h5", *good_arrays())


def damaged(cut):
    def build(tmp):
        raw = bytearray(good(tmp).read_bytes())
        raw = cut(raw)
        (tmp / "d.h5").write_bytes(bytes(raw))
        return tmp / "d.h5"

    return build


def text_file(tmp):
    (tmp / "d.h5").write_text("x,y\n1,0\n")
    return tmp / "d.h5"


def corrupt(raw):
    raw[800:1600] = b"\xff" * 800  # object headers and symbol table
    return raw


def last_row(array_fn, value):
    def build(tmp):
        X, y = good_arrays()
        target = X[:, 0] if array_fn == "X" else y
        target[-1] = value  # only the last rank reads it
        return write_h5(tmp / "d.h5", X, y)

    return build


compound = np.zeros(M, dtype=[("a", "f8"), ("b", "f8")])
compound_2d = np.zeros((M, N), dtype=compound.dtype)

# id: (build data, extra options, extra env, exit status, message)
CASES = {
    "missing file": (lambda tmp: tmp / "none.h5", [], {}, EXIT_INPUT, "data file not found"),
    "not HDF5": (text_file, [], {}, EXIT_INPUT, "not an HDF5 file"),
    "truncated": (damaged(lambda raw: raw[: len(raw) // 2]), [], {}, EXIT_INPUT, "truncated"),
    "corrupt": (damaged(corrupt), [], {}, EXIT_INPUT, "truncated or corrupt"),
    "missing dataset": (good, ["--y-key", "target"], {}, EXIT_INPUT, "no dataset 'target'"),
    "group, not dataset": (
        layout(X=np.ones((M, N)), y="group"),
        [],
        {},
        EXIT_INPUT,
        "'y' is a group",
    ),
    "X not 2-D": (layout(X=np.ones(M), y=np.ones(M)), [], {}, EXIT_INPUT, "must be 2-D"),
    "X without rows": (
        layout(X=np.ones((0, N)), y=np.ones(0)),
        [],
        {},
        EXIT_INPUT,
        "needs rows and features",
    ),
    "X without columns": (
        layout(X=np.ones((M, 0)), y=np.ones(M)),
        [],
        {},
        EXIT_INPUT,
        "needs rows and features",
    ),
    "y wrong length": (with_y(np.ones(M - 1)), [], {}, EXIT_INPUT, "'y' has 100 rows"),
    "y wrong shape": (with_y(np.ones((M, 2))), [], {}, EXIT_INPUT, "'y' must be 1-D"),
    "compound X": (with_x(compound_2d), [], {}, EXIT_INPUT, "compound dtype"),
    "compound y": (with_y(compound), [], {}, EXIT_INPUT, "compound dtype"),
    "complex X": (with_x(np.ones((M, N)) * 1j), [], {}, EXIT_INPUT, "complex dtype"),
    "string y": (with_y(np.array([b"a"] * M)), [], {}, EXIT_INPUT, "non-numeric dtype"),
    "labels outside {0, 1}": (
        last_row("y", 3.0),
        [],
        {},
        EXIT_INPUT,
        "labels must be 0 or 1 (any two values: --labels auto); found 1 other values",
    ),
    "NaN in one slice": (last_row("X", np.nan), [], {}, EXIT_INPUT, "1 NaN or infinite values"),
    "inf in one slice": (last_row("y", np.inf), [], {}, EXIT_INPUT, "1 NaN or infinite values"),
    "softmax labels not integers": (
        with_y(np.where(np.arange(M) == M - 1, 1.5, np.arange(M) % 3.0)),
        ["--model", "softmax"],
        {},
        EXIT_INPUT,
        "class labels must be integers",
    ),
    "L1 with an optimizer that cannot": (
        good,
        ["--l1", "0.1", "--optimizer", "lbfgs"],
        {},
        EXIT_INPUT,
        "cannot handle an L1",
    ),
    "negative l2": (good, ["--l2", "-1"], {}, EXIT_INPUT, "l2 must be a finite number >= 0"),
    "zero step": (good, ["--lr", "0"], {}, EXIT_INPUT, "lr must be a finite number > 0"),
    "max-iter 0": (good, ["--max-iter", "0"], {}, EXIT_INPUT, "max_iter must be >= 1"),
    "unknown optimizer": (
        good,
        ["--optimizer", "adam"],
        {},
        EXIT_INPUT,
        "--optimizer 'adam': choose one of auto",
    ),
    "budget too small to stream the slice": (
        good,
        [],
        {"MPIGD_MEMORY_PER_RANK": "512"},
        EXIT_INPUT,
        "a memory budget of 512.0 B a rank is too little to stream",
    ),
    "output folder missing": (
        good,
        ["--out", "{tmp}/no/m.h5"],
        {},
        EXIT_INPUT,
        "output folder does not exist",
    ),
    "output is a folder": (good, ["--out", "{tmp}"], {}, EXIT_INPUT, "output path is a folder"),
    "checkpoint folder missing": (
        good,
        ["--checkpoint", "{tmp}/no/c.h5"],
        {},
        EXIT_INPUT,
        "output folder does not exist",
    ),
    "missing checkpoint": (
        good,
        ["--resume", "{tmp}/none.h5"],
        {},
        EXIT_INPUT,
        "checkpoint not found",
    ),
    "divergence": (
        good,
        ["--model", "linear", "--optimizer", "gd", "--lr", "1e4"],
        {},
        EXIT_DIVERGED,
        "training diverged",
    ),
    "integer X is accepted": (with_x(np.arange(M * N).reshape(M, N) % 5), [], {}, EXIT_OK, ""),
    "float32 X and (m, 1) y are accepted": (
        lambda tmp: write_h5(
            tmp / "d.h5", good_arrays()[0].astype(np.float32), good_arrays()[1][:, None]
        ),
        [],
        {},
        EXIT_OK,
        "",
    ),
}


def checksum(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def train(ranks, data, *options, env=None, model="logistic", out=None):
    """Run ``mpigd train`` under mpiexec; return (process, seconds)."""
    out = out or data.parent / "m.h5"
    start = time.monotonic()
    proc = run_mpi(
        ranks,
        "-m",
        "mpigd",
        "train",
        data,
        "--model",
        model,
        "--out",
        out,
        "--quiet",
        *options,
        env=env,
        timeout=2 * BOUND,
    )
    return proc, time.monotonic() - start


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """outcomes(P) -> {case: (every rank's status, seconds, stderr, data file, its checksum
    before, the previous model)}: ``mpigd train`` on each case's data, in a folder of its
    own. The cases without an environment of their own run in one mpiexec job per rank
    count (tests/mpi/mpi_commands.py), the others in a job each."""
    made = {}

    def run(ranks):
        root = tmp_path_factory.mktemp(f"failures-{ranks}")
        found, batch = {}, []
        for number, (case, (build, options, env, _, _)) in enumerate(CASES.items()):
            tmp = root / str(number)
            tmp.mkdir()
            data = build(tmp)
            before = checksum(data)
            options = [option.format(tmp=tmp) for option in options]
            previous = tmp / "m.h5"
            previous.write_bytes(b"the previous good model")
            if env:
                proc, seconds = train(ranks, data, *options, env=env)
                found[case] = {proc.returncode}, seconds, proc.stderr, data, before, previous
            else:
                command = ["train", data, "--model", "logistic", "--out", previous, "--quiet"]
                batch.append((case, [*command, *options], data, before, previous))
        commands = [command for _, command, *_ in batch]
        outcome_file = root / "outcomes.json"
        proc = run_mpi_commands(
            ranks, commands, root / "commands.json", outcome_file, timeout=len(commands) * BOUND
        )
        assert proc.returncode == 0, proc.stderr
        done = json.loads(outcome_file.read_text())
        for (case, _, *files), outcome in zip(batch, done, strict=True):
            found[case] = set(outcome["status"]), outcome["seconds"], outcome["stderr"], *files
        return found

    def get(ranks):
        if ranks not in made:
            made[ranks] = run(ranks)
        return made[ranks]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("ranks", RANKS)
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_ends_every_rank_with_one_message(outcomes, case, ranks):
    status, message = CASES[case][3:]
    statuses, seconds, stderr, data, before, previous = outcomes(ranks)[case]

    assert statuses == {status}, stderr  # the same status on every rank
    assert seconds < BOUND
    assert checksum(data) == before  # never written to
    assert "Traceback" not in stderr
    if status == EXIT_OK:
        return
    assert message in stderr
    assert stderr.count("error:") == 1, stderr
    assert previous.read_bytes() == b"the previous good model"  # nothing written over it


@pytest.mark.parametrize("ranks", RANKS)
def test_rank_local_problems_name_the_ranks(tmp_path, ranks):
    data = last_row("X", np.nan)(tmp_path)
    proc, _ = train(ranks, data)
    suffix = " (on rank 2)" if ranks == 3 else ""
    assert f"holds 1 NaN or infinite values in rows {M - M // ranks}:{M}{suffix}" in proc.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
@pytest.mark.parametrize("ranks", RANKS)
def test_read_only_output_folder(tmp_path, ranks):
    data = good(tmp_path)
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    proc, seconds = train(ranks, data, out=folder / "m.h5")
    assert proc.returncode == EXIT_INPUT and seconds < BOUND
    assert "output folder is not writable" in proc.stderr
