"""How fast one rank's read of its rows is, against reading the same bytes plainly.

    python benchmarks/read.py DATA.h5 [--repeats R]

In one process, on a warm page cache (the first, untimed round loads it): the file's bytes
read into one fresh buffer with ``readinto`` (the file system's rate for this process,
like ``dd``), X read by h5py's ``read_direct`` in one call, and mpigd's ``read_block``
(X in blocks, each checked for NaN and inf while in cache, and y). Medians; GB/s over X's
bytes. Each read fills freshly allocated memory, as a rank's read does.
"""

import argparse
import os
import time

import h5py
import numpy as np

from mpigd.io.dataset import inspect_dataset, read_block


def median_seconds(fn, repeats):
    fn()  # warm the page cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    info = inspect_dataset(args.data, "X", "y", None)
    with h5py.File(args.data) as f:
        shape, dtype = f["X"].shape, f["X"].dtype
    x_bytes = int(np.prod(shape)) * dtype.itemsize

    def plain():
        buffer = np.empty(os.path.getsize(args.data), dtype=np.uint8)
        with open(args.data, "rb", buffering=0) as f:
            f.readinto(memoryview(buffer))

    def h5py_once():
        with h5py.File(args.data) as f:
            f["X"].read_direct(np.empty(shape, dtype=dtype))

    rows = [
        ("file bytes, readinto", median_seconds(plain, args.repeats), os.path.getsize(args.data)),
        ("X, h5py read_direct", median_seconds(h5py_once, args.repeats), x_bytes),
        ("X + y, mpigd read_block", median_seconds(lambda: read_block(info, 0, 1), args.repeats),
         x_bytes),
    ]  # fmt: skip
    print(f"# {args.data}: X {shape} {dtype}, median of {args.repeats}, warm page cache")
    for name, seconds, nbytes in rows:
        print(f"{name:26} {seconds:7.3f} s {nbytes / seconds / 1e9:6.2f} GB/s")


if __name__ == "__main__":
    main()
