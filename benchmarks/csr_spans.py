"""The CSR sweep's spans: one rank's loss-and-gradient pass over CSR rows, nanoseconds per
stored value, against the same sweep called on pieces of a few rows and against
scipy.sparse's two products.

The compiled CSR sweep gathers the predictors of a span of rows (up to ``SPAN_VALUES``
derivatives: 1M rows of one output) before it scatters their gradient terms, so that
the gathers (reading the weights at the rows' columns) and the scatters (adding into the
gradient at the same columns) each run for a long stretch. Called on pieces of
``--piece`` rows, each continuing the last one's sums (``after=``), the sweep alternates
between the two every piece, as it did every 64-row block before spans; the sums are
the same bits either way. scipy's ``X @ w`` and ``X.T @ r`` are the two passes apart.

Rows of about ``--per-row`` values over ``--features`` columns, Zipf-popular
(``data make``'s default) or flat; logistic loss; one process, alternated rounds,
medians. Absolute times vary by machine: compare the ratios within one run.

Usage: python benchmarks/csr_spans.py [--mb MB] [--rounds R] [--piece ROWS] [--json OUT]
"""

import argparse
import json
import os
import platform
import time

import numpy as np

from mpigd.io.synthetic import sparse_rows, zipf_popularity
from mpigd.kernels import compiled
from mpigd.kernels.losses import make_loss

CASES = (("zipf", 262_144, 40), ("flat", 262_144, 40), ("zipf", 1_048_576, 100))


def case(rng, popularity, features, per_row, mb, rounds, piece):
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

    timed = {
        "spans": lambda: compiled.csr_sweep(X, y, theta, loss, grad),
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
    return {"case": f"{popularity} {rows:,} x {features:,}, {X.nnz:,} values", "ns_per_value": ns}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512, help="bytes of data and indices, MB")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--piece", type=int, default=1024, help="rows of a piece")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    if compiled.name() != "compiled":
        raise SystemExit(f"compiled kernels off: {compiled.why_not}")
    rng = np.random.default_rng(0)
    results = [case(rng, *c, args.mb, args.rounds, args.piece) for c in CASES]
    print(
        f"# machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}; "
        f"ns per stored value, median of {args.rounds} alternated rounds"
    )
    names = list(results[0]["ns_per_value"])
    print(f"{'case':48} " + " ".join(f"{n:>18}" for n in names) + "  pieces/spans")
    for row in results:
        ns = row["ns_per_value"]
        ratio = ns[names[1]] / ns["spans"]
        print(f"{row['case']:48} " + " ".join(f"{ns[n]:18.2f}" for n in names) + f"  {ratio:12.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": platform.machine(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
