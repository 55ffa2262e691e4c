"""How fast mpigd.io.parse reads LIBSVM text, against its reference and scikit-learn.

    python benchmarks/parse_speed.py [--mb 50] [--repeats 3]

Generates about MB megabytes of random LIBSVM text in memory (40 pairs a line, increasing
indices, values written with "%.6g") and times, on the same bytes, ``libsvm_lines`` with
the compiled parser (values converted, and the counting pass ``values=False``), the same
with the reference parser (``MPIGD_KERNELS=numpy``), and scikit-learn's
``load_svmlight_file``. Prints the median MB/s of each.
"""

import argparse
import io
import os
import time

import numpy as np

from mpigd.io import parse


def libsvm_text(megabytes: float, pairs: int = 40, features: int = 100_000, seed: int = 0):
    """Random LIBSVM text of about ``megabytes``, ``pairs`` pairs a line."""
    rng = np.random.default_rng(seed)
    lines, size = [], 0
    while size < megabytes * 1e6:
        index = np.sort(rng.choice(features, pairs, replace=False)) + 1
        value = rng.standard_normal(pairs)
        label = "+1" if rng.random() < 0.5 else "-1"
        line = label + "".join(f" {i}:{v:.6g}" for i, v in zip(index, value, strict=True)) + "\n"
        lines.append(line)
        size += len(line)
    return "".join(lines).encode()


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def with_kernels(choice: str, fn):
    """``fn`` run with ``MPIGD_KERNELS=choice``."""

    def run():
        before = os.environ.get("MPIGD_KERNELS")
        os.environ["MPIGD_KERNELS"] = choice
        try:
            return fn()
        finally:
            if before is None:
                del os.environ["MPIGD_KERNELS"]
            else:
                os.environ["MPIGD_KERNELS"] = before

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = libsvm_text(args.mb)
    megabytes = len(data) / 1e6
    cases = {
        "compiled, values=True": with_kernels(
            "compiled", lambda: parse.libsvm_lines(data, path="bench", first_line=1)
        ),
        "compiled, values=False": with_kernels(
            "compiled", lambda: parse.libsvm_lines(data, path="bench", first_line=1, values=False)
        ),
        "reference (MPIGD_KERNELS=numpy)": with_kernels(
            "numpy", lambda: parse.libsvm_lines(data, path="bench", first_line=1)
        ),
    }
    try:
        from sklearn.datasets import load_svmlight_file
    except ImportError:
        print("scikit-learn is not installed: its reader is left out")
    else:
        cases["sklearn load_svmlight_file"] = lambda: load_svmlight_file(io.BytesIO(data))
    print(f"{megabytes:.1f} MB of LIBSVM text, 40 pairs a line; median of {args.repeats}")
    for label, fn in cases.items():
        seconds = median_seconds(fn, args.repeats)
        print(f"{label:34s} {megabytes / seconds:8.1f} MB/s  ({seconds:.3f} s)")


if __name__ == "__main__":
    main()
