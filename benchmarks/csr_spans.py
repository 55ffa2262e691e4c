"""The CSR sweep's spans: one rank's loss-and-gradient pass over CSR rows, nanoseconds per
stored value, against the same sweep called on pieces of a few rows and against
scipy.sparse's two products.

The compiled CSR sweep gathers the predictors of a span of rows (up to ``SPAN_VALUES``
derivatives: 1M rows of one output) before it scatters their gradient terms, so that
the gathers (reading the weights at the rows' columns) and the scatters (adding into the
gradient at the same columns) each run for a long stretch. Called on pieces of
``--piece`` rows, each continuing the last one's sums (``after=``), the sweep alternates
between the two every piece (each piece is a span of its own); the sums are the same
bits either way. scipy's ``X @ w`` and ``X.T @ r`` are the two passes apart.

Rows of about ``--per-row`` values over ``--features`` columns, Zipf-popular
(``data make``'s default) or flat; logistic loss; one process, alternated rounds,
medians. Absolute times vary by machine: compare the ratios within one run.

With ``--against REV`` the kernel of git revision REV (its ``mpigd/kernels``, built with
the C compiler and the package's flags into a temporary folder, loaded beside this
build) is timed in the same rounds, on the same arrays, and its sums compared bit for
bit with this build's.

Usage: python benchmarks/csr_spans.py [--mb MB] [--rounds R] [--piece ROWS]
                                      [--against REV] [--json OUT]
"""

import argparse
import importlib.machinery
import importlib.util
import json
import os
import platform
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

from mpigd.io.synthetic import sparse_rows, zipf_popularity
from mpigd.kernels import compiled
from mpigd.kernels.losses import make_loss

CASES = (("zipf", 262_144, 40), ("flat", 262_144, 40), ("zipf", 1_048_576, 100))


ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["-O3", "-fopenmp-simd", "-fno-trapping-math", "-ffp-contract=off"]  # pyproject's


def kernel_of(rev: str, folder: str):
    """The ``_fused`` module of git revision ``rev``, built in ``folder``."""
    tree = Path(folder, "src")
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "mpigd/kernels"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    built = Path(folder, "_fused" + sysconfig.get_config_var("EXT_SUFFIX"))
    include = sysconfig.get_paths()["include"]
    compiler = os.environ.get("CC", "cc")
    source = tree / "mpigd/kernels/_fused.c"
    subprocess.run(
        [compiler, "-shared", "-fPIC", *FLAGS, f"-I{include}", str(source), "-o", str(built)],
        check=True,
    )
    loader = importlib.machinery.ExtensionFileLoader("against._fused", str(built))
    spec = importlib.util.spec_from_file_location("against._fused", built, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def minmax(a):
    return [float(np.min(a)), float(np.max(a))]


def sums_of(module, X, y, theta, loss, grad):
    """A call of ``module``'s ``csr_sums`` on these rows into ``grad``, returning the loss
    sum, in the calling convention of the module's ABI: 5 (the issue's kernel, 630bd36)
    takes no loss parameter, 5 and 6 write the gradient alone, 7 continues given sums.
    The module is built with today's flags (FLAGS), not necessarily its revision's."""
    rows = (*compiled._csr_arrays(X), *X.shape, y, compiled._NO_WEIGHTS)
    code, parameter = compiled._code(loss)
    if module.ABI == 7:
        return lambda: module.csr_sums(rows, (theta, code, parameter, 1, True), (grad, False, 0.0))
    if module.ABI == 6:
        return lambda: module.csr_sums(rows, (theta, code, parameter, 1, True), grad)
    if module.ABI == 5:
        return lambda: module.csr_sums(rows, (theta, code, 1, True), grad)
    raise SystemExit(f"the other build's kernel has ABI {module.ABI}; 5 to 7 can be called")


def case(rng, popularity, features, per_row, mb, rounds, piece, against=None):
    rows = (mb << 20) // (12 * per_row)
    weights = zipf_popularity(features) if popularity == "zipf" else None
    X = sparse_rows(rng, rows, features, per_row / features, weights, np.float64)
    y = (rng.random(rows) < 0.5).astype(np.float64)
    theta = 0.1 * rng.standard_normal(features + 1)
    w, r = theta[:-1].copy(), rng.standard_normal(rows)
    loss, grad = make_loss("logistic"), np.empty_like(theta)
    # pieces: the row slices made once, outside the timing
    slices = [X[s : s + piece] for s in range(0, rows, piece)]

    def by_pieces():
        total = None
        for k, part in enumerate(slices):
            ys = y[k * piece : (k + 1) * piece]
            total, _ = compiled.csr_sweep(part, ys, theta, loss, grad, after=total)

    timed = {"spans": lambda: compiled.csr_sweep(X, y, theta, loss, grad)}
    if against is not None:  # the same call as csr_sweep's, to the other build
        other = np.empty_like(theta)
        timed["against"] = sums_of(against, X, y, theta, loss, other)
    timed |= {
        f"pieces of {piece}": by_pieces,
        "scipy X@w + X.T@r": lambda: (X @ w, X.T @ r),
        "read (data.sum)": X.data.sum,
    }
    times = {name: [] for name in timed}
    for fn in timed.values():
        fn()  # warm-up
    for _ in range(rounds):
        for name, fn in timed.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    ns = {name: float(np.median(t)) / X.nnz * 1e9 for name, t in times.items()}
    row = {"case": f"{popularity} {rows:,} x {features:,}, {X.nnz:,} values", "ns_per_value": ns}
    if against is not None:
        mine = compiled.csr_sweep(X, y, theta, loss)
        theirs = timed["against"]()
        row["same_bits"] = bool(mine[0] == theirs and np.array_equal(mine[1], other))
        by_round = np.array(times["against"]) / np.array(times["spans"])
        row["against_over_spans_by_round"] = [float(np.median(by_round)), *minmax(by_round)]
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512, help="bytes of data and indices, MB")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--piece", type=int, default=1024, help="rows of a piece")
    parser.add_argument("--against", metavar="REV", help="also time this revision's kernel")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    if compiled.name() != "compiled":
        raise SystemExit(f"compiled kernels off: {compiled.why_not}")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        against = kernel_of(args.against, folder) if args.against else None
        results = [case(rng, *c, args.mb, args.rounds, args.piece, against) for c in CASES]
    print(
        f"# machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}; "
        f"ns per stored value, median of {args.rounds} alternated rounds"
        + (f"; against: the kernel of {args.against}" if args.against else "")
    )
    names = list(results[0]["ns_per_value"])
    piece = next(n for n in names if n.startswith("pieces"))
    extra = "  against/spans  by round (range)  same bits" if args.against else ""
    print(f"{'case':48} " + " ".join(f"{n:>18}" for n in names) + "  pieces/spans" + extra)
    for row in results:
        ns = row["ns_per_value"]
        line = f"{row['case']:48} " + " ".join(f"{ns[n]:18.2f}" for n in names)
        line += f"  {ns[piece] / ns['spans']:12.2f}"
        if args.against:
            mid, low, high = row["against_over_spans_by_round"]
            line += f"  {ns['against'] / ns['spans']:13.2f}  {mid:5.2f} ({low:.2f}-{high:.2f})"
            line += f" {row['same_bits']!s:>9}"
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            doc = {"machine": platform.machine(), "against": args.against, "results": results}
            json.dump(doc, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
