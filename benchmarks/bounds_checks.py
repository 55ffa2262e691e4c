"""What the compiled kernels' bounds checks cost: one evaluation with the checks (the
kernel source of ``--after``, the last commit of their flat-argument ABI 4) against the
same source before them (``--before``), both built here with the flags of
``pyproject.toml``, on the same arrays in one process, alternating, one BLAS thread.

Cases: CSR logistic with Zipf and with flat column popularity (the index check sits in
the gather loop), CSR softmax of 3 classes, dense softmax of 4 classes (the label check is
one pass over y) and dense logistic (only the argument checks). Medians of alternating
runs; the ratio checked / unchecked is what to read.

Usage: python benchmarks/bounds_checks.py [--before REV] [--after REV] [--mb MB]
    [--repeats R] [--json OUT.json]
"""

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import sysconfig
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from mpigd.io.synthetic import sparse_rows, zipf_popularity

ROOT = Path(__file__).resolve().parents[1]
NO_FOLDS = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.zeros(1))


def _csr_arrays(X) -> tuple:
    """The CSR arguments of the ABI-4 kernels: each array with its type flag."""
    indices = X.indices.astype(np.int64) if X.indices.dtype != np.int32 else X.indices
    indptr = X.indptr.astype(np.int64) if indices.dtype == np.int64 else X.indptr
    return (X.data, False, indices, indices.dtype == np.int64, indptr, indptr.dtype == np.int64)


def build(rev: str, folder: Path, name: str):
    """The kernel source at ``rev`` as the module ``name``."""
    folder.mkdir()
    source = folder / "_fused.c"
    for file in ("_fused.c", "_losses.h"):
        text = subprocess.run(
            ["git", "show", f"{rev}:mpigd/kernels/{file}"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        (folder / file).write_text(text)
    target = folder / f"{name}{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O3", "-fopenmp-simd", "-fno-trapping-math",
         f"-DPyInit__fused=PyInit_{name}", f"-I{sysconfig.get_paths()['include']}",
         str(source), "-o", str(target)],
        check=True,
    )  # fmt: skip
    spec = importlib.util.spec_from_file_location(name, target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def alternate(repeats, calls) -> list[float]:
    """Median seconds of each call, run in turn ``repeats`` times after a warm-up."""
    times = [[] for _ in calls]
    for call in calls:
        call()
    for _ in range(repeats):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            call()
            times[i].append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="a83aaaa", help="a commit before the checks")
    parser.add_argument("--after", default="6c41c65", help="a commit with them (ABI 4)")
    parser.add_argument("--mb", type=int, default=256, help="bytes of each case's X, in MB")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        before = build(args.before, Path(tmp) / "before", "_fused_before")
        checked = build(args.after, Path(tmp) / "after", "_fused_after")
    cases = []
    rows, features = (args.mb << 20) // (12 * 40), 262_144
    for name, popularity in (
        ("Zipf", zipf_popularity(features)),
        ("flat", np.full(features, 1.0 / features)),
    ):
        X = sparse_rows(rng, rows, features, 40 / features, popularity, np.float64)
        for K in (1, 3):
            y = rng.integers(0, 2 if K == 1 else K, rows).astype(np.float64)
            theta = 0.01 * rng.standard_normal((features + 1) * K)
            head = (*_csr_arrays(X), rows, features, y, theta, np.empty(0), 1 if K == 1 else 2)
            label = f"CSR {name} {rows:,} x {features:,}, {X.nnz:,} values, K = {K}"
            cases.append((label, "csr_sums", head, K, theta))
    for n, K in ((64, 1), (64, 4)):
        rows = (args.mb << 20) // (8 * n)
        X = rng.standard_normal((rows, n))
        y = rng.integers(0, 2 if K == 1 else K, rows).astype(np.float64)
        theta = 0.01 * rng.standard_normal((n + 1) * K)
        head = (X, False, rows, n, y, theta, np.empty(0), 1 if K == 1 else 2)
        cases.append((f"dense {rows:,} x {n}, K = {K}", "dense_sums", head, K, theta))

    results = []
    for label, entry, head, K, theta in cases:
        grads = [np.empty_like(theta), np.empty_like(theta)]
        calls = [
            partial(getattr(module, entry), *head, K, grad, True, *NO_FOLDS)
            for module, grad in ((before, grads[0]), (checked, grads[1]))
        ]
        same = calls[0]() == calls[1]() and np.array_equal(*grads)
        unchecked_s, checked_s = alternate(args.repeats, calls)
        results.append({
            "case": label, "unchecked_s": unchecked_s, "checked_s": checked_s,
            "ratio": checked_s / unchecked_s, "bit_identical": bool(same),
        })  # fmt: skip
    print(
        f"# {platform.machine()}, numpy {np.__version__}, 1 thread, median of {args.repeats} "
        f"alternating runs; before = {args.before}"
    )
    print(f"{'case':58} {'before':>9} {'checked':>9} {'ratio':>6} {'same bits':>9}")
    for r in results:
        print(
            f"{r['case']:58} {r['unchecked_s'] * 1e3:7.1f}ms {r['checked_s'] * 1e3:7.1f}ms "
            f"{r['ratio']:6.3f} {r['bit_identical']!s:>9}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": platform.machine(), "argv": sys.argv, "results": results}, f,
                      indent=1)  # fmt: skip


if __name__ == "__main__":
    with threadpool_limits(limits=1, user_api="blas"):
        main()
