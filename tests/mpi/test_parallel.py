"""The MPI helpers' pure parts; their collective behaviour is tested under mpiexec."""

import os
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import mpi_launch, run_mpi

from mpigd.errors import MpigdError
from mpigd.host import parse_bytes
from mpigd.parallel import agree


class Gathered:
    """Stands in for a communicator whose ranks passed ``messages`` to ``allgather``."""

    def __init__(self, messages):
        self.messages, self.size = messages, len(messages)

    def allgather(self, mine):
        return self.messages


def agreed_message(messages):
    with pytest.raises(MpigdError) as info:
        agree(Gathered(messages), None)
    return str(info.value)


def test_no_error_anywhere_raises_nothing():
    agree(Gathered([None, None, None]), None)


def test_the_same_error_everywhere_names_no_rank():
    assert agreed_message(["bad file"] * 3) == "bad file"


def test_errors_on_some_ranks_name_them():
    assert agreed_message([None, "NaN", None, "NaN"]) == "NaN (on ranks 1, 3)"
    assert agreed_message(["a", "b", None]) == "a (on rank 0); b (on rank 1)"
    many = agreed_message(["x"] * 10 + [None])
    assert many == "x (on ranks 0-9)"
    scattered = agreed_message((["x", None] * 10)[:19])
    assert scattered == "x (on ranks 0, 2, 4, 6, 8, 10, 12, 14 and 2 more)"


def rows_error(count, start, stop, example="2"):
    template = "d.h5: 'X' holds {count} NaN values in rows {rows} (e.g. {example})"
    return MpigdError.in_rows(template, count, start, stop, example)


def test_the_same_problem_in_many_ranks_rows_is_one_sentence():
    size = 64
    every = agreed_message([rows_error(1, 10 * r, 10 * r + 10) for r in range(size)])
    assert every == "d.h5: 'X' holds 64 NaN values in rows 0:640 (e.g. 2)"
    some = [
        rows_error(r, 10 * r, 10 * r + 10, str(r)) if r in (1, 2, 3, 7) else None for r in range(8)
    ]
    assert agreed_message(some) == (
        "d.h5: 'X' holds 13 NaN values in rows 10:40, 70:80 (e.g. 1) (on ranks 1-3, 7)"
    )


def test_the_error_class_and_its_exit_status_survive_agreement():
    from mpigd.errors import Diverged

    with pytest.raises(Diverged, match="blew up"):
        agree(Gathered([None, Diverged("blew up")]), None)


@pytest.mark.parametrize(
    "text, value",
    [("512", 512), ("4K", 4096), ("1.5G", 1.5 * 2**30), ("2GiB", 2 * 2**30), ("3m", 3 * 2**20)],
)
def test_memory_sizes(text, value):
    assert parse_bytes(text) == value


def test_library_version_drops_the_nul_open_mpi_appends(monkeypatch):
    from mpigd import parallel

    monkeypatch.setattr(parallel.MPI, "Get_library_version", lambda: "Open MPI v5.0.11\x00")
    assert parallel.library_version() == "Open MPI v5.0.11"


@pytest.mark.parametrize(
    ("variable", "launcher"),
    [
        ("SLURM_STEP_NUM_TASKS", "srun"),
        ("PMI_SIZE", "mpiexec (PMI)"),
        ("OMPI_COMM_WORLD_SIZE", "Open MPI's mpirun"),
    ],
)
def test_launch_mismatch_names_the_launcher_and_the_fix(monkeypatch, variable, launcher):
    from mpigd.parallel import launch_mismatch

    for name in ("SLURM_STEP_NUM_TASKS", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "4")
    problem = launch_mismatch(1)
    assert problem.startswith(f"{launcher} started 4 processes ({variable}=4)")
    assert "--mpi=pmi2" in problem
    assert launch_mismatch(4) is None  # the world the launcher started
    monkeypatch.setenv(variable, "1")
    assert launch_mismatch(1) is None  # one process is not a mismatch


def test_launcher_rank_reads_the_launcher_numbering(monkeypatch):
    from mpigd.parallel import launcher_rank

    for name in ("SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert launcher_rank() == 0
    monkeypatch.setenv("PMI_RANK", "3")
    assert launcher_rank() == 3


def test_a_collective_inside_rank_local_work_is_a_bug_raised_at_once():
    from mpi4py import MPI

    from mpigd.parallel import CollectiveInLocalWork, allreduce_sum, on_root, rank_local

    comm = MPI.COMM_SELF
    with pytest.raises(CollectiveInLocalWork, match="allreduce_sum is collective"):
        with rank_local(comm):
            allreduce_sum(comm, np.zeros(1))
    with pytest.raises(CollectiveInLocalWork, match="on_root"):
        with rank_local(comm, root=0):
            on_root(comm, lambda: None)
    buffer = np.ones(2)
    allreduce_sum(comm, buffer)  # outside the block collectives work again
    assert buffer.tolist() == [1.0, 1.0]


def test_rank_local_and_on_root_agree_on_errors_and_share_results():
    from mpi4py import MPI

    from mpigd.parallel import on_root, rank_local

    comm = MPI.COMM_SELF
    with pytest.raises(MpigdError, match="bad rows"):
        with rank_local(comm):
            raise MpigdError("bad rows")
    assert on_root(comm, lambda: 42) == 42
    assert on_root(comm, lambda: {"a": 1}, share=True) == {"a": 1}
    with pytest.raises(MpigdError, match="disk full"):
        on_root(comm, lambda: (_ for _ in ()).throw(MpigdError("disk full")))


# ------------------------------------------------------------- the deadline on reductions


def test_a_rank_gone_silent_ends_the_job_with_one_line():
    start = time.monotonic()
    proc = run_mpi(3, "tests/mpi/mpi_deadline.py", 30, 2, env={"MPIGD_COLLECTIVE_TIMEOUT": "2"})
    took = time.monotonic() - start
    assert proc.returncode != 0 and took < 20, (took, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mpigd: ")]
    assert len(lines) == 1, proc.stderr  # rank 0 reports; the others would after it
    assert "rank 0: a collective call waited more than 2 s" in lines[0]
    assert "done" not in proc.stdout


@pytest.mark.slow
def test_a_suspended_job_is_not_taken_for_a_lost_node():
    """SIGSTOP for 4 s (a suspended job) with a 2 s deadline: the job goes on after SIGCONT."""
    launch = mpi_launch(2, "tests/mpi/mpi_deadline.py", 7, env={"MPIGD_COLLECTIVE_TIMEOUT": "2"})
    job = subprocess.Popen(**launch, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        pids = [int(pid) for pid in job.stdout.readline().split()]
        assert len(pids) == 2, pids
        time.sleep(1.0)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(4.0)
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        out, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0 and "done" in out, err


@pytest.mark.slow
def test_a_rank_slow_in_its_own_work_is_not_taken_for_a_lost_one():
    """Rank 1 works 4 s longer inside rank_local with a 2 s deadline: the agreement that
    ends the block waits for it (work of any length), and the job goes on."""
    code = (
        "import time\n"
        "from mpi4py import MPI\n"
        "from mpigd.parallel import rank_local\n"
        "comm = MPI.COMM_WORLD\n"
        "with rank_local(comm):\n"
        "    time.sleep(4 if comm.rank == 1 else 0)\n"
        "print('passed', flush=True)\n"
    )
    proc = run_mpi(2, "-c", code, env={"MPIGD_COLLECTIVE_TIMEOUT": "2"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("passed") == 2
