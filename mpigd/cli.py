"""The ``mpigd`` command line: argument parsing, rank-0 reporting, exit codes."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from contextlib import contextmanager

from threadpoolctl import threadpool_limits
from tqdm import tqdm

from . import __version__
from .bench import measure
from .convert import FORMATS, convert
from .errors import MpigdError
from .files import output_problem, write_json
from .fit import fit
from .losses import MODELS
from .optimize import OPTIMIZERS, Progress
from .parallel import (
    agreed,
    default_comm,
    launcher_rank,
    library_version,
    print0,
    run_guarded,
    wtime,
)
from .report import report
from .scoring import evaluate, predict
from .split import split as split_file
from .summary import describe
from .synthetic import make_dataset


class _RootParser(argparse.ArgumentParser):
    """An ArgumentParser whose help and usage errors are printed by rank 0 only.

    Every rank parses the same arguments and exits the same way; only the printing is
    limited, so a bad option gives one message instead of one per rank.
    """

    rank = 0

    def _print_message(self, message, file=None):
        if self.rank == 0:
            super()._print_message(message, file)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser(rank: int = 0) -> argparse.ArgumentParser:
    _RootParser.rank = rank
    common = _RootParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="print only errors")
    common.add_argument(
        "--debug", action="store_true", help="show Python tracebacks on errors (also MPIGD_DEBUG=1)"
    )
    common.add_argument(
        "--threads",
        type=_positive_int,
        default=os.environ.get("MPIGD_NUM_THREADS", "1"),  # argparse applies the type
        help="BLAS threads per rank (default: $MPIGD_NUM_THREADS or 1; "
        "ranks x threads should not exceed the cores)",
    )

    parser = _RootParser(
        prog="mpigd",
        description="Train linear models on HDF5 data with MPI. "
        "Run under mpiexec: mpiexec -n P mpigd train ...",
    )
    parser.add_argument("--version", action="version", version=f"mpigd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        parents=[common],
        help="train a model",
        description="Train a linear or logistic regression.",
    )
    train.add_argument("data", help="HDF5 file with datasets X (rows, features) and y (rows,)")
    train.add_argument("--model", required=True, choices=list(MODELS))
    train.add_argument("--out", required=True, help="model file to write (HDF5)")
    train.add_argument(
        "--optimizer",
        default="auto",
        choices=["auto", *OPTIMIZERS],
        help="default auto: nesterov (FISTA) with --l1, normal for linear regression "
        "(up to 4095 features), lbfgs otherwise",
    )
    train.add_argument("--l2", type=float, default=0.0, help="ridge penalty (l2/2)||w||^2")
    train.add_argument("--l1", type=float, default=0.0, help="lasso penalty l1*||w||_1")
    train.add_argument("--standardize", action="store_true", help="train on standardised features")
    train.add_argument("--weight-key", help="dataset of row weights (default: none)")
    train.add_argument("--class-weight", choices=["balanced"], help="reweight classes")
    train.add_argument("--max-iter", type=int, default=None, help="iterations (epochs for sgd)")
    train.add_argument("--tol", type=float, default=1e-6, help="stop at this gradient 2-norm")
    train.add_argument(
        "--ftol",
        type=float,
        default=1e-12,
        help="stop when one iteration changes the loss by less than this, relative",
    )
    train.add_argument(
        "--lr",
        type=float,
        default=None,
        help="step size: fixed for gd and nesterov (default: line search), initial for sgd",
    )
    train.add_argument("--batch-size", type=_positive_int, default=1024, help="sgd batch")
    train.add_argument("--seed", type=int, default=0, help="sgd sampling seed")
    train.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="write the optimiser state here every --checkpoint-every iterations, and on "
        "SIGTERM/SIGUSR1 (then exit with status 75)",
    )
    train.add_argument(
        "--checkpoint-every", type=_positive_int, default=50, metavar="N", help="default: 50"
    )
    train.add_argument(
        "--resume", metavar="PATH", help="continue from this checkpoint (same data and model)"
    )
    train.add_argument("--x-key", default="X", help="name of the feature dataset")
    train.add_argument("--y-key", default="y", help="name of the label dataset")
    train.add_argument(
        "--print-every", type=_positive_int, default=10, help="progress line every N iterations"
    )
    train.set_defaults(func=_train)

    evaluate = commands.add_parser(
        "evaluate",
        parents=[common],
        help="metrics of a model on labelled data",
        description="Score a model on labelled data; each rank scores its own rows.",
    )
    evaluate.add_argument("model", help="model file written by mpigd train")
    evaluate.add_argument("data", help="HDF5 file with X and y")
    evaluate.add_argument("--json", metavar="PATH", help="also write the metrics as JSON")
    evaluate.add_argument("--x-key", default="X", help="name of the feature dataset")
    evaluate.add_argument("--y-key", default="y", help="name of the label dataset")
    evaluate.set_defaults(func=_evaluate)

    predict = commands.add_parser(
        "predict",
        parents=[common],
        help="write predictions for every row",
        description="Predict every row of X; each rank predicts its own rows.",
    )
    predict.add_argument("model", help="model file written by mpigd train")
    predict.add_argument("data", help="HDF5 file with X (labels are not needed)")
    predict.add_argument("--out", required=True, help="HDF5 file to write")
    predict.add_argument("--x-key", default="X", help="name of the feature dataset")
    predict.set_defaults(func=_predict)

    bench = commands.add_parser("bench", help="scaling measurements").add_subparsers(
        dest="bench_command", required=True
    )
    run = bench.add_parser(
        "run",
        parents=[common],
        help="measure one run (under mpiexec) and write its record",
        description="Time evaluations, memory bandwidth and Allreduce at this rank count.",
    )
    run.add_argument("data", help="HDF5 file with X and y")
    run.add_argument("--out", required=True, help="JSON record to write")
    run.add_argument("--model", choices=list(MODELS), default="logistic")
    run.add_argument("--evals", type=_positive_int, default=20, help="timed evaluations")
    run.add_argument("--warmup", type=int, default=3, help="untimed evaluations first")
    run.set_defaults(func=_bench_run)
    report = bench.add_parser(
        "report",
        parents=[common],
        help="aggregate records into a table, CSV, model prediction and plots",
    )
    report.add_argument("records", nargs="+", help="JSON records, or folders of them")
    report.add_argument("--out", required=True, help="output prefix (PREFIX.csv, .json, .png)")
    report.add_argument("--kind", choices=["strong", "weak"], default="strong")
    report.set_defaults(func=_bench_report)

    data = commands.add_parser("data", help="dataset tools").add_subparsers(
        dest="data_command", required=True
    )
    make = data.add_parser(
        "make",
        parents=[common],
        help="write a synthetic dataset",
        description="Write a synthetic regression dataset, block by block.",
    )
    make.add_argument("out", help="HDF5 file to write")
    make.add_argument("--rows", type=_positive_int, required=True)
    make.add_argument("--features", type=_positive_int, required=True)
    make.add_argument("--model", choices=["linear", "logistic"], default="logistic")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--noise", type=float, default=0.1, help="label noise (linear only)")
    make.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    make.set_defaults(func=_make)

    convert = data.add_parser(
        "convert",
        parents=[common],
        help="convert CSV, LIBSVM/svmlight, .npy or .npz to HDF5",
        description="Convert a file to mpigd's HDF5 layout (X, y), streaming in row blocks.",
    )
    convert.add_argument("input", help="CSV/TSV, LIBSVM/svmlight, .npy or .npz file")
    convert.add_argument("out", help="HDF5 file to write")
    convert.add_argument("--format", choices=FORMATS, help="default: from the file name")
    convert.add_argument(
        "--label",
        help="label column: a name (CSV header) or 0-based index, or 'none' (default: the "
        "last column; LIBSVM: the first field; .npz: array y)",
    )
    convert.add_argument(
        "--header",
        action=argparse.BooleanOptionalAction,
        help="CSV: the first line names the columns (default: detected)",
    )
    convert.add_argument("--delimiter", help="CSV field separator (default: comma; tab for .tsv)")
    convert.add_argument(
        "--features", type=_positive_int, help="LIBSVM: number of features (default: largest index)"
    )
    convert.add_argument(
        "--zero-based",
        action=argparse.BooleanOptionalAction,
        help="LIBSVM: indices start at 0 (default: yes if an index 0 occurs)",
    )
    convert.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    convert.add_argument(
        "--contiguous", action="store_true", help="no chunks (default: chunks of ~1 MiB of rows)"
    )
    convert.add_argument("--compression", choices=["gzip", "lzf"], help="compress the chunks")
    convert.set_defaults(func=_convert)

    split = data.add_parser(
        "split",
        parents=[common],
        help="shuffled train/test split",
        description="Split DATA.h5 into shuffled training and test files, in bounded memory.",
    )
    split.add_argument("data", help="HDF5 file; every dataset with one entry per row is split")
    split.add_argument("--test-fraction", type=float, required=True, help="e.g. 0.2")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--train", help="training file (default: DATA-train.h5)")
    split.add_argument("--test", help="test file (default: DATA-test.h5)")
    split.add_argument("--x-key", default="X", help="dataset that defines the rows")
    split.set_defaults(func=_split)

    info = data.add_parser(
        "info",
        parents=[common],
        help="layout and per-feature statistics",
        description="Shape, dtypes, chunking, label balance and per-feature min/mean/max; "
        "under mpiexec each rank reads its own rows.",
    )
    info.add_argument("data", help="HDF5 file")
    info.add_argument("--x-key", default="X")
    info.add_argument("--y-key", default="y", help="label dataset, or 'none'")
    info.add_argument("--json", metavar="PATH", help="also write everything as JSON")
    info.add_argument(
        "--show", type=int, default=20, metavar="N", help="features listed (default: 20)"
    )
    info.set_defaults(func=_info)
    return parser


def _progress_printer(say, every: int, start: float):
    shown = []

    def show(p: Progress) -> None:
        if not shown:
            say(f"{'iter':>7}  {'loss':>15}  {'|grad|':>9}  {'step':>9}  {'elapsed':>9}")
        if not shown or p.nit % every == 0:
            shown.append(p.nit)
            say(
                f"{p.nit:>7d}  {p.fun:.9e}  {p.grad_norm:9.2e}  {p.step:9.2e}  "
                f"{wtime() - start:8.2f}s"
            )

    return show


def _reporter(comm, quiet: bool):
    """Rank-0 progress output, or nothing with ``--quiet``."""
    return (lambda *parts: None) if quiet else (lambda *parts: print0(comm, *parts))


def _check_output(comm, path, inputs=()) -> None:
    """Fail on every rank, before any work, if rank 0 cannot write ``path`` (or it is
    one of the ``inputs``)."""
    with agreed(comm, root=0):
        problem = output_problem(path, inputs) if comm.rank == 0 else None
        if problem:
            raise MpigdError(problem)


def _train(args, comm) -> int:
    say = _reporter(comm, args.quiet)
    _check_output(comm, args.out)
    if args.checkpoint:
        _check_output(comm, args.checkpoint)
    say(
        f"mpigd {__version__}: {args.model} regression on {args.data}, {comm.size} rank"
        f"{'s' if comm.size > 1 else ''} ({library_version()})"
    )
    start = wtime()
    fitted = fit(
        args.data,
        args.model,
        comm=comm,
        optimizer=args.optimizer,
        l2=args.l2,
        l1=args.l1,
        lr=args.lr,
        max_iter=args.max_iter,
        standardize=args.standardize,
        weight_key=args.weight_key,
        class_weight=args.class_weight,
        batch_size=args.batch_size,
        seed=args.seed,
        tol=args.tol,
        ftol=args.ftol,
        x_key=args.x_key,
        y_key=args.y_key,
        callback=_progress_printer(say, args.print_every, start),
        checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
    )
    with agreed(comm, root=0):
        if comm.rank == 0:
            _save(fitted.model, args.out)

    r, t, info = fitted.result, fitted.timings, fitted.model.info
    status = "converged" if r.converged else "NOT converged"
    say(f"{info['optimizer']}: {status}: {r.message}")
    say(f"iterations {r.nit}, function evaluations {r.nfev}, allreduces {info['allreduces']}")
    say(f"final loss {r.fun:.12g}, gradient norm {r.grad_norm:.3g}")
    say(f"data: {info['n_rows']:,} rows x {info['n_features']} features on {comm.size} ranks")
    say("time, max over ranks: " + "  ".join(f"{k} {v:.3f}s" for k, v in t.items()))
    say(f"model written to {args.out}")
    return 0


def _write_json(comm, path, record) -> None:
    """Rank 0 writes ``record`` (atomically); a failure ends every rank."""
    with agreed(comm, root=0):
        if comm.rank == 0:
            try:
                write_json(path, record)
            except OSError as exc:
                raise MpigdError(f"cannot write {path}: {exc}") from exc


def _save(model, path) -> None:
    try:
        model.save(path)
    except OSError as exc:
        raise MpigdError(f"cannot write {path}: {exc}") from exc


def _metric_lines(scores: dict) -> list[str]:
    """The metrics as an aligned two-column table."""
    names = {
        "rows": "rows",
        "rmse": "RMSE",
        "mae": "MAE",
        "r2": "R^2",
        "log_loss": "log-loss",
        "accuracy": "accuracy",
        "precision": "precision",
        "recall": "recall",
        "f1": "F1",
        "roc_auc": "ROC AUC",
    }
    lines = []
    for key, name in names.items():
        if key in scores:
            value = scores[key]
            text = f"{value:,}" if isinstance(value, int) else f"{value:.6f}"
            if key == "roc_auc":
                bound = scores["roc_auc_bound"]
                text += " (exact)" if bound == 0 else f" (+- {bound:.1e})"
            lines.append(f"  {name:<10} {text}")
    if "confusion_matrix" in scores:
        lines.append("  confusion matrix (rows: true class, columns: predicted)")
        lines += ["    " + " ".join(f"{c:>10,}" for c in row) for row in scores["confusion_matrix"]]
    return lines


def _evaluate(args, comm) -> int:
    say = _reporter(comm, args.quiet)
    if args.json:
        _check_output(comm, args.json, [args.model, args.data])
    scores = evaluate(args.data, args.model, comm=comm, x_key=args.x_key, y_key=args.y_key)
    say(f"{scores['model']} model {args.model} on {args.data} ({comm.size} ranks):")
    for line in _metric_lines(scores):
        say(line)
    if args.json:
        _write_json(comm, args.json, {**scores, "model_path": os.path.abspath(args.model)})
        say(f"metrics written to {args.json}")
    return 0


def _predict(args, comm) -> int:
    _check_output(comm, args.out, [args.model, args.data])
    rows = predict(args.data, args.model, args.out, comm=comm, x_key=args.x_key)
    _reporter(comm, args.quiet)(f"{rows:,} predictions written to {args.out}")
    return 0


def _bench_run(args, comm) -> int:
    _check_output(comm, args.out)
    with agreed(comm):
        record = measure(comm, args.data, args.model, evals=args.evals, warmup=args.warmup)
    _write_json(comm, args.out, record)
    if comm.rank == 0:
        _reporter(comm, args.quiet)(
            f"{comm.size} ranks: {record['eval_median'] * 1e3:.2f} ms per evaluation, pass "
            f"{record['pass_gb_s']:.1f} GB/s of {record['stream_gb_s']:.1f} GB/s read "
            f"bandwidth; record in {args.out}"
        )
    return 0


def _bench_report(args, comm) -> int:
    say = _reporter(comm, args.quiet)
    _check_output(comm, args.out + ".csv")
    with agreed(comm, root=0):
        if comm.rank == 0:
            for line in report(args.records, args.out, args.kind):
                say(line)
    return 0


def _tenths(say):
    """A progress callback that reports each tenth of the rows once."""
    reported = [0]

    def progress(done: int, total: int) -> None:
        tenth = 10 * done // total
        if tenth > reported[0]:
            reported[0] = tenth
            say(f"{done:,} / {total:,} rows ({10 * tenth}%)")

    return progress


def _make(args, comm) -> int:
    say = _reporter(comm, args.quiet)
    _check_output(comm, args.out)
    with agreed(comm, root=0):
        if comm.rank == 0:
            make_dataset(
                args.out,
                args.rows,
                args.features,
                kind=args.model,
                seed=args.seed,
                noise=args.noise,
                dtype=args.dtype,
                progress=_tenths(say),
            )
    say(
        f"wrote {args.out}: {args.rows:,} x {args.features} {args.dtype}, "
        f"{args.model}, seed {args.seed}"
    )
    return 0


@contextmanager
def _progress_bars(quiet: bool):
    """A factory of progress callbacks ``start(total) -> update(done)``, drawn as bars on
    stderr when it is a terminal (never with ``--quiet``); closes them on exit."""
    bars = []

    def start(total: int):
        bar = tqdm(
            total=total,
            unit=" rows",
            unit_scale=True,
            disable=True if quiet else None,
            file=sys.stderr,
            mininterval=0.5,
        )
        bars.append(bar)
        return bar.update

    try:
        yield start
    finally:
        for bar in bars:
            bar.close()


def _convert(args, comm) -> int:
    say = _reporter(comm, args.quiet)
    _check_output(comm, args.out, [args.input])
    with agreed(comm, root=0):
        source = None
        if comm.rank == 0:
            with _progress_bars(args.quiet) as bars:
                source = convert(
                    args.input,
                    args.out,
                    fmt=args.format,
                    label=args.label,
                    header=args.header,
                    delimiter=args.delimiter,
                    n_features=args.features,
                    zero_based=args.zero_based,
                    dtype=args.dtype,
                    contiguous=args.contiguous,
                    compression=args.compression,
                    progress=lambda source: bars(source.n_rows),
                )
    if source is not None:
        say(
            f"wrote {args.out}: {source.n_rows:,} rows x {source.n_features} features "
            f"{args.dtype}; " + "; ".join(source.notes)
        )
    return 0


def _split(args, comm) -> int:
    say = _reporter(comm, args.quiet)
    stem = os.path.splitext(args.data)[0]
    train, test = args.train or f"{stem}-train.h5", args.test or f"{stem}-test.h5"
    for out in (train, test):
        _check_output(comm, out, [args.data])
    with agreed(comm, root=0):
        counts = None
        if comm.rank == 0:
            with _progress_bars(args.quiet) as bars:
                counts = split_file(
                    args.data,
                    train,
                    test,
                    test_fraction=args.test_fraction,
                    seed=args.seed,
                    x_key=args.x_key,
                    progress=bars(None),
                )
    if counts is not None:
        say(f"wrote {train} ({counts[0]:,} rows) and {test} ({counts[1]:,} rows), seed {args.seed}")
    return 0


def _info(args, comm) -> int:
    say = _reporter(comm, args.quiet)
    if args.json:
        _check_output(comm, args.json, [args.data])
    y_key = None if args.y_key.lower() == "none" else args.y_key
    summary = describe(comm, args.data, args.x_key, y_key)
    for line in _summary_lines({**summary, "path": args.data}, args.show):
        say(line)
    if args.json:
        _write_json(comm, args.json, summary)
    return 0


def _summary_lines(summary: dict, show: int) -> list[str]:
    lines = [
        f"{summary['path']}: {summary['rows']:,} rows x {summary['features']} features, "
        f"{summary['file_bytes'] / 2**20:,.1f} MiB"
    ]
    for key, d in summary["datasets"].items():
        chunks = (
            d["chunks"]
            if d["chunks"] == "contiguous"
            else "chunks " + "x".join(map(str, d["chunks"]))
        )
        lines.append(
            f"  {key}: {d['dtype']} {'x'.join(map(str, d['shape']))}, {chunks}, "
            f"compression {d['compression']}"
        )
    if "label_stats" in summary:
        if summary["classes"] is not None:
            total = summary["rows"]
            lines.append(
                "  labels: "
                + ", ".join(
                    f"{k}: {v:,} ({100 * v / total:.1f}%)" for k, v in summary["classes"].items()
                )
            )
        else:
            s = summary["label_stats"]
            lines.append(f"  labels: min {s['min']:.6g}, mean {s['mean']:.6g}, max {s['max']:.6g}")
    stats = summary["feature_stats"]
    names = summary["feature_names"] or [str(j) for j in range(summary["features"])]
    lines.append(f"  {'feature':<20} {'min':>12} {'mean':>12} {'max':>12}")
    for j in range(min(show, summary["features"])):
        bad = stats["non_finite"][j]
        lines.append(
            f"  {names[j][:20]:<20} {stats['min'][j]:12.5g} {stats['mean'][j]:12.5g} "
            f"{stats['max'][j]:12.5g}" + (f"  ({bad:,} NaN/inf)" if bad else "")
        )
    if summary["features"] > show:
        lines.append(f"  ... {summary['features'] - show} more (--show N, or --json)")
    return lines


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"mpigd: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mpigd`` and ``python -m mpigd``. Collective: yes."""
    try:
        comm = default_comm()
    except MpigdError as exc:  # P copies of a 1-rank world: only the launcher's rank 0 says so
        if launcher_rank() == 0:
            print(f"mpigd: {exc.label}: {exc}", file=sys.stderr, flush=True)
        return exc.exit_status
    args = build_parser(comm.rank).parse_args(argv)
    warnings.formatwarning = _one_line_warning
    with threadpool_limits(limits=args.threads, user_api="blas"):
        return run_guarded(lambda: args.func(args, comm), comm, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
