"""mpigd across hosts: a cluster of network namespaces (launch/netns-cluster.sh) on this
machine, MPI between hosts over TCP on virtual Ethernet, a lost node both ways.

Each host has its own network, hostname, IPC, process and /tmp namespaces, so MPI cannot
take a shared-memory shortcut between hosts. mpiexec runs on the cluster's login host
and starts its proxies in the hosts through launch/netns-rsh. The cluster is made once
for the module and removed afterwards, also when a test fails; the tests skip, saying
why, where namespaces cannot be made (not root, no iproute2).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, random_problem, write_h5
from slurm_jobs import wait_for_job

from mpigd import load_model

pytestmark = pytest.mark.cluster

CLUSTER = ROOT / "launch" / "netns-cluster.sh"
LAUNCHER = ROOT / "launch" / "netns-rsh"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
#: The deadline on a reduction in the lost-link test (seconds).
DEADLINE = 8


def cluster(*args, check=True, **kwargs):
    return subprocess.run(
        ["bash", str(CLUSTER), *map(str, args)],
        capture_output=True, text=True, check=check, stdin=subprocess.DEVNULL, **kwargs,
    )  # fmt: skip


@pytest.fixture(scope="module")
def public(tmp_path_factory):
    """A folder every user can enter (munged, a daemon of its own user, keeps its socket
    there), shared with the hosts like the test folders; removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="mpigd-cluster-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory, public):
    """Two hosts, node1 and node2; the test folders are shared with them."""
    if os.geteuid() != 0:
        pytest.skip("the namespace cluster needs root (network namespaces, mounts)")
    if not MPIEXEC.exists():
        pytest.skip(f"no mpiexec beside {sys.executable}")
    if "nothing is up" not in cluster("status", check=False).stdout:
        pytest.skip(
            "a namespace cluster is up already (launch/netns-cluster.sh status): not "
            "taking it down; `launch/netns-cluster.sh down` if it is a stale one"
        )
    base = tmp_path_factory.getbasetemp()
    made = cluster("up", 2, "--share", base, "--share", public, check=False)
    if made.returncode != 0:
        cluster("down", check=False)
        pytest.skip(f"cannot make the namespace cluster here: {made.stderr.strip()[-300:]}")
    try:
        yield ["node1", "node2"]
    finally:
        cluster("down", check=False)


def launch(folder: Path, layout: str, ranks: int, *args, env=None, timeout=120, background=False):
    """``mpiexec -hosts LAYOUT -n RANKS python ARGS`` from the login host, in ``folder``."""
    command = [
        "bash", str(CLUSTER), "login", "env", f"PATH={os.environ['PATH']}",
        "MPIGD_NUM_THREADS=1", "OMP_NUM_THREADS=1", *(f"{k}={v}" for k, v in (env or {}).items()),
        str(MPIEXEC), "-launcher", "ssh", "-launcher-exec", str(LAUNCHER), "-hosts", layout,
        "-n", str(ranks), sys.executable, *map(str, args),
    ]  # fmt: skip
    options = dict(cwd=folder, stdin=subprocess.DEVNULL, text=True)
    if background:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)
    return subprocess.run(command, capture_output=True, timeout=timeout, **options)


def rx_bytes(host: str) -> int:
    return int(cluster("run", host, "cat", "/sys/class/net/eth0/statistics/rx_bytes").stdout)


def test_ranks_run_on_their_hosts_and_talk_over_the_links(hosts, tmp_path):
    before = rx_bytes("node2")
    proc = launch(tmp_path, "node1:2,node2:2", 4, ROOT / "tests/mpi/mpi_cluster.py",
                  tmp_path / "r.json", 8)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    received = rx_bytes("node2") - before
    reports = json.loads((tmp_path / "r.json").read_text())
    assert [r["host"] for r in reports] == ["node1", "node1", "node2", "node2"]
    assert all(r["node_ranks"] == 2 and r["sum_ok"] for r in reports)
    # Five Allreduces of 8 MiB: node2's link carries megabytes, not control messages only.
    assert received > 5 * 8 * 2**20, received


def test_the_memory_estimate_counts_the_ranks_of_each_node(hosts, tmp_path):
    proc = launch(tmp_path, "node1:3,node2:1", 4, ROOT / "tests/mpi/mpi_cluster.py",
                  tmp_path / "r.json", 0.01)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    reports = json.loads((tmp_path / "r.json").read_text())
    assert [(r["host"], r["node_ranks"]) for r in reports] == [("node1", 3)] * 3 + [("node2", 1)]
    assert [r["ranks_in_budget"] for r in reports] == [3, 3, 3, 1]


def _train(tmp_path, layout, ranks, name, *extra, **kwargs):
    return launch(
        tmp_path, layout, ranks, "-m", "mpigd", "train", tmp_path / "d.h5", "--model",
        "logistic", "--optimizer", "gd", "--lr", "0.5", "--max-iter", 2000, "--tol", 0,
        "--ftol", 0, "--out", tmp_path / f"{name}.h5", "--quiet", *extra, **kwargs,
    )  # fmt: skip


@pytest.fixture(scope="module")
def reference(hosts, tmp_path_factory):
    """The uninterrupted run, 2 hosts x 2 ranks, and the same on one host with 4 ranks."""
    folder = tmp_path_factory.mktemp("reference")
    write_h5(folder / "d.h5", *random_problem("logistic", 30_000, 8, seed=9))
    for name, layout in (("two-hosts", "node1:2,node2:2"), ("one-host", "node1:4")):
        proc = _train(folder, layout, 4, name)
        assert proc.returncode == 0, proc.stderr
    return folder


def test_two_hosts_equal_one_host(reference):
    two, one = load_model(reference / "two-hosts.h5"), load_model(reference / "one-host.h5")
    assert two.info["iterations"] == one.info["iterations"] == 2000
    np.testing.assert_allclose(two.coef, one.coef, rtol=1e-10, atol=1e-12)
    assert two.intercept == pytest.approx(one.intercept, rel=1e-10)


@pytest.mark.parametrize("how", ["killed", "cut off"])
def test_a_lost_node_ends_the_job_and_the_rest_resumes(reference, tmp_path, how):
    (tmp_path / "d.h5").symlink_to(reference / "d.h5")
    checkpoint = tmp_path / "ck.h5"
    env = {"MPIGD_COLLECTIVE_TIMEOUT": DEADLINE}
    job = _train(tmp_path, "node1:2,node2:2", 4, "never", "--checkpoint", checkpoint,
                 "--checkpoint-every", 50, env=env, background=True)  # fmt: skip
    try:
        for _ in range(600):  # a checkpoint written: the job is well under way
            if checkpoint.exists() or job.poll() is not None:
                break
            time.sleep(0.1)
        assert job.poll() is None, job.communicate()
        lost = time.monotonic()
        if how == "killed":  # every process of the host but its first, which holds it up
            cluster("run", "node2", "bash", "-c", "kill -9 $(pgrep -v -x sleep)", check=False)
        else:
            cluster("link", "node2", "down")
        _, stderr = job.communicate(timeout=90)
        ended = time.monotonic() - lost
    finally:
        if job.poll() is None:
            job.kill()
        cluster("link", "node2", "up", check=False)
    assert job.returncode != 0 and ended < 60, (ended, stderr)
    if how == "cut off":
        lines = [line for line in stderr.splitlines() if line.startswith("mpigd: ")]
        assert len(lines) == 1 and "a node, or the network between nodes, is lost" in lines[0]
    else:  # the launcher reports it (hydra: several lines, naming the broken connection)
        assert "[mpiexec@login]" in stderr, stderr
    assert not (tmp_path / "never.h5").exists()
    # The surviving host resumes from the last checkpoint, with 2 ranks instead of 4.
    proc = _train(tmp_path, "node1:2", 2, "resumed", "--resume", checkpoint)
    assert proc.returncode == 0, proc.stderr
    resumed, whole = load_model(tmp_path / "resumed.h5"), load_model(reference / "two-hosts.h5")
    assert resumed.info["iterations"] == 2000
    np.testing.assert_allclose(resumed.coef, whole.coef, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------- SLURM across nodes


@pytest.fixture(scope="module")
def slurm(hosts, public):
    """SLURM on the two hosts: slurmctld on the login host, a slurmd on each node.
    Yields ``sbatch(folder, *args) -> (status, log)``, run on the login host, the status
    as ``sbatch --wait`` would return it (:func:`slurm_jobs.wait_for_job`)."""
    if subprocess.run(["which", "slurmctld"], capture_output=True).returncode != 0:
        pytest.skip("no SLURM here (tests/launch/test_slurm.py installs it where apt-get can)")
    state = public / "slurm"  # on the shared file system, like an NFS home
    env = dict(os.environ, MPIGD_SLURM_HOSTS=" ".join(hosts), MPIGD_SLURM_PORT="7117")
    script = ["bash", str(ROOT / "launch/slurm/local-cluster.sh")]
    up = subprocess.run([*script, "start", state], env=env, capture_output=True, text=True,
                        timeout=300)  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr

        on_login = ["bash", str(CLUSTER), "login", "env", f"SLURM_CONF={state}/slurm.conf"]

        def sbatch(folder, *args):
            """Submit on the login host; the exit status sbatch --wait would return."""
            done = subprocess.run(
                [*on_login, f"MPIGD_VENV={sys.prefix}", f"PATH={os.environ['PATH']}", "sbatch",
                 "--parsable", "--output=job-%j.out", *map(str, args)],
                cwd=folder, capture_output=True, text=True, timeout=60,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            job = done.stdout.strip().split(";")[0]
            assert job.isdigit(), done.stderr
            status = wait_for_job(job, [*on_login, "scontrol"], timeout=300)
            return status, (folder / f"job-{job}.out").read_text()

        yield sbatch
    finally:
        subprocess.run([*script, "stop", state], env=env, capture_output=True, timeout=60)


FLIGHTS = ROOT / "data" / "flights.h5"
TRAIN = [ROOT / "launch/slurm/train.sbatch", FLIGHTS, "--model=logistic", "--out=model.h5"]


@pytest.mark.slurm
def test_slurm_trains_across_nodes_as_one_job(slurm, tmp_path):
    status, log = slurm(tmp_path, "--nodes=2", "--ntasks-per-node=2", *TRAIN, "--l2=1e-4")
    assert status == 0, log
    assert "4 tasks on 2 node(s)" in log and "4 ranks" in log
    across = load_model(tmp_path / "model.h5")
    here = tmp_path / "here"
    here.mkdir()
    proc = launch(here, "node1:4", 4, "-m", "mpigd", "train", FLIGHTS, "--model", "logistic",
                  "--l2", "1e-4", "--out", here / "model.h5", "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(across.coef, load_model(here / "model.h5").coef, rtol=1e-10)


@pytest.mark.slurm
def test_slurm_time_limit_checkpoints_and_resubmission_across_nodes(slurm, tmp_path):
    """As tests/launch/test_slurm.py's time-limit test, with the job's ranks on two nodes: USR1
    before the limit reaches every rank through srun, the checkpoint is written, and the
    resubmitted job resumes from it on both nodes."""
    forever = [*TRAIN, "--optimizer=gd", "--lr=0.5", "--tol=0", "--ftol=0"]
    status, log = slurm(tmp_path, "--nodes=2", "--ntasks-per-node=2", "--time=2",
                        "--signal=B:USR1@55", *forever, "--max-iter=100000000")  # fmt: skip
    assert status == 75, log
    stopped = re.search(r"mpigd: preempted: SIGUSR1 at iteration (\d+)", log)
    assert stopped, log
    (checkpoint,) = tmp_path.glob("mpigd-train-*.ckpt.h5")  # named by the job's arguments
    assert not (tmp_path / "model.h5").exists()
    until = int(stopped[1]) + 5
    status, log = slurm(tmp_path, "--nodes=2", "--ntasks-per-node=2", *forever,
                        f"--max-iter={until}")  # fmt: skip
    assert status == 0, log
    assert "resuming from" in log and "4 tasks on 2 node(s)" in log
    assert load_model(tmp_path / "model.h5").info["iterations"] == until
    assert not checkpoint.exists()  # the finished run removed it
