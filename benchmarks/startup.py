"""Where a short ``mpigd train`` spends its time before and around the work.

For P ranks, times whole processes started by ``mpiexec`` (median of R runs each):
``floor`` starts Python and imports mpi4py, numpy and h5py, which any MPI Python program
pays; ``train`` is ``mpigd train`` on DATA. For the train runs it reads the model file's
timings (max over ranks): ``startup`` is process start to the first evaluation with the
read excluded (what the interpreter, the imports and the option checks cost), then the
read, the evaluations and the Allreduce. Also prints ``python -X importtime``'s total
for ``import mpigd.cli`` and whether scipy, tqdm or matplotlib were loaded by it.

Usage: python benchmarks/startup.py DATA.h5 [--ranks 1 2] [--repeats R] [--json OUT]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

FLOOR = "from mpi4py import MPI; import numpy, h5py"


def wall(command, env):
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def import_profile(env):
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import sys, mpigd.cli; print(sorted("
         "{m.split('.')[0] for m in sys.modules} & {'scipy', 'tqdm', 'matplotlib'}))"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    total = re.search(r"\|\s*(\d+) \| mpigd\.cli$", run.stderr, re.M)
    return int(total.group(1)) / 1e6, run.stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    mpiexec = shutil.which("mpiexec")
    seconds, loaded = import_profile(env)
    print(f"import mpigd.cli: {seconds:.3f} s cumulative (-X importtime); also loaded: {loaded}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model.h5")
        for ranks in args.ranks:
            launch = [mpiexec, "-n", str(ranks)]
            floor = [wall([*launch, sys.executable, "-c", FLOOR], env) for _ in range(args.repeats)]
            train = [*launch, "mpigd", "train", args.data, "--model", "logistic", "--quiet"]
            rows = []
            for _ in range(args.repeats):
                Path(model).unlink(missing_ok=True)
                total = wall([*train, "--out", model], env)
                with h5py.File(model) as f:
                    keys = ("startup", "read", "compute", "allreduce")
                    rows.append([total, *(float(f.attrs[f"time_{key}"]) for key in keys)])
            med = np.median(np.array(rows), axis=0)
            row = {
                "ranks": ranks,
                "floor_s": float(np.median(floor)),
                "train_wall_s": med[0],
                "startup_s": med[1],
                "read_s": med[2],
                "compute_s": med[3],
                "allreduce_s": med[4],
            }
            results.append(row)
            print(
                f"P={ranks}: floor {row['floor_s']:.3f} s | train wall {med[0]:.3f} s = "
                f"start-up {med[1]:.3f} + read {med[2]:.3f} + compute {med[3]:.3f} + "
                f"allreduce {med[4]:.3f} + the rest {med[0] - med[1:].sum():.3f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"data": args.data, "import_s": seconds, "runs": results}, f, indent=1)


if __name__ == "__main__":
    main()
