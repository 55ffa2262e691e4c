"""Cross-validation at the price of one fit? ``mpigd cv`` against the same job done by hand.

On DATA (default: a 1M x 32 logistic problem made by ``mpigd data make``), at P ranks:
- ``cv``: ``mpigd cv --folds F --l2-path HIGH:LOW:COUNT`` (its JSON gives the passes
  over X and each fold model's evaluations);
- ``train``: one ``mpigd train`` at the smallest penalty, from zero, on all rows;
- ``separate``: the F x COUNT cells as separate ``mpigd train --exclude-fold k`` runs,
  each from zero (what a user scripts without ``cv``), timed once.
Whole commands under ``mpiexec``, median of R runs for cv and train. Prints the ratios the
issue asks for: cv wall / train wall, and cv passes / the longest fold's own warm-started
path (the sum of its evaluations over the penalties).

Usage: python benchmarks/cv.py [--data D.h5] [--ranks 2] [--repeats 3] [--json OUT]
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MPIEXEC = str(Path(sys.executable).parent / "mpiexec")


def mpigd(ranks, *args):
    return [MPIEXEC, "-n", str(ranks), sys.executable, "-m", "mpigd", *map(str, args), "--quiet"]


def wall(command) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--path", default="1e-1:1e-5:8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-separate", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mpigd-cv-bench-"))
    try:
        data = args.data
        if data is None:
            data = tmp / "data.h5"
            subprocess.run(
                mpigd(1, "data", "make", data, "--rows", args.rows, "--features",
                      args.features, "--model", "logistic", "--seed", 1),
                check=True,
            )  # fmt: skip
        P, F = args.ranks, args.folds
        high, low, count = args.path.split(":")
        cv_cmd = mpigd(P, "cv", data, "--model", "logistic", "--folds", F, "--l2-path",
                       args.path, "--out", tmp / "cv.h5", "--json", tmp / "cv.json")  # fmt: skip
        train_cmd = mpigd(P, "train", data, "--model", "logistic", "--optimizer", "lbfgs",
                          "--l2", low, "--out", tmp / "t.h5")  # fmt: skip
        cv_walls, train_walls = [], []
        for _ in range(args.repeats):  # interleaved, so drifts hit both alike
            cv_walls.append(wall(cv_cmd))
            train_walls.append(wall(train_cmd))
        record = json.loads((tmp / "cv.json").read_text())
        import h5py

        with h5py.File(tmp / "t.h5") as f:
            train_evals = int(f.attrs["function_evals"])
        per_fold = np.array(record["fold_evaluations"]).sum(axis=0)
        out = {
            "data": str(data),
            "ranks": P,
            "folds": F,
            "path": args.path,
            "cv_wall_s": float(np.median(cv_walls)),
            "train_wall_s": float(np.median(train_walls)),
            "cv_passes": record["passes"],
            "cv_evaluations": record["evaluations"],
            "longest_fold_path_evaluations": int(per_fold.max()),
            "train_evaluations": train_evals,
            "cv_seconds_in_record": record["seconds"],
        }
        out["wall_ratio"] = out["cv_wall_s"] / out["train_wall_s"]
        out["passes_ratio"] = out["cv_passes"] / out["longest_fold_path_evaluations"]
        if not args.skip_separate:
            start = time.perf_counter()
            for value in np.geomspace(float(high), float(low), int(count)):
                for k in range(F):
                    subprocess.run(
                        mpigd(P, "train", data, "--model", "logistic", "--optimizer", "lbfgs",
                              "--l2", value, "--folds", F, "--exclude-fold", k, "--out",
                              tmp / "s.h5"),
                        check=True, stdout=subprocess.DEVNULL,
                    )  # fmt: skip
            out["separate_wall_s"] = time.perf_counter() - start
            out["separate_ratio"] = out["separate_wall_s"] / out["cv_wall_s"]
        for key, value in out.items():
            print(f"{key:32s} {value:.4g}" if isinstance(value, float) else f"{key:32s} {value}")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
