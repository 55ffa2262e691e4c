"""Shared test helpers: small HDF5 problems, the plain-NumPy reference objective, and a
runner that launches real ``mpiexec``."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MPI_TIMEOUT = 120  # seconds; a deadlocked job fails the test instead of hanging CI


def write_h5(path, X, y, **datasets) -> Path:
    with h5py.File(path, "w") as f:
        f["X"] = X
        f["y"] = y
        for key, value in datasets.items():
            f[key] = value
    return Path(path)


#: The test parameters of the losses that have one.
POWER, EPSILON = 1.4, 1.0


def targets(kind: str, z: np.ndarray, rng) -> np.ndarray:
    """Targets of ``kind`` drawn around the predictors ``z`` (any shape for softmax:
    classes 0 .. 2)."""
    m = len(z)
    if kind in ("linear", "huber"):
        noise = rng.standard_normal(m)
        if kind == "huber":  # a few gross outliers
            noise[rng.random(m) < 0.1] *= 20
        return z + 0.1 * noise if kind == "linear" else z + noise
    if kind == "softmax":
        return rng.integers(0, 3, m).astype(np.float64)
    if kind == "poisson":
        return rng.poisson(np.exp(z)).astype(np.float64)
    if kind == "gamma":
        return rng.gamma(2.0, np.exp(z) / 2.0)
    if kind == "tweedie":  # compound Poisson-Gamma: exact zeros and positive amounts
        counts = rng.poisson(0.8 * np.exp(z))
        return np.where(counts > 0, rng.gamma(np.maximum(counts, 1) * 2.0, 0.6), 0.0)
    return (rng.random(m) < 1 / (1 + np.exp(-z))).astype(np.float64)  # logistic, svm


def random_problem(kind: str, m: int, n: int, seed: int = 0):
    """A well-conditioned random problem: X (m, n), y (m,)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n))
    w = rng.standard_normal(n) / np.sqrt(n)
    return X, targets(kind, X @ w + 0.3, rng)


def reference_loss(kind: str, z, y, power: float = POWER, epsilon: float = EPSILON):
    """Each row's loss and its derivative in z, written out from the README's table."""
    if kind == "linear":
        return (z - y) ** 2 / 2, z - y
    if kind == "logistic":
        return np.logaddexp(0.0, z) - y * z, 1 / (1 + np.exp(-z)) - y
    if kind == "poisson":
        return np.exp(z) - y * z, np.exp(z) - y
    if kind == "gamma":
        return z + y * np.exp(-z), 1 - y * np.exp(-z)
    if kind == "tweedie":
        p = power
        a, b = np.exp((2 - p) * z), y * np.exp((1 - p) * z)
        return a / (2 - p) - b / (1 - p), a - b
    if kind == "huber":
        r, e = y - z, epsilon
        inside = np.abs(r) <= e
        return np.where(inside, r**2 / 2, e * np.abs(r) - e**2 / 2), -np.clip(r, -e, e)
    t = 2 * y - 1  # svm
    h = np.maximum(0.0, 1 - t * z)
    return h**2, -2 * t * h


def reference_objective(kind: str, X, y, theta, l2: float = 0.0, **parameter):
    """The objective exactly as the README states it, in plain NumPy on the full data
    (``power`` or ``epsilon``: the loss's parameter, else the tests')."""
    w, b = theta[:-1], theta[-1]
    values, derivative = reference_loss(kind, X @ w + b, y, **parameter)
    m = len(y)
    loss = values.mean() + 0.5 * l2 * w @ w
    dz = derivative / m
    grad = np.append(X.T @ dz + l2 * w, dz.sum())
    return loss, grad


@functools.cache
def mpiexec() -> list[str]:
    """The launcher: $MPIGD_TEST_MPIEXEC, else the venv's mpiexec, else PATH's."""
    if os.environ.get("MPIGD_TEST_MPIEXEC"):
        return os.environ["MPIGD_TEST_MPIEXEC"].split()
    beside = Path(sys.executable).parent / "mpiexec"
    exe = str(beside) if beside.exists() else shutil.which("mpiexec")
    if exe is None:
        pytest.fail("no mpiexec found; install with: pip install -e '.[mpich,test]'")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    open_mpi = "Open MPI" in version or "OpenRTE" in version or "prte" in version.lower()
    return [exe, "--oversubscribe"] if open_mpi else [exe]


def mpi_launch(ranks: int, *args, env=None) -> dict:
    """Keyword arguments for ``subprocess.run`` or ``Popen`` of ``mpiexec -n ranks python ARGS``."""
    if os.environ.get("MPIGD_SANITIZED"):
        pytest.skip(
            "the sanitizer step (tests/sanitize.sh) runs in-process tests only: "
            "mpiexec's processes would load the ordinary build; the main step runs it"
        )
    env = {
        **os.environ,
        "MPIGD_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        **(env or {}),  # the caller's values win
    }
    return {
        "args": [*mpiexec(), "-n", str(ranks), sys.executable, *map(str, args)],
        "env": env,
        "cwd": ROOT,
        "text": True,
        "stdin": subprocess.DEVNULL,
    }


def run_mpi(ranks: int, *args, timeout: float = MPI_TIMEOUT, env=None):
    """Run ``python ARGS`` under ``mpiexec -n ranks`` and return the finished process."""
    launch = mpi_launch(ranks, *args, env=env)
    return subprocess.run(**launch, capture_output=True, timeout=timeout)


def run_mpi_commands(ranks: int, commands, spec: Path, outcomes=None, timeout=MPI_TIMEOUT):
    """Run several ``mpigd`` commands (argument lists) in one ``mpiexec -n ranks`` job
    (tests/mpi/mpi_commands.py), writing their list to ``spec``; return the finished
    process. One launch per rank count, not one per input. With ``outcomes`` (a path),
    every command runs whatever its status and each one's status, time and stderr are
    written there."""
    Path(spec).write_text(json.dumps([[str(arg) for arg in argv] for argv in commands]))
    script = ROOT / "tests" / "mpi" / "mpi_commands.py"
    extra = [] if outcomes is None else [outcomes]
    return run_mpi(ranks, script, spec, *extra, timeout=timeout)


def write_csr(path, X, y=None, key="X", **attrs) -> Path:
    """``X`` (anything scipy.sparse.csr_matrix takes) as a CSR group in anndata's layout,
    and ``y``; ``attrs`` override the group's attributes."""
    import scipy.sparse as sp

    X = sp.csr_matrix(X)
    with h5py.File(path, "a") as f:
        group = f.create_group(key)
        group.attrs.update(
            {"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": X.shape}
        )
        group.attrs.update(attrs)
        group["data"], group["indices"], group["indptr"] = X.data, X.indices, X.indptr
        if y is not None:
            f["y"] = y
    return Path(path)


def sparse_problem(kind: str, m: int, n: int, density: float = 0.1, seed: int = 0):
    """A random CSR problem with skewed column popularity and some empty rows."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n + 1)  # Zipf-like: a few columns are in most rows
    counts = rng.binomial(n, density, m)
    counts[:: max(1, m // 10)] = 0  # rows without non-zeros
    rows = np.repeat(np.arange(m), counts)
    columns = np.concatenate(
        [rng.choice(n, size=c, replace=False, p=popularity / popularity.sum()) for c in counts]
    )
    X = sp.csr_matrix((rng.standard_normal(len(rows)), (rows, columns)), shape=(m, n))
    X.sort_indices()
    w = rng.standard_normal(n) / np.sqrt(n * density)
    z = X @ w + 0.3
    if kind == "softmax":
        return X, (np.digitize(z, [-0.5, 0.5])).astype(np.float64)
    return X, targets(kind, z, rng)
