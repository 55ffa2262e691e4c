"""Memory read bandwidth of one core and of several at once: ``X.sum()`` over a 256 MB
float64 array in each of P processes timed together (each starts timing once all have
touched their memory), the aggregate the sum of their best rates. The ceiling for P
ranks' evaluations on one node: an evaluation reads every rank's rows once, so L-BFGS's
E evaluations over B bytes of rows take at least E B / aggregate.

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
    """One process's best X.sum() rate over `mb` MB, GB/s, on stdout: its memory is
    touched and "ready" said before the timing, which starts when the parent says go
    (a line on stdin), so that the processes' timings overlap."""
    x = np.ones((mb << 20) // 8)
    x.sum()
    print("ready", flush=True)
    sys.stdin.readline()
    best = float("inf")
    for _ in range(SUMS):
        start = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - start)
    print(x.nbytes / best / 1e9)


def together(count: int, mb: int) -> list[float]:
    """The rates of `count` processes timed together, once all have touched their memory."""
    cmd = [sys.executable, __file__, "--one", "--mb", str(mb)]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen(cmd, **pipes) for _ in range(count)]
    for proc in procs:
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("a timing process failed before its timing")
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    rates = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a timing process failed (exit status {proc.returncode})")
        rates.append(float(out))
    return rates


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
    for k in range(args.rounds):  # the order of the counts reversed every other round
        for p in args.ranks if k % 2 == 0 else args.ranks[::-1]:
            runs[p].append(together(p, args.mb))
    lines = [
        f"# {platform.node()}, {os.cpu_count()} cores, {platform.machine()}; X.sum() over "
        f"{args.mb} MB float64 in P processes timed together, best of {SUMS} sums each; "
        f"median (least - most): per process over all processes and rounds, together over "
        f"{args.rounds} rounds, each count's order reversed every other round",
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
