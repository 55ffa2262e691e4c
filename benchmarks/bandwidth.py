"""Memory read bandwidth of one core and of several at once: ``X.sum()`` over a 256 MB
float64 array in each of P processes started together, the aggregate the sum of their
rates. The ceiling for P ranks' evaluations on one node: an evaluation reads every rank's
rows once, so L-BFGS's E evaluations over B bytes of rows take at least E B / aggregate.

Usage: python benchmarks/bandwidth.py [--mb MB] [--ranks 1 2] [--rounds R] [--out PREFIX]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

SUMS = 9  # each process's X.sum() calls; its rate is the best of them


def one(mb: int) -> None:
    """One process's best X.sum() rate over `mb` MB, GB/s, on stdout."""
    x = np.ones((mb << 20) // 8)
    x.sum()
    best = float("inf")
    for _ in range(SUMS):
        start = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - start)
    print(x.nbytes / best / 1e9)


def together(count: int, mb: int) -> list[float]:
    """The rates of `count` processes started together."""
    cmd = [sys.executable, __file__, "--one", "--mb", str(mb)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    return [float(p.communicate()[0]) for p in procs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", help="write PREFIX.json and PREFIX.txt")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(args.mb)
    runs = {p: [] for p in args.ranks}
    for _ in range(args.rounds):
        for p in args.ranks:
            runs[p].append(together(p, args.mb))
    lines = [
        f"# {platform.node()}, {os.cpu_count()} cores, {platform.machine()}; X.sum() over "
        f"{args.mb} MB float64 in P processes at once, best of {SUMS} sums each; "
        f"median (least - most) of {args.rounds} rounds, the rounds alternating P",
        f"{'P':>3} {'per process GB/s':>28} {'together GB/s':>28}",
    ]
    for p, rounds in runs.items():
        each = [r for run in rounds for r in run]
        total = [sum(run) for run in rounds]
        lines.append(f"{p:>3} {spread(each):>28} {spread(total):>28}")
    print("\n".join(lines))
    if args.out:
        with open(args.out + ".txt", "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(args.out + ".json", "w") as f:
            json.dump({"mb": args.mb, "rates": {str(p): r for p, r in runs.items()}}, f, indent=1)
            f.write("\n")


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f} - {max(values):.1f})"


if __name__ == "__main__":
    main()
