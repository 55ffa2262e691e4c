"""Why local_sums works in cache-sized row blocks: time one rank's gradient pass.

Compares, on one process with one BLAS thread, the whole-slice pass (``X @ w`` then
``X.T @ r``, widening float32 X to float64 first) with the blocked pass of
``mpigd.kernels.dense.local_sums``, and a plain read of X (``X.sum()``) as the memory-read
reference. Prints medians over repeats and ratios; absolute times vary by machine.

Usage: python benchmarks/local_pass.py [ROWS] [FEATURES] [REPEATS]
"""

import platform
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from mpigd.kernels.dense import local_sums
from mpigd.kernels.losses import make_loss


def whole_slice(X, y, theta, loss):
    X64 = np.asarray(X, dtype=np.float64)
    values, dz = loss.values_and_derivative(X64 @ theta[:-1] + theta[-1], y)
    return values.sum(), np.append(X64.T @ dz, dz.sum())


def median_seconds(repeats, fn, *args):
    fn(*args)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(rows=1_000_000, features=64, repeats=7):
    rng = np.random.default_rng(0)
    theta = 0.1 * rng.standard_normal(features + 1)
    y = (rng.random(rows) < 0.5).astype(np.float64)
    print(
        f"# {platform.processor() or platform.machine()}, numpy {np.__version__}, "
        f"1 BLAS thread, {rows:,} x {features}, median of {repeats}"
    )
    print(
        f"{'dtype':8} {'loss':9} {'read X':>8} {'whole':>8} {'blocked':>8} "
        f"{'speed-up':>8} {'blocked GB/s':>12} {'of read':>8}"
    )
    for dtype in (np.float64, np.float32):
        X = rng.standard_normal((rows, features)).astype(dtype)
        read = median_seconds(repeats, X.sum)
        for name in ("linear", "logistic"):
            loss = make_loss(name)
            whole = median_seconds(repeats, whole_slice, X, y, theta, loss)
            blocked = median_seconds(repeats, local_sums, X, y, theta, loss)
            print(
                f"{np.dtype(dtype).name:8} {name:9} {read:8.4f} {whole:8.4f} {blocked:8.4f} "
                f"{whole / blocked:8.2f} {X.nbytes / blocked / 1e9:12.2f} "
                f"{read / blocked:8.0%}"
            )


if __name__ == "__main__":
    with threadpool_limits(limits=1, user_api="blas"):
        main(*map(int, sys.argv[1:]))
