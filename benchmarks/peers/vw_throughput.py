"""Throughput against Vowpal Wabbit: examples per second per pass over the same CSR rows.

    python benchmarks/peers/vw_throughput.py DATA.h5 [--ranks 1 2] [--out PREFIX]

DATA.h5 holds a CSR X and 0/1 labels y (``mpigd data make --density``). Vowpal Wabbit
(the ``vowpalwabbit`` package, its C++ learner driven by ``run_parser``) makes one online
pass of logistic SGD: first from its text format, which it parses and caches, then from
that binary cache. mpigd's pass is one evaluation (loss and full gradient over every row),
timed by ``mpiexec -n P mpigd bench run`` (median of 20 after 3 warm-ups; the read
excluded, as the cache pass excludes parsing). These are different algorithms (one SGD
pass against one exact gradient), so only rows per second per pass is compared: what it
costs each to touch every example once. Writes PREFIX.json and PREFIX.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def write_vw(data: Path, out: Path, block: int = 50_000) -> int:
    """The CSR rows of ``data`` as VW text (labels -1/+1, one namespace); the row count."""
    with h5py.File(data) as f, open(out, "w") as text:
        g, y = f["X"], f["y"][:]
        indptr = g["indptr"][:]
        for start in range(0, len(y), block):
            stop = min(start + block, len(y))
            lo, hi = indptr[start], indptr[stop]
            values, columns = g["data"][lo:hi], g["indices"][lo:hi]
            for i in range(start, stop):
                a, b = indptr[i] - lo, indptr[i + 1] - lo
                pairs = " ".join(
                    f"{c}:{v:.6g}" for c, v in zip(columns[a:b], values[a:b], strict=True)
                )
                text.write(f"{1 if y[i] > 0 else -1} |f {pairs}\n")
        return len(y)


def vw_pass(text: Path, cache: Path, bits: int) -> float:
    """Seconds for one VW pass (parsing text, or reading ``cache`` when it exists)."""
    from vowpalwabbit import Workspace

    args = f"-d {text} --cache_file {cache} --loss_function logistic -b {bits} --quiet"
    start = time.perf_counter()
    vw = Workspace(args)
    vw.run_parser()
    vw.finish()
    return time.perf_counter() - start


def mpigd_pass(data: Path, ranks: int, record: Path) -> float:
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    subprocess.run(
        [mpiexec, "-n", str(ranks), sys.executable, "-m", "mpigd", "bench", "run", str(data),
         "--model", "logistic", "--out", str(record), "--quiet"],
        check=True, env=ENV,
    )  # fmt: skip
    return json.loads(record.read_text())["eval_median"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/peers-vw")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        text, cache = tmp / "data.vw", tmp / "data.vw.cache"
        rows = write_vw(Path(args.data), text)
        with h5py.File(args.data) as f:
            n, nnz = int(f["X"].attrs["shape"][1]), int(f["X"]["data"].shape[0])
        bits = int(np.ceil(np.log2(n)))
        parse = vw_pass(text, cache, bits)  # text, writes the cache
        cached = float(np.median([vw_pass(text, cache, bits) for _ in range(args.repeats)]))
        ours = {p: mpigd_pass(Path(args.data), p, tmp / f"bench-{p}.json") for p in args.ranks}
    record = {
        "data": args.data,
        "rows": rows,
        "features": n,
        "nnz": nnz,
        "vw_text_pass_rows_per_s": rows / parse,
        "vw_cache_pass_rows_per_s": rows / cached,
        "mpigd_rows_per_s": {str(p): rows / s for p, s in ours.items()},
    }
    Path(args.out + ".json").write_text(json.dumps(record, indent=1))
    lines = [
        f"## Rows per second per pass: {rows:,} x {n:,} CSR, {nnz:,} values; "
        f"{os.cpu_count()} cores",
        "",
        "| | rows/s per pass | against VW (cache) |",
        "|---|---|---|",
        f"| Vowpal Wabbit, text (parse + SGD) | {rows / parse:,.0f} | {cached / parse:.2f}x |",
        f"| Vowpal Wabbit, binary cache (SGD) | {rows / cached:,.0f} | 1.00x |",
    ]
    for p, s in ours.items():
        lines.append(
            f"| `mpiexec -n {p} mpigd`, one evaluation (loss + gradient) | {rows / s:,.0f} | "
            f"{cached / s:.2f}x |"
        )
    table = "\n".join(lines) + "\n"
    Path(args.out + ".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
