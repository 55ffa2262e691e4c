"""The table of benchmarks/run_stream.sh: per file and rank count, the medians over runs of
the seconds per evaluation and their ratios, and the training runs' peak memory and model
difference.

    python benchmarks/stream_report.py WORKDIR RESULTS_DIR > stream.md
"""

import json
import re
import sys
from pathlib import Path
from statistics import median

import numpy as np

from mpigd import load_model

SHAPES = {"dense": "1M x 256 float64, 2.0 GB", "csr": "2M x 100,000 CSR, 50 a row, 1.2 GB"}


def main(work: Path, results: Path) -> None:
    runs: dict[tuple[str, int], list[dict]] = {}
    for path in sorted(results.glob("*-P*-*.json")):
        name, ranks, _ = path.stem.split("-")
        runs.setdefault((name, int(ranks[1:])), []).append(json.loads(path.read_text()))
    machine = next(iter(runs.values()))[0]["machine"]
    print(f"# Streaming rows from disk ({machine})\n")
    print("Commands: `bash benchmarks/run_stream.sh` (which runs `benchmarks/stream.py` and")
    print("`mpigd train` under `mpiexec`); medians of 3 runs, each a median of 7 evaluations;")
    print("seconds per evaluation are the slowest rank's. Targets: streamed <= 1.3 x the")
    print("larger of a plain read of the same bytes and the in-memory evaluation; a cold")
    print("pass (page cache dropped) at >= 0.8 x a plain cold read's rate.\n")
    print(
        "| file | P | block | read s | in memory s | streamed s | streamed / max | "
        "cold read s | cold streamed s | cold rate ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (name, ranks), group in sorted(runs.items()):
        sec = {k: median(r["seconds"][k] for r in group) for k in group[0]["seconds"]}
        ratio = median(r["streamed_over_max"] for r in group)
        cold = median(r["cold_rate_ratio"] for r in group)
        block = group[0]["block_bytes"] / 2**20
        print(
            f"| {name} ({SHAPES[name]}) | {ranks} | {block:.1f} MiB | {sec['read']:.3f} | "
            f"{sec['memory']:.3f} | {sec['streamed']:.3f} | **{ratio:.2f}** | "
            f"{sec['cold read']:.2f} | {sec['cold streamed']:.2f} | **{cold:.2f}** |"
        )
    print("\nTraining at P = 2 (`mpigd train --model logistic --l2 1e-4 --tol 1e-10`), in memory")
    print("and with `--memory`:\n")
    print(
        "| file | budget a rank | peak RSS a rank, in memory | peak RSS a rank, streamed | "
        "passes | max |coef difference| |"
    )
    print("|---|---|---|---|---|---|")
    for name in SHAPES:
        peaks = {}
        for how in ("memory", "streamed"):
            log = (work / f"{name}-{how}.log").read_text()
            peaks[how] = [int(kb) / 1024 for kb in re.findall(r"peak_kb (\d+)", log)]
            budget = re.search(r"budget of ([\d.]+ MiB)", log)
        held, streamed = (load_model(work / f"{name}-{how}.h5") for how in ("memory", "streamed"))
        gap = float(np.abs(held.coef - streamed.coef).max())
        print(
            f"| {name} | {budget.group(1) if budget else '?'} | "
            f"{max(peaks['memory']):.0f} MiB | {max(peaks['streamed']):.0f} MiB | "
            f"{streamed.info['passes']} | {gap:.1e} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
