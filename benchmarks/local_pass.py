"""One rank's pass over its rows: the compiled fused kernels against the NumPy reference
and against the memory-read bandwidth.

On one process with one BLAS thread, for dense X (float64 and float32, n = 64 and 256)
and CSR X (``data make --density``'s rows: Zipf-like column popularity, about 40 values a
row), times the loss-and-gradient
sums of the reference kernels (``reference_sums``: NumPy row blocks, scipy.sparse), the
compiled fused kernel, and the fused kernel without the loss (``need_loss=False``). The
bandwidth is the best of several ``X.sum()`` runs over the same array (for CSR: over
its float64 ``data``), measured beside the evaluations; "of bw" is the array's bytes
(CSR: ``data`` and ``indices``) over a median evaluation's time, against that bandwidth.
Every loss on the same rows; "vs logistic" is a loss's fused time over logistic's on
those rows. Medians; absolute times vary by machine, the ratios in one run are what to
compare.

Usage: python benchmarks/local_pass.py [--mb MB] [--repeats R] [--json OUT.json]
"""

import argparse
import json
import platform
import time

import numpy as np
from threadpoolctl import threadpool_limits

from mpigd.io.synthetic import sparse_rows, zipf_popularity
from mpigd.kernels import compiled, dense, sparse
from mpigd.kernels.losses import make_loss


def seconds(repeats, fn, *args, best=False, **kwargs):
    fn(*args, **kwargs)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return float(np.min(times) if best else np.median(times))


def time_case(label, X, y, theta, loss, repeats, stored_bytes, bandwidth, reference, fused):
    row = {"case": label, "loss": loss.name, "bytes": stored_bytes, "bandwidth": bandwidth}
    row["reference_s"] = seconds(repeats, reference, X, y, theta, loss)
    row["fused_s"] = seconds(repeats, fused, X, y, theta, loss)
    row["gradient_only_s"] = seconds(repeats, fused, X, y, theta, loss, need_loss=False)
    for key in ("reference", "fused", "gradient_only"):
        row[f"{key}_of_bw"] = stored_bytes / row[f"{key}_s"] / bandwidth
    row["speedup"] = row["reference_s"] / row["fused_s"]
    return row


#: The losses timed, and the parameters of those that have one (the defaults).
LOSSES = ("linear", "logistic", "softmax", "poisson", "gamma", "tweedie", "huber", "svm")


def targets(rng, rows: int) -> dict:
    """Targets each loss accepts: 0/1, classes 0..3, counts and positive amounts."""
    binary = (rng.random(rows) < 0.5).astype(np.float64)
    counts = rng.poisson(1.0, rows).astype(np.float64)
    amounts = rng.gamma(2.0, 0.5, rows)
    return {
        "linear": amounts, "logistic": binary, "svm": binary, "huber": amounts,
        "softmax": rng.integers(0, 4, rows).astype(np.float64), "poisson": counts,
        "tweedie": counts * amounts, "gamma": amounts,
    }  # fmt: skip


def relative_to_logistic(results: list[dict]) -> None:
    """Each row's fused time over logistic's on the same rows, as ``vs_logistic``."""
    logistic = {r["case"]: r["fused_s"] for r in results if r["loss"] == "logistic"}
    for r in results:
        r["vs_logistic"] = r["fused_s"] / logistic[r["case"]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512, help="size of dense float64 X in MB")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    if compiled.name() != "compiled":
        raise SystemExit(f"compiled kernels off: {compiled.why_not}")
    rng = np.random.default_rng(0)
    results = []
    for n in (64, 256):
        rows = (args.mb << 20) // (8 * n)
        y = targets(rng, rows)
        for dtype in (np.float64, np.float32):
            X = rng.standard_normal((rows, n)).astype(dtype)
            read = seconds(args.repeats, X.sum, best=True)
            for name in LOSSES:
                loss = make_loss(name, 4)
                theta = 0.1 * rng.standard_normal((n + 1) * loss.n_outputs)
                label = f"dense {rows:,} x {n} {np.dtype(dtype).name}"
                results.append(time_case(
                    label, X, y[name], theta, loss, args.repeats,
                    X.nbytes, X.nbytes / read, dense.reference_sums, compiled.dense_sums,
                ))  # fmt: skip
            del X
    rows, features = (args.mb << 20) // (12 * 40), 262_144
    X = sparse_rows(rng, rows, features, 40 / features, zipf_popularity(features), np.float64)
    y = targets(rng, rows)
    stored = X.data.nbytes + X.indices.nbytes
    read = X.data.nbytes / seconds(args.repeats, X.data.sum, best=True)  # float64 values
    theta = 0.1 * rng.standard_normal(features + 1)
    label = f"CSR {rows:,} x {features:,}, {X.nnz:,} values"
    for name in (name for name in LOSSES if name != "softmax"):  # single-output
        results.append(time_case(
            label, X, y[name], theta, make_loss(name), args.repeats, stored, read,
            sparse.reference_sums, compiled.csr_sums,
        ))  # fmt: skip
    relative_to_logistic(results)

    print(
        f"# {platform.machine()}, numpy {np.__version__}, 1 BLAS thread, median of "
        f"{args.repeats}; 'of bw': share of the best X.sum() read bandwidth"
    )
    print(
        f"{'case':36} {'loss':9} {'read GB/s':>9} {'reference':>10} {'fused':>8} "
        f"{'grad only':>9} {'speed-up':>8} {'ref of bw':>9} {'fused of bw':>11} "
        f"{'vs logistic':>11}"
    )
    for r in results:
        print(
            f"{r['case']:36} {r['loss']:9} {r['bandwidth'] / 1e9:9.1f} "
            f"{r['reference_s'] * 1e3:8.1f}ms "
            f"{r['fused_s'] * 1e3:6.1f}ms {r['gradient_only_s'] * 1e3:7.1f}ms "
            f"{r['speedup']:8.2f} {r['reference_of_bw']:9.0%} {r['fused_of_bw']:11.0%} "
            f"{r['vs_logistic']:11.2f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": platform.machine(), "results": results}, f, indent=1)


if __name__ == "__main__":
    with threadpool_limits(limits=1, user_api="blas"):
        main()
