"""Raw text in: mpigd's parallel convert and training from text against scikit-learn,
Vowpal Wabbit, pandas and pyarrow on the same bytes, whole processes, one run.

    python benchmarks/ingest.py [--rows 200000] [--features 262144] [--per-row 41]
        [--csv-rows 1000000] [--repeats 3] [--l2 1e-5] [--out benchmarks/results/ingest]

Writes a LIBSVM file (scikit-learn's ``dump_svmlight_file`` of a random CSR matrix whose
column popularity is Zipf-like, labels -1/+1 from a hidden model), the same rows in
Vowpal Wabbit's text format, and a dense numeric CSV, into a temporary folder; then times,
each ``--repeats`` times in turn, median reported (needs the ``peers`` extra and
``pandas``/``pyarrow``):

- parse: ``mpiexec -n P mpigd data convert`` (P = 1, 2) against ``load_svmlight_file``
  (the whole process, and its load call alone) and Vowpal Wabbit's parser (``--noop``:
  parse, learn nothing), in rows per second;
- CSV: ``mpigd data convert`` against ``pandas.read_csv`` and ``pyarrow.csv.read_csv``;
- raw text to model: ``mpiexec -n 2 mpigd train FILE.svm --l2 L2`` against scikit-learn's
  load and ``LogisticRegression(C=1/(L2 m))`` fit, with each one's objective
  ``(1/m) sum log-loss + L2/2 |w|^2`` on the same rows;
- peak memory: the largest resident set of any process of ``mpigd data convert`` at P = 1.

The LIBSVM table gives each ratio to scikit-learn's load call twice: of the medians, and
round by round (the two commands timed seconds apart), whose spread shows how much
this machine's speed moved during the run.

Writes PREFIX.json and PREFIX.md (with this machine's CPU named).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MPIGD_NUM_THREADS": "1"}
MPIEXEC = str(Path(sys.executable).parent / "mpiexec")


def write_data(folder: Path, rows: int, n: int, per_row: int, csv_rows: int, seed: int = 0):
    """The LIBSVM file, its VW twin and a dense CSV; returns their paths."""
    import scipy.sparse as sp
    from sklearn.datasets import dump_svmlight_file

    rng = np.random.default_rng(seed)
    counts = rng.poisson(per_row, rows).clip(1, n)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    columns = np.minimum(rng.zipf(1.2, indptr[-1]) - 1, n - 1)
    values = np.round(rng.random(indptr[-1]), 6)
    X = sp.csr_matrix((values, columns, indptr), shape=(rows, n))
    X.sum_duplicates()
    w = rng.normal(size=n)
    y = np.where(X @ w + 0.5 * rng.normal(size=rows) > 0, 1, -1)
    svm, vw, csv = folder / "data.svm", folder / "data.vw", folder / "data.csv"
    dump_svmlight_file(X, y, str(svm), zero_based=False)
    with open(svm) as src, open(vw, "w") as dst:
        for line in src:
            label, _, pairs = line.partition(" ")
            dst.write(f"{label} |f {pairs}")
    dense = rng.normal(size=(csv_rows, 20))
    np.savetxt(csv, dense, delimiter=",", fmt="%.9g")
    return X, y


def run(command: list[str]) -> tuple[float, int, str]:
    """Wall seconds, the largest resident set (bytes) of any of its processes, and what
    it printed. The HDF5 files it writes are removed first and the disk synced, untimed:
    each run writes a new file, as a first conversion does (replacing a file has the file
    system free the old one's blocks within the timed sync)."""
    for arg in command:
        if arg.endswith(".h5"):
            Path(arg).unlink(missing_ok=True)
    os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {proc.stderr.read().decode()}")
    return seconds, usage.ru_maxrss * 1024, proc.stdout.read().decode()


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def mpigd(ranks: int, *args) -> list[str]:
    return [MPIEXEC, "-n", str(ranks), sys.executable, "-m", "mpigd", *map(str, args), "--quiet"]


def commands(svm, vw, csv, out: Path, l2: float, m: int) -> dict[str, list[str]]:
    c = 1.0 / (l2 * m)
    return {
        "sklearn load (process)": python(  # prints the load call's own seconds
            "import time; from sklearn.datasets import load_svmlight_file; "
            f"t = time.perf_counter(); load_svmlight_file('{svm}'); "
            "print(time.perf_counter() - t)"
        ),
        "vw parse (process)": python(
            f"from vowpalwabbit import Workspace; v = Workspace('-d {vw} --noop --quiet'); "
            "v.run_parser(); v.finish()"
        ),
        "mpigd convert P=1": mpigd(1, "data", "convert", svm, out / "c1.h5"),
        "mpigd convert P=2": mpigd(2, "data", "convert", svm, out / "c2.h5"),
        "pandas read_csv": python(f"import pandas; pandas.read_csv('{csv}', header=None)"),
        "pyarrow read_csv": python(
            "import pyarrow.csv as c; c.read_csv("
            f"'{csv}', read_options=c.ReadOptions(autogenerate_column_names=True))"
        ),
        "mpigd convert csv P=1": mpigd(1, "data", "convert", csv, out / "v1.h5", "--label", "none"),
        "mpigd convert csv P=2": mpigd(2, "data", "convert", csv, out / "v2.h5", "--label", "none"),
        "sklearn load + fit": python(
            "from sklearn.datasets import load_svmlight_file; "
            "from sklearn.linear_model import LogisticRegression; import numpy as np; "
            f"X, y = load_svmlight_file('{svm}'); "
            f"m = LogisticRegression(C={c!r}, tol=1e-8, max_iter=10000).fit(X, y); "
            f"np.save('{out / 'sk.npy'}', np.append(m.coef_.ravel(), m.intercept_))"
        ),
        "mpigd train P=2": mpigd(
            2,
            "train",
            svm,
            "--model",
            "logistic",
            "--labels",
            "auto",
            "--l2",
            l2,
            "--out",
            out / "m.h5",
        ),
    }


def objective(X, y, w: np.ndarray, b: float, l2: float) -> float:
    """(1/m) sum log(1 + exp(-t z)) + l2/2 |w|^2, t = +-1."""
    t = np.where(y > 0, 1.0, -1.0)
    z = X @ w + b
    return float(np.mean(np.logaddexp(0.0, -t * z)) + 0.5 * l2 * w @ w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=262_144)
    parser.add_argument("--per-row", type=int, default=41)
    parser.add_argument("--csv-rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--l2", type=float, default=1e-5)
    parser.add_argument("--out", default="benchmarks/results/ingest")
    parser.add_argument("--write", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--objectives", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--skip-fit", action="store_true", help="time the parsers only")
    args = parser.parse_args()
    if args.write:  # in a child process, so that the timed ones are forked from a small one
        X, _ = write_data(Path(args.write), args.rows, args.features, args.per_row, args.csv_rows)
        print(X.nnz)
        return
    if args.objectives:
        print(json.dumps(objectives(Path(args.objectives), args.l2)))
        return
    # mpigd's modules byte-compiled, as a regular install leaves them (an editable one
    # under PYTHONDONTWRITEBYTECODE would compile them in every timed process; a read-only
    # install is left as it is)
    package = importlib.util.find_spec("mpigd").submodule_search_locations[0]
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], env=ENV, check=False)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as tmp:
        tmp = Path(tmp)
        sizes = dict(rows=args.rows, features=args.features, per_row=args.per_row)
        child = [f"--{k.replace('_', '-')}={v}" for k, v in sizes.items()]
        nnz = int(subprocess.run([sys.executable, __file__, "--write", tmp, *child,
                                  f"--csv-rows={args.csv_rows}"], env=ENV, check=True,
                                 capture_output=True, text=True).stdout)  # fmt: skip
        svm, vw, csv = tmp / "data.svm", tmp / "data.vw", tmp / "data.csv"
        todo = commands(svm, vw, csv, tmp, args.l2, args.rows)
        if args.skip_fit:
            del todo["sklearn load + fit"], todo["mpigd train P=2"]
        times = {name: [] for name in [*todo, "sklearn load (call)"]}
        peak = {name: 0 for name in todo}
        for _ in range(args.repeats):
            for name, command in todo.items():
                seconds, rss, printed = run(command)
                times[name].append(seconds)
                peak[name] = max(peak[name], rss)
                if name == "sklearn load (process)":
                    times["sklearn load (call)"].append(float(printed))
        found = {} if args.skip_fit else json.loads(subprocess.run(
            [sys.executable, __file__, "--objectives", tmp, f"--l2={args.l2}"],
            env=ENV, check=True, capture_output=True, text=True,
        ).stdout)  # fmt: skip
        files = {p.name: p.stat().st_size for p in (svm, vw, csv)}
    report(args, times, peak, found, files, nnz)


def objectives(folder: Path, l2: float) -> dict[str, float]:
    """Each solver's objective on the LIBSVM rows."""
    from sklearn.datasets import load_svmlight_file

    from mpigd import load_model

    X, y = load_svmlight_file(str(folder / "data.svm"), n_features=None)
    ours, theirs = load_model(folder / "m.h5"), np.load(folder / "sk.npy")
    n = min(X.shape[1], ours.coef.size)
    X = X[:, :n]
    return {
        "mpigd": objective(X, y, ours.coef.ravel()[:n], float(ours.intercept), l2),
        "sklearn": objective(X, y, theirs[:n], float(theirs[-1]), l2),
    }


def report(args, times, peak, objectives, sizes, nnz) -> None:
    median = {name: float(np.median(t)) for name, t in times.items()}
    record = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "rows": args.rows, "features": args.features, "nnz": nnz, "l2": args.l2,
        "csv_rows": args.csv_rows, "bytes": sizes, "repeats": args.repeats,
        "seconds": times, "median": median, "peak_rss": peak, "objective": objectives,
    }  # fmt: skip
    Path(args.out + ".json").write_text(json.dumps(record, indent=1))
    sk, mb = median["sklearn load (call)"], sizes["data.svm"] / 1e6
    lines = [
        f"## Text in: {args.rows:,} x {args.features:,} LIBSVM, {nnz:,} values, {mb:,.0f} MB; "
        f"{record['machine']}; median of {args.repeats}, whole processes (and "
        "scikit-learn's load call alone)",
        "",
        "| LIBSVM | seconds | MB/s | rows/s | against scikit-learn's load call | the same, "
        "round by round: median (least - most) |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("sklearn load (call)", "sklearn load (process)", "vw parse (process)",
                 "mpigd convert P=1", "mpigd convert P=2"):  # fmt: skip
        s = median[name]
        rounds = np.divide(times["sklearn load (call)"], times[name])  # each in one round
        spread = f"{np.median(rounds):.1f}x ({rounds.min():.1f} - {rounds.max():.1f})"
        lines.append(f"| {name} | {s:.2f} | {mb / s:,.0f} | {args.rows / s:,.0f} | {sk / s:.1f}x "
                     f"| {spread} |")  # fmt: skip
    csv_mb, pandas = sizes["data.csv"] / 1e6, median["pandas read_csv"]
    lines += ["", f"| CSV, {args.csv_rows:,} x 20, {csv_mb:,.0f} MB | seconds | MB/s | "
              "against pandas |", "|---|---|---|---|"]  # fmt: skip
    for name in ("pandas read_csv", "pyarrow read_csv", "mpigd convert csv P=1",
                 "mpigd convert csv P=2"):  # fmt: skip
        s = median[name]
        lines.append(f"| {name} | {s:.2f} | {csv_mb / s:,.0f} | {pandas / s:.1f}x |")
    if "mpigd train P=2" not in median:
        return _write(args, lines, peak)
    fit, train = median["sklearn load + fit"], median["mpigd train P=2"]
    lines += [
        "",
        f"Raw text to model (logistic, l2 = {args.l2:g}): scikit-learn load + fit {fit:.2f} s, "
        f"objective {objectives['sklearn']:.10f}; `mpiexec -n 2 mpigd train FILE.svm` "
        f"{train:.2f} s, objective {objectives['mpigd']:.10f}: **{fit / train:.1f}x**.",
        "",
        f"Peak resident set converting at P = 1: {peak['mpigd convert P=1'] / 2**20:,.0f} MiB "
        f"(scikit-learn's load: {peak['sklearn load (process)'] / 2**20:,.0f} MiB).",
    ]
    _write(args, lines, peak)


def _write(args, lines: list[str], peak: dict) -> None:
    if "mpigd train P=2" not in peak:
        lines += ["", f"Peak resident set converting at P = 1: "
                  f"{peak['mpigd convert P=1'] / 2**20:,.0f} MiB."]  # fmt: skip
    table = "\n".join(lines) + "\n"
    Path(args.out + ".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
