"""mpigd against its single-node peers on the same problem, to the same optimum.

    python benchmarks/peers/peers.py --layout dense [--rows M] [--features N] [--l2 L2]
        [--model {logistic,poisson}] [--optimizers auto newton]
        [--ranks 1 2] [--repeats R] [--out PREFIX]
    python benchmarks/peers/peers.py --layout sparse --rows 400000 --features 262144 \\
        --per-row 40 --l2 1e-5

Makes a logistic (or Poisson: counts) problem with ``mpigd data make`` (``--density`` for
CSR: Zipf-like column popularity, K values a row), finds its optimum f* with scikit-learn
at a tight tolerance, then times whole processes, start-up and reading included:
``mpiexec -n P mpigd train`` for each P, and a Python process that reads the same arrays
and fits ``LogisticRegression(solver="lbfgs", C=1/(l2 m))`` (or
``PoissonRegressor(alpha=l2)``: the same objective either way), and
the same with scikit-learn-intelex's patch (oneDAL) when it is installed, with one thread
and with as many as the most ranks. Each runs at the loosest tolerance whose objective is
within 1e-6 (relative) of f*, chosen in an untimed run. One BLAS thread everywhere (oneDAL
its own count). The commands run in turn, R rounds; the record keeps every time, each
tool's own training time (scikit-learn's ``fit``; mpigd's evaluations and Allreduce, its
start-up and read apart) and the medians. Writes PREFIX.json, PREFIX.md and PREFIX.png.
"""

from __future__ import annotations

import argparse
import importlib.util
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
import sys, time, h5py, numpy as np, scipy.sparse as sp
if sys.argv[5] == "intelex":
    import daal4py
    from sklearnex import patch_sklearn
    patch_sklearn()
    daal4py.daalinit(int(sys.argv[6]))  # oneDAL's threads
from sklearn.linear_model import LogisticRegression, PoissonRegressor
path, C, tol, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
poisson = sys.argv[7] == "poisson"  # C is then the alpha
with h5py.File(path) as f:
    g = f["X"]
    if isinstance(g, h5py.Group):
        parts = (g["data"][:], g["indices"][:], g["indptr"][:])
        X = sp.csr_matrix(parts, shape=tuple(g.attrs["shape"]))
    else:
        X = g[:]
    y = f["y"][:]
start = time.perf_counter()
if poisson:
    model = PoissonRegressor(alpha=C, tol=tol, max_iter=100_000).fit(X, y)
else:
    model = LogisticRegression(C=C, tol=tol, max_iter=100_000).fit(X, y)
print(time.perf_counter() - start)
np.save(out, np.append(model.coef_.ravel(), model.intercept_))
"""


def load(path: Path):
    with h5py.File(path) as f:
        g = f["X"]
        if isinstance(g, h5py.Group):
            shape = tuple(g.attrs["shape"])
            X = sp.csr_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=shape)
        else:
            X = g[:]
        return X, f["y"][:]


def objective(X, y, theta, l2: float, model: str = "logistic") -> float:
    """mpigd's objective: mean log-loss (or Poisson loss) + (l2/2)||w||^2, scikit-learn's
    with C = 1/(l2 m) (or alpha = l2)."""
    z = X @ theta[:-1] + theta[-1]
    losses = np.exp(z) - y * z if model == "poisson" else np.logaddexp(0.0, z) - y * z
    return float(np.mean(losses) + 0.5 * l2 * theta[:-1] @ theta[:-1])


class Peer:
    """One contender: how to run it at a tolerance, and what it reports."""

    def __init__(self, name, command, theta, training):
        self.name, self.command, self.theta, self.training = name, command, theta, training
        self.tol = self.gap = None
        self.seconds, self.train_seconds, self.parts = [], [], []

    def run(self, tol):
        start = time.perf_counter()
        done = subprocess.run(self.command(tol), check=True, env=ENV, capture_output=True)
        return time.perf_counter() - start, done.stdout.decode()

    def tune(self, X, y, l2, f_star, model):
        """The loosest tolerance that reaches f* within GAP (untimed)."""
        for tol in TOLERANCES:
            self.run(tol)
            gap = (objective(X, y, self.theta(), l2, model) - f_star) / abs(f_star)
            if gap <= GAP:
                self.tol, self.gap = tol, gap
                return
        raise SystemExit(f"{self.name} did not reach {GAP} of the optimum")

    def time_once(self):
        seconds, stdout = self.run(self.tol)
        self.seconds.append(seconds)
        train, parts = self.training(stdout)
        self.train_seconds.append(train)
        self.parts.append(parts)


def mpigd_peer(ranks, data, l2, out, optimizer="auto", model="logistic"):
    mpiexec = str(Path(sys.executable).parent / "mpiexec")

    def command(tol):
        return [
            *(mpiexec, "-n", str(ranks), sys.executable, "-m", "mpigd", "train", str(data)),
            *("--model", model, "--l2", str(l2), "--tol", str(tol)),
            *("--optimizer", optimizer),
            *("--ftol", "0", "--max-iter", "100000", "--out", str(out), "--quiet"),
        ]

    def theta():
        with h5py.File(out) as f:
            return np.append(f["coef"][:], f["intercept"][()])

    def training(_stdout):
        with h5py.File(out) as f:
            keys = ("startup", "read", "compute", "allreduce")
            parts = {k: float(f.attrs[f"time_{k}"]) for k in keys}
        return parts["compute"] + parts["allreduce"], parts

    name = f"mpiexec -n {ranks} mpigd train"
    if optimizer != "auto":
        name += f" --optimizer {optimizer}"
    return Peer(name, command, theta, training)


def sklearn_peer(flavour, data, C, out, threads=1, model="logistic"):
    def command(tol):
        return [
            *(sys.executable, "-c", SKLEARN, str(data), repr(C), repr(tol), str(out)),
            *(flavour, str(threads), model),
        ]

    many = "thread" if threads == 1 else "threads"
    name = f"scikit-learn lbfgs, {threads} {many}"
    if flavour == "intelex":
        name = f"scikit-learn-intelex lbfgs, {threads} {many}"
    return Peer(name, command, lambda: np.load(out), lambda stdout: (float(stdout.split()[-1]), {}))


def make_data(args, folder: Path) -> Path:
    stem = f"mpigd-{args.model}-{args.layout}-{args.rows}-{args.features}"
    data = folder / (stem + (f"-{args.per_row:g}.h5" if args.layout == "sparse" else ".h5"))
    if not data.exists():
        extra = ("--density", repr(args.per_row / args.features)) if args.layout == "sparse" else ()
        subprocess.run(
            [
                *(sys.executable, "-m", "mpigd", "data", "make", str(data)),
                *("--rows", str(args.rows), "--features", str(args.features)),
                *("--seed", "1", "--model", args.model, "--quiet", *extra),
            ],
            check=True,
        )
    return data


def report(args, X, peers, f_star) -> str:
    m, n = X.shape
    what = f"{m:,} x {n:,}"
    if sp.issparse(X):
        what += f", {X.nnz:,} values ({X.nnz / m:.1f} a row)"
    lines = [
        f"## {args.model.capitalize()} regression, {args.layout}: {what}, l2 = {args.l2:g}; "
        f"{os.cpu_count()} cores, median of {args.repeats}",
        "",
        "| | tolerance | gap to f* | wall s (whole process) | training s | speed-up, wall | "
        "speed-up, training |",
        "|---|---|---|---|---|---|---|",
    ]
    base = next(p for p in peers if p.name.startswith("scikit-learn lbfgs"))
    base_wall = statistics.median(base.seconds)
    base_train = statistics.median(base.train_seconds)
    for peer in peers:
        wall = statistics.median(peer.seconds)
        train = statistics.median(peer.train_seconds)
        lines.append(
            f"| `{peer.name}` | {peer.tol:g} | {peer.gap:.1e} | {wall:.2f} | {train:.2f} | "
            f"{base_wall / wall:.2f}x | {base_train / train:.2f}x |"
        )
    lines.append("")
    for peer in peers:
        if peer.parts and peer.parts[0]:
            parts = {k: statistics.median(p[k] for p in peer.parts) for k in peer.parts[0]}
            lines.append(
                f"- `{peer.name}`: " + ", ".join(f"{k} {v:.3f} s" for k, v in parts.items())
            )
    lines.append(
        "- training s: scikit-learn's `fit`; mpigd's evaluations and Allreduce (max over "
        "ranks). Speed-ups are against plain scikit-learn."
    )
    if not any("intelex" in p.name for p in peers):
        lines.append("- scikit-learn-intelex is not installed here: not measured.")
    return "\n".join(lines) + "\n"


def plot(args, peers, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [p.name.replace(", 1 thread", "") for p in peers]
    walls = [statistics.median(p.seconds) for p in peers]
    trains = [statistics.median(p.train_seconds) for p in peers]
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(peers) + 1.5))
    y = np.arange(len(peers))
    ax.barh(y + 0.2, walls, 0.4, label="whole process")
    ax.barh(y - 0.2, trains, 0.4, label="training")
    ax.set_yticks(y, names)
    ax.set_xlabel("seconds (median)")
    ax.set_title(f"{args.model} regression, {args.layout} {args.rows:,} x {args.features:,}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layout", choices=("dense", "sparse"), default="dense")
    parser.add_argument("--model", choices=("logistic", "poisson"), default="logistic")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--per-row", type=float, default=40.0, help="sparse: values a row")
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--optimizers", nargs="+", default=["auto"], help="mpigd's, each at every P"
    )
    parser.add_argument("--out", help="default: benchmarks/results/peers-LAYOUT")
    args = parser.parse_args()
    out = args.out or f"benchmarks/results/peers-{args.layout}" + (
        "" if args.model == "logistic" else f"-{args.model}"
    )

    # mpigd's modules byte-compiled, as a regular install leaves them (an editable one
    # under PYTHONDONTWRITEBYTECODE would compile them in every timed process; a read-only
    # install is left as it is)
    package = importlib.util.find_spec("mpigd").submodule_search_locations[0]
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], env=ENV, check=False)
    folder = Path(os.environ.get("TMPDIR", tempfile.gettempdir()))
    data = make_data(args, folder)
    X, y = load(data)
    model = args.model
    C = args.l2 if model == "poisson" else 1.0 / (args.l2 * X.shape[0])  # alpha, or C
    reference = sklearn_peer("plain", data, C, folder / "mpigd-peers-reference.npy", 1, model)
    reference.run(1e-12)
    f_star = objective(X, y, reference.theta(), args.l2, model)

    peers = [
        mpigd_peer(p, data, args.l2, folder / f"mpigd-peers-{p}-{o}.h5", o, model)
        for o in args.optimizers
        for p in args.ranks
    ]
    peers.append(sklearn_peer("plain", data, C, folder / "mpigd-peers-sk.npy", 1, model))
    if importlib.util.find_spec("sklearnex"):
        for threads in sorted({1, max(args.ranks)}):  # oneDAL alone, and on the cores mpigd has
            saved = folder / f"mpigd-peers-skx{threads}.npy"
            peers.append(sklearn_peer("intelex", data, C, saved, threads, model))
    for peer in peers:
        peer.tune(X, y, args.l2, f_star, model)
    for _ in range(args.repeats):
        for peer in peers:
            peer.time_once()

    record = {
        "model": model,
        "layout": args.layout,
        "rows": X.shape[0],
        "features": X.shape[1],
        "nnz": int(X.nnz) if sp.issparse(X) else None,
        "l2": args.l2,
        "f_star": f_star,
        "gap_target": GAP,
        "peers": [
            {k: getattr(p, k) for k in ("name", "tol", "gap", "seconds", "train_seconds", "parts")}
            for p in peers
        ],
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
    }
    Path(out + ".json").write_text(json.dumps(record, indent=1))
    table = report(args, X, peers, f_star)
    Path(out + ".md").write_text(table)
    plot(args, peers, out + ".png")
    print(table)


if __name__ == "__main__":
    main()
