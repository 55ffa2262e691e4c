"""Sparse logistic regression, mpigd under mpiexec against scikit-learn, to the same optimum.

    python benchmarks/sparse_vs_sklearn.py [--rows M] [--features N] [--per-row K]
        [--l2 L2] [--ranks P] [--repeats R] [--out PREFIX]

Makes a CSR problem with ``mpigd data make --density`` (Zipf-like column popularity, K
values per row), finds its optimum f* with scikit-learn at a tight tolerance, then times
whole processes, start-up and reading included: ``mpiexec -n P mpigd train`` and a
Python process that reads the same CSR arrays and fits
``LogisticRegression(solver="lbfgs", C=1/(l2 m))`` (the same objective), each with the
loosest tolerance whose objective is within 1e-6 (relative) of f*, chosen in an untimed
run. One BLAS thread everywhere. The two commands run in turn, R pairs; the record keeps
every time and the median of the pairwise ratios. Writes PREFIX.json and PREFIX.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

GAP = 1e-6
TOLERANCES = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MPIGD_NUM_THREADS": "1"}

SKLEARN = """
import sys, h5py, numpy as np, scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
path, C, tol, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
with h5py.File(path) as f:
    g = f["X"]
    parts = (g["data"][:], g["indices"][:], g["indptr"][:])
    X = sp.csr_matrix(parts, shape=tuple(g.attrs["shape"]))
    y = f["y"][:]
model = LogisticRegression(C=C, tol=tol, max_iter=100_000).fit(X, y)
np.save(out, np.append(model.coef_.ravel(), model.intercept_))
"""


def load(path: Path) -> tuple[sp.csr_matrix, np.ndarray]:
    with h5py.File(path) as f:
        g = f["X"]
        shape = tuple(g.attrs["shape"])
        X = sp.csr_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=shape)
        return X, f["y"][:]


def objective(X, y, theta, l2: float) -> float:
    """mpigd's objective: mean log-loss + (l2/2)||w||^2 (scikit-learn's with C = 1/(l2 m))."""
    z = X @ theta[:-1] + theta[-1]
    return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * theta[:-1] @ theta[:-1])


def run(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=ENV, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def mpigd_command(args, data: Path, tol: float, out: Path) -> list[str]:
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    return [
        *(mpiexec, "-n", str(args.ranks), sys.executable, "-m", "mpigd", "train", str(data)),
        *("--model", "logistic", "--l2", str(args.l2), "--tol", str(tol)),
        *("--ftol", "0", "--max-iter", "100000", "--out", str(out), "--quiet"),
    ]


def sklearn_command(data: Path, C: float, tol: float, out: Path) -> list[str]:
    return [sys.executable, "-c", SKLEARN, str(data), repr(C), repr(tol), str(out)]


def mpigd_theta(out: Path) -> np.ndarray:
    with h5py.File(out) as f:
        return np.append(f["coef"][:], f["intercept"][()])


def loosest(name, command, theta, X, y, l2, f_star) -> tuple[float, float]:
    """The loosest tolerance that reaches f* within GAP, and its gap (untimed)."""
    for tol in TOLERANCES:
        subprocess.run(command(tol), check=True, env=ENV, stdout=subprocess.DEVNULL)
        gap = (objective(X, y, theta(), l2) - f_star) / abs(f_star)
        if gap <= GAP:
            return tol, gap
    raise SystemExit(f"{name} did not reach {GAP} of the optimum")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--features", type=int, default=2**18)
    parser.add_argument("--per-row", type=float, default=40.0)
    parser.add_argument("--l2", type=float, default=1e-5)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/sparse-vs-sklearn")
    args = parser.parse_args()

    folder = Path(os.environ.get("TMPDIR", tempfile.gettempdir()))
    data = folder / f"mpigd-sparse-{args.rows}-{args.features}-{args.per_row:g}.h5"
    if not data.exists():
        density = args.per_row / args.features
        subprocess.run(
            [
                *(sys.executable, "-m", "mpigd", "data", "make", str(data)),
                *("--rows", str(args.rows), "--features", str(args.features)),
                *("--density", repr(density), "--seed", "1", "--quiet"),
            ],
            check=True,
        )
    X, y = load(data)
    m = X.shape[0]
    C = 1.0 / (args.l2 * m)
    reference = folder / "mpigd-sparse-reference.npy"
    subprocess.run(sklearn_command(data, C, 1e-12, reference), check=True, env=ENV)
    f_star = objective(X, y, np.load(reference), args.l2)

    ours_out, theirs_out = folder / "mpigd-sparse-model.h5", folder / "mpigd-sparse-sk.npy"
    ours = lambda tol: mpigd_command(args, data, tol, ours_out)  # noqa: E731
    theirs = lambda tol: sklearn_command(data, C, tol, theirs_out)  # noqa: E731
    our_tol, our_gap = loosest("mpigd", ours, lambda: mpigd_theta(ours_out), X, y, args.l2, f_star)
    sk_tol, sk_gap = loosest(
        "scikit-learn", theirs, lambda: np.load(theirs_out), X, y, args.l2, f_star
    )
    times = {"mpigd": [], "sklearn": []}
    for _ in range(args.repeats):
        times["mpigd"].append(run(ours(our_tol)))
        times["sklearn"].append(run(theirs(sk_tol)))
    ratios = [s / o for o, s in zip(times["mpigd"], times["sklearn"], strict=True)]
    record = {
        "rows": m,
        "features": X.shape[1],
        "nnz": int(X.nnz),
        "values_per_row": X.nnz / m,
        "l2": args.l2,
        "ranks": args.ranks,
        "f_star": f_star,
        "gap_target": GAP,
        "mpigd": {"tol": our_tol, "gap": our_gap, "seconds": times["mpigd"]},
        "sklearn": {"tol": sk_tol, "gap": sk_gap, "seconds": times["sklearn"]},
        "speedup_median": statistics.median(ratios),
        "speedups": ratios,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
    }
    Path(args.out + ".json").write_text(json.dumps(record, indent=1))
    table = (
        f"## Sparse logistic regression: {m:,} x {X.shape[1]:,}, {X.nnz:,} values "
        f"({X.nnz / m:.1f} a row), l2 = {args.l2:g}; {os.cpu_count()} cores\n\n"
        "| | tolerance | gap to f* | seconds (median of "
        f"{args.repeats}, whole process) |\n|---|---|---|---|\n"
        f"| `mpiexec -n {args.ranks} mpigd train` | {our_tol:g} | {our_gap:.1e} | "
        f"{statistics.median(times['mpigd']):.2f} |\n"
        f"| scikit-learn lbfgs, 1 thread | {sk_tol:g} | {sk_gap:.1e} | "
        f"{statistics.median(times['sklearn']):.2f} |\n\n"
        f"scikit-learn / mpigd, median of pairwise ratios: {statistics.median(ratios):.2f}x\n"
    )
    Path(args.out + ".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
