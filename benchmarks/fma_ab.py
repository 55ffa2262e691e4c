"""The dense sweep with fused multiply-adds against the one without, side by side.

Each round runs this script's timing in two fresh processes, one with the default
kernels (the fused variant on a CPU with FMA) and one with ``MPIGD_KERNELS_NO_FMA=1``,
alternating; each times the logistic loss-and-gradient sweep over dense rows from
memory (1M x 64 and 262k x 256, float64 and float32; median of 9 passes).

    python benchmarks/fma_ab.py [--rounds 3] [--out FILE]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

SHAPES = ((1 << 20, 64), (1 << 18, 256))


def timings() -> dict:
    from mpigd.kernels import _fused, compiled
    from mpigd.kernels.losses import make_loss

    loss = make_loss("logistic")
    rng = np.random.default_rng(0)
    out = {"fma": _fused.FMA}
    for m, n in SHAPES:
        for dtype in (np.float64, np.float32):
            X = rng.standard_normal((m, n)).astype(dtype)
            y = (rng.random(m) < 0.5).astype(np.float64)
            theta, grad = rng.standard_normal(n + 1) * 0.1, np.empty(n + 1)
            times = []
            for _ in range(9):
                start = time.perf_counter()
                compiled.dense_sweep(X, y, theta, loss, grad)
                times.append(time.perf_counter() - start)
            out[f"{m:,} x {n} {np.dtype(dtype).name}"] = float(np.median(times))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(timings()))
        return
    runs: dict[str, list[dict]] = {"fused": [], "plain": []}
    for _ in range(args.rounds):
        for name in runs:
            env = {k: v for k, v in os.environ.items() if k != "MPIGD_KERNELS_NO_FMA"}
            if name == "plain":
                env["MPIGD_KERNELS_NO_FMA"] = "1"
            done = subprocess.run([sys.executable, __file__, "--child"], env=env, check=True,
                                  capture_output=True, text=True)  # fmt: skip
            runs[name].append(json.loads(done.stdout))
    if runs["fused"][0]["fma"] != 1:
        sys.exit("this CPU has no FMA: both runs would time the same sweep")
    lines = [
        "# logistic sweep, ms a pass (median of 9), rounds alternated; plain/fused ratio",
        f"# machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}",
    ]
    for case in [k for k in runs["fused"][0] if k != "fma"]:
        fused = [1e3 * r[case] for r in runs["fused"]]
        plain = [1e3 * r[case] for r in runs["plain"]]
        ratios = [p / f for p, f in zip(plain, fused, strict=True)]
        lines.append(
            f"{case:24} fused {' '.join(f'{t:5.1f}' for t in fused)}   plain "
            f"{' '.join(f'{t:5.1f}' for t in plain)}   ratio "
            f"{' '.join(f'{r:.2f}' for r in ratios)}"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
