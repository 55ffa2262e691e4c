"""The dense sweep of this build against that of a git revision, side by side.

Both kernels sweep the same rows in one process, in rounds that alternate which goes first
(logistic loss and gradient from memory, MB of X at each width of ``--features``, float64
and float32); each row of the output gives both medians in ns a row, the ratio of the
other build's time to this build's round by round (median, least - most), and whether the
two sums have the same bits. The other build is made as ``csr_spans.py --against`` makes
it, and must have this build's calling convention (ABI 7).

    python benchmarks/dense_ab.py --against REV [--features 64 256] [--mb MB]
                                  [--rounds R] [--out PREFIX]
"""

import argparse
import json
import platform
import tempfile
import time

import numpy as np
from csr_spans import kernel_of, minmax

from mpigd.kernels import _fused, compiled
from mpigd.kernels.losses import make_loss


def case(rng, n, dtype, mb, rounds, other) -> dict:
    m = (mb << 20) // (n * np.dtype(dtype).itemsize)
    X = rng.standard_normal((m, n)).astype(dtype)
    y = (rng.random(m) < 0.5).astype(np.float64)
    theta = 0.01 * rng.standard_normal(n + 1)
    rows = (X, m, n, y, compiled._NO_WEIGHTS)
    model = (theta, *compiled._code(make_loss("logistic")), 1, True)
    grads = {"this": np.empty_like(theta), "other": np.empty_like(theta)}
    kernels = {"this": _fused, "other": other}

    def sweep(name):
        return kernels[name].dense_sums(rows, model, (grads[name], False, 0.0))

    sums = {name: sweep(name) for name in kernels}  # and the warm-up
    times = {name: [] for name in kernels}
    for k in range(rounds):  # this build first in even rounds, the other in odd ones
        for name in ("this", "other") if k % 2 == 0 else ("other", "this"):
            start = time.perf_counter()
            sweep(name)
            times[name].append(time.perf_counter() - start)
    ratio = np.array(times["other"]) / np.array(times["this"])
    return {
        "rows": f"{m:,} x {n} {np.dtype(dtype).name}",
        "ns_per_row": {name: float(np.median(t)) / m * 1e9 for name, t in times.items()},
        "other_over_this_by_round": [float(np.median(ratio)), *minmax(ratio)],
        "same_bits": bool(
            sums["this"] == sums["other"] and np.array_equal(grads["this"], grads["other"])
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", metavar="REV", required=True)
    parser.add_argument("--features", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--mb", type=int, default=256, help="bytes of X, MB")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", help="write PREFIX.txt and PREFIX.json")
    args = parser.parse_args()
    if compiled.name() != "compiled":
        raise SystemExit(f"compiled kernels off: {compiled.why_not}")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        other = kernel_of(args.against, folder)
        if other.ABI != compiled.ABI:
            raise SystemExit(f"{args.against}'s kernel has ABI {other.ABI}, not {compiled.ABI}")
        shapes = [(n, dtype) for n in args.features for dtype in (np.float64, np.float32)]
        results = [case(rng, n, dtype, args.mb, args.rounds, other) for n, dtype in shapes]
    lines = [
        f"# machine: {platform.node()}, {platform.machine()}; logistic sweep from memory, "
        f"{args.mb} MB of X; ns a row, median of {args.rounds} rounds, each build first "
        f"in every other one; "
        f"other: the kernel of {args.against}",
        f"{'rows':28} {'this':>8} {'other':>8}  other/this by round (range)  same bits",
    ]
    for row in results:
        ns, (mid, low, high) = row["ns_per_row"], row["other_over_this_by_round"]
        lines.append(
            f"{row['rows']:28} {ns['this']:8.1f} {ns['other']:8.1f}  "
            f"{mid:5.2f} ({low:.2f} - {high:.2f}){row['same_bits']!s:>16}"
        )
    print("\n".join(lines))
    if args.out:
        with open(args.out + ".txt", "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(args.out + ".json", "w") as f:
            doc = {"machine": platform.machine(), "against": args.against, "results": results}
            json.dump(doc, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
