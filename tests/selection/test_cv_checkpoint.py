"""Checkpoints of a cross-validation: a signal, a crash or the end of a job's time at any
evaluation, and a resumed job that ends with the uninterrupted run's record and model."""

import json
import os
import shutil
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
from conftest import mpi_launch, random_problem, run_mpi, write_h5
from mpi4py import MPI

import mpigd
from mpigd.errors import EXIT_PREEMPTED, MpigdError, Preempted
from mpigd.kernels import compiled
from mpigd.selection.objective import FoldObjectives
from mpigd.train.checkpoint import load_checkpoint

#: What a resumed run may count differently: it evaluates again where it stopped.
COUNTS = ("seconds", "passes", "evaluations", "fold_evaluations")
PATHS = {"l2": {"l2_path": "1:1e-4:5"}, "l1": {"l1_path": "0.1:0.001:4", "l2": 1e-3}}


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cv-checkpoint")
    X, y = random_problem("logistic", 300, 5, seed=3)
    three = (X[:, 0] > 0.5).astype(float) + (X[:, 1] > 0)
    Xl, yl = random_problem("linear", 300, 5, seed=3)
    return {
        "logistic": write_h5(folder / "logistic.h5", X, y),
        "softmax": write_h5(folder / "softmax.h5", X, three),
        "linear": write_h5(folder / "linear.h5", Xl, yl),
    }


def options(kind):
    return {"comm": MPI.COMM_SELF, "folds": 4, "tol": 1e-9, "standardize": True, **PATHS[kind]}


def assert_same_run(resumed, reference):
    """Every entry of the record but the counts, and the final model, as if never
    stopped: bit for bit with the compiled sweep of single-output models, which sums each
    fold model on its own; to rounding with the NumPy/BLAS sweep (softmax, or
    MPIGD_KERNELS=numpy), whose products of several fold models round differently when
    other models share them."""
    exact = reference.record["model"] != "softmax" and compiled.name() == "compiled"
    rtol = 0 if exact else 1e-9
    for key, value in reference.record.items():
        if key in ("val", "val_mean", "val_std"):
            np.testing.assert_allclose(resumed.record[key], value, rtol=rtol, atol=0, err_msg=key)
        elif key not in COUNTS:
            assert resumed.record[key] == value, key
    # each fold model evaluates again at most the iteration under way (a few trial
    # steps), the evaluation cut off and the one at its resumed point
    more = np.array(resumed.record["fold_evaluations"]) - reference.record["fold_evaluations"]
    assert (more >= 0).all() and more.max() <= 6, more
    np.testing.assert_allclose(resumed.model.coef, reference.model.coef, rtol=rtol, atol=0)
    np.testing.assert_allclose(resumed.model.intercept, reference.model.intercept, rtol=rtol)


@pytest.fixture
def at_evaluation(monkeypatch):
    """``at_evaluation(n, act)``: run ``act()`` when the fold models' n-th evaluation
    starts (a signal to this process, or a crash)."""

    def arrange(n, act):
        call, count = FoldObjectives.__call__, [0]

        def counting(self, points):
            count[0] += 1
            if count[0] == n:
                act()
            return call(self, points)

        monkeypatch.setattr(FoldObjectives, "__call__", counting)

    return arrange


@pytest.mark.parametrize(
    "model, kind", [("logistic", "l2"), ("linear", "l2"), ("softmax", "l2"), ("logistic", "l1")]
)
@pytest.mark.parametrize("later", [False, True])  # in the first penalty, or the second
def test_a_signal_checkpoints_every_fold_model_and_resume_continues_exactly(
    problems, tmp_path, at_evaluation, monkeypatch, model, kind, later
):
    data, ck = problems[model], tmp_path / "ck.h5"
    reference = mpigd.cv(data, model, **options(kind))
    first = max(reference.record["fold_evaluations"][0])  # the first penalty's evaluations
    at = first + 2 if later else 3
    at_evaluation(at, lambda: os.kill(os.getpid(), signal.SIGUSR1))
    count = len(reference.record[kind])
    where = f"SIGUSR1 in penalty {1 + later} of {count}, after {at} evaluations; checkpoint"
    with pytest.raises(Preempted, match=where):
        mpigd.cv(data, model, checkpoint=ck, **options(kind))
    monkeypatch.undo()
    step = load_checkpoint(ck).state["step"]
    assert step == (1 if later else 0)
    resumed = mpigd.cv(data, model, checkpoint=ck, resume=ck, **options(kind))
    assert_same_run(resumed, reference)


def test_a_crash_resumes_from_the_last_periodic_checkpoint(problems, tmp_path, at_evaluation):
    data, ck = problems["logistic"], tmp_path / "ck.h5"
    reference = mpigd.cv(data, "logistic", **options("l2"))

    def crash():
        raise RuntimeError("node lost")

    at_evaluation(10, crash)
    with pytest.raises(RuntimeError, match="node lost"):
        mpigd.cv(data, "logistic", checkpoint=ck, checkpoint_every=4, **options("l2"))
    assert load_checkpoint(ck).state["n_evals"] == 7  # written before the 8th evaluation
    resumed = mpigd.cv(data, "logistic", resume=ck, **options("l2"))
    assert_same_run(resumed, reference)


def test_a_signal_after_the_path_leaves_only_the_final_fit(problems, tmp_path, monkeypatch):
    data, ck = problems["logistic"], tmp_path / "ck.h5"
    reference = mpigd.cv(data, "logistic", **options("l2"))
    validation, count = FoldObjectives.validation, [0]

    def validating(self, *args):
        count[0] += 1
        if count[0] == 5:  # the last penalty's: no evaluation comes after it
            os.kill(os.getpid(), signal.SIGTERM)
        return validation(self, *args)

    monkeypatch.setattr(FoldObjectives, "validation", validating)
    with pytest.raises(Preempted, match="SIGTERM after the last penalty"):
        mpigd.cv(data, "logistic", checkpoint=ck, **options("l2"))
    monkeypatch.undo()
    assert load_checkpoint(ck).state["step"] == 5
    resumed = mpigd.cv(data, "logistic", resume=ck, **options("l2"))
    assert_same_run(resumed, reference)
    assert resumed.record["passes"] == reference.record["passes"]  # nothing done twice


@pytest.mark.filterwarnings("ignore:not converged")  # the train checkpoint's 3 iterations
@pytest.mark.slow
def test_a_signal_on_one_rank_after_the_path_stops_every_rank(problems, tmp_path):
    ck = tmp_path / "ck.h5"
    proc = run_mpi(2, "tests/mpi/mpi_cv_checkpoint.py", problems["logistic"], ck, timeout=120)
    assert proc.returncode == 0, proc.stderr
    outcomes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcomes[0].startswith("SIGUSR1 after the last penalty; checkpoint written")
    assert outcomes[1].startswith("a signal on another rank after the last penalty")
    assert load_checkpoint(ck).state["step"] == 4


def test_a_damaged_checkpoint_is_refused_in_one_line(problems, tmp_path, at_evaluation):
    data, ck = problems["logistic"], tmp_path / "ck.h5"
    at_evaluation(5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(Preempted):
        mpigd.cv(data, "logistic", checkpoint=ck, **options("l2"))
    damaged = tmp_path / "damaged.h5"
    for damage, message in [
        ("fold1.theta", r"its fold1.theta is not 6 finite numbers"),
        ("fold0.state.pairs_y", r"fold model 0: its state lacks pairs_y"),
        ("fold2.state.nit", r"fold model 2: its state lacks nit"),
    ]:
        shutil.copyfile(ck, damaged)
        with h5py.File(damaged, "a") as f:
            if damage.endswith("theta"):
                f[f"state/{damage}"][0] = np.nan
            elif damage in f["state"]:
                del f[f"state/{damage}"]
            else:
                del f["state"].attrs[damage]
        with pytest.raises(
            MpigdError,
            match=f"cannot resume from {damaged}: its state is not that of this "
            rf"cross-validation \({message}\); it is not this run's checkpoint",
        ):
            mpigd.cv(data, "logistic", resume=damaged, **options("l2"))
    with pytest.raises(MpigdError, match=r"\(checkpoint_every\) must be a whole number >= 1, got"):
        mpigd.cv(data, "logistic", checkpoint=ck, checkpoint_every=0, **options("l2"))


@pytest.mark.filterwarnings("ignore:not converged")  # the train checkpoint's 3 iterations
def test_resume_refuses_a_checkpoint_of_another_run(problems, tmp_path):
    data, ck = problems["logistic"], tmp_path / "ck.h5"
    mpigd.cv(data, "logistic", checkpoint=ck, **options("l2"))
    before = ck.read_bytes()
    for change, message in [
        ({"folds": 5}, "its --folds is 4, but this run's is 5"),
        ({"l2_path": "1:1e-4:6"}, "its penalty path is '1.0,"),
        ({"seed": 1}, "its --seed is 0, but this run's is 1"),
        ({"metric": "accuracy"}, "its --metric is 'log_loss', but this run's is 'accuracy'"),
    ]:
        with pytest.raises(MpigdError, match=f"cannot resume from {ck}: {message}"):
            mpigd.cv(data, "logistic", resume=ck, **{**options("l2"), **change})
    with pytest.raises(MpigdError, match="written by optimizer 'cv-lbfgs', not 'cv-nesterov'"):
        mpigd.cv(data, "logistic", resume=ck, **options("l1"))
    other = write_h5(tmp_path / "other.h5", *random_problem("logistic", 300, 5, seed=4))
    with pytest.raises(MpigdError, match="it was written for other data: sampled rows"):
        mpigd.cv(other, "logistic", resume=ck, **options("l2"))
    trained = tmp_path / "train.h5"
    mpigd.fit(
        data, "logistic", comm=MPI.COMM_SELF, checkpoint=trained, checkpoint_every=1, max_iter=3
    )
    with pytest.raises(MpigdError, match="written by optimizer 'lbfgs', not 'cv-lbfgs'"):
        mpigd.cv(data, "logistic", resume=trained, **options("l2"))
    assert ck.read_bytes() == before


@pytest.mark.slow
def test_mpiexec_cv_stops_on_sigterm_and_resumes_with_another_rank_count(tmp_path):
    """SIGTERM to mpiexec mid-path at P = 3: exit 75, one line, no final model; the job
    resumed at P = 2 ends with the uninterrupted P = 3 run's choice and metrics."""
    X, y = random_problem("logistic", 40_000, 8, seed=11)
    data = write_h5(tmp_path / "d.h5", X, y)
    ck, out = tmp_path / "ck.h5", tmp_path / "m.h5"
    args = [
        "-m", "mpigd", "cv", data, "--model", "logistic", "--folds", "5", "--l2-path",
        "1e-1:1e-6:10", "--tol", "1e-9", "--json",
    ]  # fmt: skip
    reference = run_mpi(3, *args, tmp_path / "ref.json", "--out", tmp_path / "ref.h5", "--quiet")
    assert reference.returncode == 0, reference.stderr
    job = subprocess.Popen(
        **mpi_launch(3, *args, tmp_path / "cv.json", "--out", out, "--checkpoint", ck),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for line in job.stdout:  # wait until the table has begun
            if line.strip().startswith("1.000e-01"):
                break
        job.send_signal(signal.SIGTERM)  # to mpiexec, which forwards it to every rank
        start = time.monotonic()
        _, stderr = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == EXIT_PREEMPTED and time.monotonic() - start < 30, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("mpigd: ")]
    assert len(lines) == 1 and "mpigd: preempted: SIGTERM in penalty " in lines[0], stderr
    assert not out.exists() and not (tmp_path / "cv.json").exists()
    assert 1 <= load_checkpoint(ck).state["step"] <= 10

    resumed = run_mpi(2, *args, tmp_path / "cv.json", "--out", out, "--resume", ck, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming with 2 ranks from a checkpoint written by 3" in resumed.stderr
    want = json.loads((tmp_path / "ref.json").read_text())
    got = json.loads((tmp_path / "cv.json").read_text())
    np.testing.assert_allclose(got["val"], want["val"], rtol=1e-8)
    assert got["chosen"] == want["chosen"] and got["best_l2_1se"] == want["best_l2_1se"]
    final, expected = mpigd.load_model(out), mpigd.load_model(tmp_path / "ref.h5")
    np.testing.assert_allclose(final.coef, expected.coef, rtol=1e-6)
