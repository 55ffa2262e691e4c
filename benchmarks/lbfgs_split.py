"""L-BFGS with its vectors split over the ranks against held whole on every rank.

Trains logistic regression by L-BFGS for a fixed number of iterations (``--tol 0``) on
wide CSR rows, with ``mpiexec -n P``: at P = 2 with the vectors held whole on every rank
(``SPLIT_FROM`` raised out of reach) and split (``mpigd.vectors.RankSlices``), and at P =
1, in alternated rounds. Reports the training time per iteration (everything after the
read, max over ranks; medians), its speed-up over P = 1 and the split's over the whole
vectors. (The passes' and reductions' own times are maxima over ranks taken apart, whose
sum counts a rank's wait for the other twice, so the optimiser's share is not shown.)
Two shapes: Zipf-popular columns, 262,144 wide (the issue's problem), and flat ones,
1,048,576 wide with fewer rows, where the optimiser's vectors outweigh the rows more.

Usage: python benchmarks/lbfgs_split.py [--iterations K] [--rounds R] [--ranks P]
                                        [--json OUT]
       (one run: mpiexec -n P python benchmarks/lbfgs_split.py --run DATA K whole|split)
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SHAPES = (
    ("zipf", 400_000, 262_144, 35),
    ("flat", 100_000, 1_048_576, 20),
)


def run(data: str, iterations: int, how: str) -> None:
    """One training run under mpiexec; rank 0 prints its timings as JSON."""
    from mpi4py import MPI
    from threadpoolctl import threadpool_limits

    from mpigd import fit, vectors

    vectors.SPLIT_FROM = 1 if how == "split" else 2**62
    with threadpool_limits(1):  # one BLAS thread a rank, as the command line's default
        fitted = fit(data, "logistic", optimizer="lbfgs", l2=1e-5, tol=0.0, ftol=0.0,
                     max_iter=iterations)  # fmt: skip
    if MPI.COMM_WORLD.rank == 0:
        print(json.dumps({**fitted.timings, "nit": fitted.result.nit, "loss": fitted.result.fun}))


def timed(ranks: int, data: Path, iterations: int, how: str) -> dict:
    cmd = ["mpiexec", "-n", str(ranks), sys.executable, __file__, "--run", str(data),
           str(iterations), how]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    t = json.loads(out.strip().splitlines()[-1])
    training = t["total"] - t["read"]  # fit's total: from its call, the start-up before it
    return {"training": training / t["nit"], "loss": t["loss"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--json")
    parser.add_argument("--run", nargs=3, metavar=("DATA", "K", "HOW"))
    args = parser.parse_args()
    if args.run:
        return run(args.run[0], int(args.run[1]), args.run[2])
    variants = ((1, "whole"), (args.ranks, "whole"), (args.ranks, "split"))
    results = []
    print(f"# {platform.node()}, {os.cpu_count()} cores, {platform.machine()}; logistic "
          f"L-BFGS, {args.iterations} iterations, medians of {args.rounds} alternated rounds; "
          "ms per iteration")  # fmt: skip
    print(f"{'data':34} {'run':14} {'ms a step':>9} {'speed-up':>9} {'loss':>14}")
    with tempfile.TemporaryDirectory() as folder:
        for popularity, rows, features, per_row in SHAPES:
            data = Path(folder, f"{popularity}.h5")
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mpigd",
                    "data",
                    "make",
                    str(data),
                    "--quiet",
                    "--rows",
                    str(rows),
                    "--features",
                    str(features),
                    "--popularity",
                    popularity,
                    "--density",
                    str(per_row / features),
                ],
                check=True,
            )
            times = {v: [] for v in variants}
            for _ in range(args.rounds):
                for ranks, how in variants:
                    times[ranks, how].append(timed(ranks, data, args.iterations, how))
            label = f"{popularity} {rows:,} x {features:,}"
            medians = {
                v: float(np.median([g["training"] for g in got])) for v, got in times.items()
            }
            for (ranks, how), got in times.items():
                step = medians[ranks, how]
                row = {"data": label, "ranks": ranks, "vectors": how, "step_s": step,
                       "loss": got[0]["loss"], "speedup": medians[1, "whole"] / step}  # fmt: skip
                results.append(row)
                print(f"{label:34} {f'P = {ranks}, {how}':14} {row['step_s'] * 1e3:9.1f} "
                      f"{row['speedup']:8.2f}x {row['loss']:14.10f}")  # fmt: skip
            ratio = medians[args.ranks, "whole"] / medians[args.ranks, "split"]
            print(f"{'':34} P = {args.ranks}, whole / split: {ratio:.2f}x")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": platform.machine(), "results": results}, indent=1)
        )


if __name__ == "__main__":
    main()
