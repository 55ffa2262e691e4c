"""Checkpoint, resume, preemption and a killed rank, under real mpiexec at P = 1 and 3."""

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import mpi_launch, random_problem, run_mpi, run_mpi_commands, write_h5

from mpigd import load_model
from mpigd.errors import EXIT_INPUT, EXIT_OK, EXIT_PREEMPTED
from mpigd.train.checkpoint import Checkpoint, load_checkpoint

BOUND = 30.0  # seconds for a job to end after a failure or a signal
SHORT, LONG = 400, 3000  # iterations; LONG lasts a few seconds at P = 3 on 2 cores


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("checkpoint")


@pytest.fixture(scope="module")
def data(folder):
    """Badly scaled least squares: gradient descent needs thousands of iterations."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50_000, 8)) * np.geomspace(1, 30, 8)
    y = X @ rng.standard_normal(8) + 0.5 + 0.1 * rng.standard_normal(50_000)
    return write_h5(folder / "slow.h5", X, y)


@pytest.fixture(autouse=True)
def data_is_never_written(data):
    before = hashlib.sha256(data.read_bytes()).hexdigest()
    yield
    assert hashlib.sha256(data.read_bytes()).hexdigest() == before


def train_args(data, out, iterations, *options, optimizer="gd"):
    return ["-m", "mpigd", *train_command(data, out, iterations, *options, optimizer=optimizer)]


def train_command(data, out, iterations, *options, optimizer="gd"):
    return [
        "train",
        data,
        "--model",
        "linear",
        "--optimizer",
        optimizer,
        "--out",
        out,
        "--tol",
        "0",
        "--ftol",
        "0",
        "--max-iter",
        iterations,
        *options,
    ]


def train(ranks, data, out, iterations, *options, optimizer="gd"):
    args = train_args(data, out, iterations, "--quiet", *options, optimizer=optimizer)
    proc = run_mpi(ranks, *args)
    assert proc.returncode == EXIT_OK, proc.stderr
    return load_model(out)


@pytest.fixture(scope="module")
def reference(data, folder):
    """reference(P, iterations, optimizer): the model of a run that never stopped."""
    cache = {}

    def get(ranks, iterations, optimizer="gd"):
        key = ranks, iterations, optimizer
        if key not in cache:
            out = folder / f"reference-{ranks}-{iterations}-{optimizer}.h5"
            cache[key] = train(
                ranks, data, out, iterations, *EXTRA.get(optimizer, ()), optimizer=optimizer
            )
        return cache[key]

    return get


def assert_bit_identical(model, expected):
    assert model.coef.tobytes() == expected.coef.tobytes()
    assert model.intercept == expected.intercept
    assert model.history.tobytes() == expected.history.tobytes()


#: Iterations before the stop, per optimiser: each stops mid-run (L-BFGS and Newton
#: solve this least-squares problem in a few steps; sgd counts epochs).
HALF = {"gd": SHORT // 2, "nesterov": 60, "lbfgs": 6, "newton": 1, "sgd": 2}
#: SGD needs standardised features here: no one step size suits these columns.
EXTRA = {"sgd": ("--standardize",)}


@pytest.fixture(scope="module")
def resumes(data, folder):
    """resumes(P) -> {optimizer: (the first half's model, its checkpoint's iteration, the
    checkpoint, the resumed model, the model of a run that never stopped)}. Every
    optimiser's first half and uninterrupted run in one job, its resumed run in another
    (one launch per stage and rank count, not per optimiser)."""
    cache = {}

    def run(ranks):
        where = folder / f"resumes-{ranks}"
        where.mkdir()
        first, then = [], []
        for optimizer, half in HALF.items():
            extra, ck = EXTRA.get(optimizer, ()), where / f"{optimizer}-ck.h5"
            half_out, reference_out, resumed_out = (
                where / f"{optimizer}-{name}.h5" for name in ("half", "reference", "m")
            )
            options = ["--quiet", *extra]
            first += [
                train_command(data, half_out, half, *options, "--checkpoint", ck,
                              "--checkpoint-every", 1, optimizer=optimizer),
                train_command(data, reference_out, 2 * half, *options, optimizer=optimizer),
            ]  # fmt: skip
            then.append(
                train_command(data, resumed_out, 2 * half, *options, "--resume", ck,
                              optimizer=optimizer)
            )  # fmt: skip
        proc = run_mpi_commands(ranks, first, where / "first.json")
        assert proc.returncode == EXIT_OK, proc.stderr
        saved = {optimizer: load_checkpoint(where / f"{optimizer}-ck.h5") for optimizer in HALF}
        proc = run_mpi_commands(ranks, then, where / "then.json")
        assert proc.returncode == EXIT_OK, proc.stderr
        return {
            optimizer: (
                load_model(where / f"{optimizer}-half.h5"),
                saved[optimizer].state["nit"],
                where / f"{optimizer}-ck.h5",
                load_model(where / f"{optimizer}-m.h5"),
                load_model(where / f"{optimizer}-reference.h5"),
            )
            for optimizer in HALF
        }

    def get(ranks):
        if ranks not in cache:
            cache[ranks] = run(ranks)
        return cache[ranks]

    return get


@pytest.mark.parametrize("optimizer", list(HALF))
@pytest.mark.parametrize("ranks", [1, 3])
@pytest.mark.slow
def test_resume_is_bit_identical_to_a_run_that_never_stopped(resumes, ranks, optimizer):
    first, saved_at, ck, resumed, never_stopped = resumes(ranks)[optimizer]
    assert first.info["iterations"] == HALF[optimizer]
    assert saved_at == HALF[optimizer]
    assert resumed.info["resumed_from"] == str(ck)
    assert_bit_identical(resumed, never_stopped)


@pytest.mark.slow
def test_resume_with_another_rank_count_says_so(data, tmp_path, reference):
    ck = tmp_path / "ck.h5"
    train(3, data, tmp_path / "half.h5", SHORT // 2, "--checkpoint", ck)
    proc = run_mpi(2, *train_args(data, tmp_path / "m.h5", SHORT, "--quiet", "--resume", ck))
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "resuming with 2 ranks from a checkpoint written by 3" in proc.stderr
    expected = reference(3, SHORT)
    np.testing.assert_allclose(load_model(tmp_path / "m.h5").coef, expected.coef, rtol=1e-9)


@pytest.mark.parametrize("ranks", [1, 3])
@pytest.mark.slow
def test_resume_refuses_another_dataset_model_or_penalty(data, tmp_path, ranks):
    X, y = random_problem("logistic", 300, 4)
    binary = write_h5(tmp_path / "binary.h5", X, y)
    other = write_h5(tmp_path / "other.h5", X[::-1].copy(), y)
    ck = tmp_path / "ck.h5"
    train(ranks, binary, tmp_path / "m.h5", 5, "--checkpoint", ck, "--checkpoint-every", 5)
    before = ck.read_bytes()
    refused = [
        (other, [], "it was written for other data: sampled rows of"),
        (data, [], "its data shape is '300x4', but this run's is '50000x8'"),
        (binary, ["--model", "logistic"], "its --model is 'linear', but this run's is 'logistic'"),
        (binary, ["--l2", "0.5"], "its --l2 is 0.0, but this run's is 0.5"),
    ]
    commands = [
        train_command(dataset, tmp_path / "r.h5", 10, "--resume", ck, *options)
        for dataset, options, _ in refused
    ]
    outcomes = tmp_path / "outcomes.json"  # the four in one job, each run as mpigd runs it
    proc = run_mpi_commands(ranks, commands, tmp_path / "commands.json", outcomes)
    assert proc.returncode == 0, proc.stderr
    for (_, _, message), outcome in zip(refused, json.loads(outcomes.read_text()), strict=True):
        assert set(outcome["status"]) == {EXIT_INPUT} and outcome["seconds"] < BOUND
        assert f"cannot resume from {ck}: {message}" in outcome["stderr"]
        assert outcome["stderr"].count("error:") == 1
    assert ck.read_bytes() == before


def start(ranks, *args):
    return subprocess.Popen(
        **mpi_launch(ranks, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def wait(proc):
    start = time.monotonic()
    _, stderr = proc.communicate(timeout=BOUND)
    return proc.returncode, stderr, time.monotonic() - start


@pytest.mark.parametrize(
    "ranks, signum", [(1, signal.SIGTERM), (3, signal.SIGTERM), (3, signal.SIGUSR1)]
)
@pytest.mark.slow
def test_a_signal_checkpoints_every_rank_and_resume_completes(
    data, tmp_path, reference, ranks, signum
):
    ck = tmp_path / "ck.h5"
    args = train_args(
        data,
        tmp_path / "m.h5",
        LONG,
        "--checkpoint",
        ck,
        "--checkpoint-every",
        10**6,
        "--print-every",
        50,
    )
    proc = start(ranks, *args)
    for line in proc.stdout:  # wait until training is under way
        if line.strip().startswith("50 "):
            break
    proc.send_signal(signum)  # to mpiexec, which forwards it to every rank
    status, stderr, seconds = wait(proc)
    assert status == EXIT_PREEMPTED, stderr
    assert seconds < BOUND
    assert f"mpigd: preempted: {signum.name} at iteration" in stderr
    stopped_at = load_checkpoint(ck).state["nit"]
    assert 50 <= stopped_at < LONG
    assert not (tmp_path / "m.h5").exists()

    resumed = train(ranks, data, tmp_path / "m.h5", LONG, "--resume", ck)
    assert_bit_identical(resumed, reference(ranks, LONG))


def descendants(pid):
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rank_pids(launcher_pid):
    pids = []
    for pid in descendants(launcher_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mpigd" in cmdline and b"-m" in cmdline:
            pids.append(pid)
    return sorted(pids)


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_and_the_last_checkpoint_resumes(data, tmp_path, reference):
    ck = tmp_path / "ck.h5"
    proc = start(
        3,
        *train_args(
            data, tmp_path / "m.h5", LONG, "--quiet", "--checkpoint", ck, "--checkpoint-every", 100
        ),
    )
    deadline = time.monotonic() + BOUND
    while not ck.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert ck.exists() and proc.poll() is None, "no checkpoint while the run was going"
    ranks = rank_pids(proc.pid)
    assert len(ranks) == 3
    os.kill(ranks[1], signal.SIGKILL)
    status, _, seconds = wait(proc)
    assert status != EXIT_OK and seconds < BOUND
    assert not (tmp_path / "m.h5").exists()

    saved = load_checkpoint(ck).state["nit"]
    assert saved % 100 == 0 and 0 < saved < LONG
    resumed = train(3, data, tmp_path / "m.h5", LONG, "--resume", ck)
    assert_bit_identical(resumed, reference(3, LONG))


def test_a_failed_checkpoint_write_leaves_the_previous_one(tmp_path):
    path = tmp_path / "ck.h5"
    run = {"model": "linear", "l2": 0.0}
    Checkpoint("gd", {"theta": np.arange(3.0), "nit": 7, "step": 0.5}, run, 2).save(path)
    unstorable = {"theta": np.arange(3.0), "nit": 8, "extra": np.array([object()])}
    with pytest.raises(TypeError):
        Checkpoint("gd", unstorable, run, 2).save(path)  # fails after writing part of it
    saved = load_checkpoint(path)
    assert saved.state["nit"] == 7 and saved.state["step"] == 0.5
    np.testing.assert_array_equal(saved.state["theta"], np.arange(3.0))
    assert os.listdir(tmp_path) == ["ck.h5"]
    with h5py.File(path) as f:
        assert f.attrs["optimizer"] == "gd"


def test_normal_equations_checkpoint_and_resume(data, tmp_path):
    """The one-pass solver honours --checkpoint: its iteration is checkpointed, and
    resuming from the checkpoint returns the same solution."""
    ck, first, again = tmp_path / "ck.h5", tmp_path / "m1.h5", tmp_path / "m2.h5"
    model = train(
        2, data, first, 1, "--checkpoint", ck, "--checkpoint-every", 1, optimizer="normal"
    )
    saved = load_checkpoint(ck)
    assert saved.optimizer == "normal" and saved.state["nit"] == 1
    resumed = train(2, data, again, 1, "--resume", ck, optimizer="normal")
    assert_bit_identical(resumed, model)
