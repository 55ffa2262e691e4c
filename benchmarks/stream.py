"""What streaming rows from disk costs per evaluation, against the two things it must
overlap: reading the same bytes plainly, and evaluating the rows held in memory.

    mpiexec -n 2 python benchmarks/stream.py DATA.h5 --memory 512MiB [--evals 7] [--json OUT]

Under mpiexec, each rank on its own rows of DATA (dense or CSR, as training splits
them), in one run:

- ``read``: the rank's bytes of X read plainly, in the same blocks and order as a pass,
  with ``os.preadv`` into one reused buffer (what ``dd`` would do; warm page cache);
- ``memory``: one evaluation of the logistic objective (loss and gradient, one
  ``Allreduce``) over the rows held in memory;
- ``streamed``: the same evaluation streaming the rows in the blocks that ``--memory``
  gives, reads overlapped with the compiled kernel;
- ``cold read`` and ``cold streamed``: the first two again after the file's pages are
  dropped from the page cache (``posix_fadvise(DONTNEED)``, which needs no root), one
  pass each, ``--cold`` times in alternation (median): what a file larger than the RAM
  costs.

Medians over ``--evals`` (maximum over ranks of each); ratios within the run. The
targets: streamed <= 1.3 x max(read, memory), cold streamed >= 0.8 x cold read's rate.
"""

import argparse
import json
import os
import platform
import time

import numpy as np
from mpi4py import MPI

from mpigd.host import parse_bytes, resident_bytes
from mpigd.io.budget import block_bytes, held_bytes, settle_libraries
from mpigd.io.dataset import inspect_dataset, read_block
from mpigd.io.stream import StreamedRows
from mpigd.kernels.losses import make_loss
from mpigd.objective import Objective
from mpigd.parallel import memory_per_rank


def timed(comm, fn, repeats: int) -> float:
    """Median over ``repeats`` of the slowest rank's seconds for ``fn()``."""
    times = []
    for _ in range(repeats):
        comm.Barrier()
        start = time.perf_counter()
        fn()
        times.append(comm.allreduce(time.perf_counter() - start, op=MPI.MAX))
    return float(np.median(times))


def plain_reader(X: StreamedRows):
    """A pass's bytes read with preadv in the pass's blocks into one reused buffer (files
    whose X mpigd reads straight from the file: contiguous, or chunks in row order)."""
    offsets = X.raw_offsets
    itemsizes = [X.dtype.itemsize, X.index_dtype.itemsize] if X.csr else [X.dtype.itemsize]
    if None in offsets:
        raise SystemExit("the benchmark times files whose X can be read as bytes")
    if X.csr:
        spans = [(int(X.indptr[lo]), int(X.indptr[hi])) for lo, hi in X.bounds]
    else:
        spans = [(X.start + lo, X.start + hi) for lo, hi in X.bounds]
    most = max(b - a for a, b in spans) * max(itemsizes) * (1 if X.csr else X.shape[1])
    buffer = np.empty(max(1, most), dtype=np.uint8)

    def read() -> int:
        done = 0
        fd = os.open(X.info.path, os.O_RDONLY)
        try:
            for first, last in spans:
                for layout in offsets:
                    for at, size in layout.spans(first, last):
                        done += os.preadv(fd, [memoryview(buffer)[:size]], at)
        finally:
            os.close(fd)
        return done

    return read


def drop_cache(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--memory", type=parse_bytes, default=512 * 2**20)
    parser.add_argument("--evals", type=int, default=7)
    parser.add_argument("--block", type=parse_bytes, help="block bytes (default: --memory's)")
    parser.add_argument("--cold", type=int, default=3, help="cold passes of each kind")
    parser.add_argument("--json")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    info = inspect_dataset(args.data, "X", "y", None)
    settle_libraries(info.csr)
    budget = memory_per_rank(comm, args.memory)
    rows = -(-info.n_rows // comm.size)  # the most a rank holds (dense)
    # as training finds it, before any rows are read
    fixed = comm.allreduce(held_bytes(resident_bytes(), info, rows), op=MPI.MAX)
    block = int(args.block) if args.block else block_bytes(info, budget, fixed)
    held = read_block(info, comm.rank, comm.size)
    X = StreamedRows(info, held.start, held.stop, block)
    loss = make_loss("logistic")
    in_memory = Objective(comm, held.X, held.y, loss)
    streamed = Objective(comm, X, held.y, loss)
    theta = np.zeros(in_memory.size)
    read = plain_reader(X)
    for fn in (read, lambda: in_memory(theta), lambda: streamed(theta)):
        fn()  # warm the page cache and the kernels
    result = {
        "read": timed(comm, read, args.evals),
        "memory": timed(comm, lambda: in_memory(theta), args.evals),
        "streamed": timed(comm, lambda: streamed(theta), args.evals),
    }
    gap = max(abs(a - b) for a, b in zip(in_memory(theta)[1], streamed(theta)[1], strict=True))
    cold: dict[str, list[float]] = {"cold read": [], "cold streamed": []}
    for _ in range(args.cold):  # alternated: the disk's speed drifts between passes
        for name, fn in (("cold read", read), ("cold streamed", lambda: streamed(theta))):
            if comm.rank == 0:
                drop_cache(args.data)
            cold[name].append(timed(comm, fn, 1))
    result.update({name: float(np.median(times)) for name, times in cold.items()})
    if comm.rank != 0:
        return
    per_rank = X.pass_bytes
    record = {
        "data": os.path.abspath(args.data),
        "shape": f"{info.n_rows}x{info.n_features}",
        "layout": "csr" if info.csr else str(info.x_dtype),
        "ranks": comm.size,
        "memory": args.memory,
        "block_bytes": block,
        "pass_bytes_rank0": per_rank,
        "seconds": result,
        "streamed_over_max": result["streamed"] / max(result["read"], result["memory"]),
        "cold_rate_ratio": result["cold read"] / result["cold streamed"],
        "cold_seconds": cold,
        "max_gradient_difference": gap,
        "machine": f"{platform.node()}, {os.cpu_count()} cores",
    }
    for name, seconds in result.items():
        print(f"{name:14} {seconds:8.4f} s  {per_rank / seconds / 1e9:6.2f} GB/s a rank")
    print(f"streamed / max(read, memory) = {record['streamed_over_max']:.2f} (target <= 1.3)")
    print(f"cold streamed rate / cold read rate = {record['cold_rate_ratio']:.2f} (target >= 0.8)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
