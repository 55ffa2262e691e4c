"""``mpigd data``: make, convert, split and describe datasets."""

from __future__ import annotations

import os

from ..errors import MpigdError
from ..io import FORMATS
from ..parallel import on_root
from .common import (
    add_command,
    add_command_group,
    add_text_options,
    add_x_key,
    check_outputs_on_root,
    on_root_with_bars,
    positive_int,
    reporter,
    tenths,
    text_input,
    write_json_on_root,
)


def register(commands, run_options) -> None:
    data = add_command_group(commands, "data", help="dataset tools")
    _register_make(data, run_options)
    _register_convert(data, run_options)
    _register_split(data, run_options)
    _register_info(data, run_options)


def _register_make(data, run_options) -> None:
    make = add_command(
        data,
        "make",
        run_options,
        run_make,
        help="write a synthetic dataset",
        description="Write a synthetic regression dataset, block by block.",
    )
    make.add_argument("out", help="HDF5 file to write (a TSV file with --format criteo)")
    make.add_argument(
        "--format",
        choices=["hdf5", "criteo"],
        default="hdf5",
        help="criteo: a click log in Criteo's layout (label, 13 counts, 26 hashed tokens, "
        "tab-separated text) for the hashing trick (default: hdf5)",
    )
    make.add_argument("--rows", type=positive_int, required=True, help="rows to write")
    make.add_argument("--features", type=positive_int, help="features per row (HDF5)")
    make.add_argument(
        "--model",
        choices=["linear", "logistic", "poisson"],
        default="logistic",
        help="kind of labels: values, 0/1, or counts",
    )
    make.add_argument("--seed", type=int, default=0, help="random seed")
    make.add_argument("--noise", type=float, default=0.1, help="label noise (linear only)")
    _add_dtype(make)
    make.add_argument(
        "--density",
        type=float,
        help="store X sparse (CSR) with this share of values per row, in columns of skewed "
        "popularity (default: dense)",
    )
    make.add_argument(
        "--popularity",
        choices=["zipf", "flat"],
        default="zipf",
        help="with --density: columns drawn with Zipf-like popularity (column j about 1/(j+1) "
        "as often as column 0, as in click logs and text) or all alike (as after hashing)",
    )


def _register_convert(data, run_options) -> None:
    convert = add_command(
        data,
        "convert",
        run_options,
        run_convert,
        help="convert CSV, LIBSVM/svmlight, .npy or .npz to HDF5",
        description="Convert a file to mpigd's HDF5 layout (X, y), streaming in row blocks.",
    )
    convert.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="CSV/TSV or LIBSVM/svmlight files or globs (rows in the order given; .gz, .bz2 "
        "and .xz too), or one .npy or .npz file",
    )
    convert.add_argument("out", help="HDF5 file to write")
    convert.add_argument("--format", choices=FORMATS, help="default: from the file name")
    convert.add_argument(
        "--label",
        help="label column: a name (CSV header) or 0-based index, or 'none' (default: the "
        "last column; LIBSVM: the first field; .npz: array y)",
    )
    convert.add_argument(
        "--features", type=positive_int, help="LIBSVM: number of features (default: largest index)"
    )
    add_text_options(convert)
    _add_dtype(convert)
    convert.add_argument(
        "--contiguous", action="store_true", help="no chunks (default: chunks of ~1 MiB of rows)"
    )
    convert.add_argument("--compression", choices=["gzip", "lzf"], help="compress the chunks")
    layout = convert.add_mutually_exclusive_group()
    layout.add_argument(
        "--sparse",
        dest="layout",
        action="store_const",
        const="sparse",
        help="store X as a CSR group (the default for LIBSVM)",
    )
    layout.add_argument(
        "--dense",
        dest="layout",
        action="store_const",
        const="dense",
        help="store X as a dense dataset (the default for CSV and NumPy files)",
    )


def _register_split(data, run_options) -> None:
    split = add_command(
        data,
        "split",
        run_options,
        run_split,
        help="shuffled train/test split",
        description="Split DATA.h5 into shuffled training and test files, in bounded memory.",
    )
    split.add_argument(
        "data",
        help="HDF5 or .h5ad file; every dataset with one entry per row is split (an .h5ad's "
        "obs columns too), the rest copied",
    )
    split.add_argument("--test-fraction", type=float, required=True, help="e.g. 0.2")
    split.add_argument("--seed", type=int, default=0, help="seed of the random split")
    split.add_argument(
        "--train", help="training file (default: DATA-train.h5, or .h5ad for an .h5ad)"
    )
    split.add_argument("--test", help="test file (default: DATA-test.h5, or .h5ad for an .h5ad)")
    add_x_key(split, help="dataset that defines the rows")


def _register_info(data, run_options) -> None:
    info = add_command(
        data,
        "info",
        run_options,
        run_info,
        help="layout and per-feature statistics",
        description="Shape, dtypes, chunking, label balance and per-feature min/mean/max; "
        "under mpiexec each rank reads its own rows.",
    )
    info.add_argument("data", help="HDF5 file")
    add_x_key(info)
    info.add_argument("--y-key", default="y", help="label dataset, or 'none'")
    info.add_argument("--json", metavar="PATH", help="also write everything as JSON")
    info.add_argument(
        "--show", type=int, default=20, metavar="N", help="features listed (default: 20)"
    )


def _add_dtype(parser) -> None:
    parser.add_argument(
        "--dtype", choices=["float64", "float32"], default="float64", help="type of X's values"
    )


def run_make(args, comm) -> int:
    """``mpigd data make``; returns the exit status. Collective: yes."""
    from ..io.synthetic import make_dataset  # each tool imports its own readers

    say = reporter(comm, args.quiet)
    check_outputs_on_root(comm, {"the output": args.out})
    if args.format == "criteo":
        return _make_criteo(comm, args, say)
    if args.features is None:
        raise MpigdError("data make needs --features N (but --format criteo)")
    on_root(
        comm,
        lambda: make_dataset(
            args.out,
            args.rows,
            args.features,
            kind=args.model,
            seed=args.seed,
            noise=args.noise,
            dtype=args.dtype,
            density=args.density,
            popularity=args.popularity,
            progress=tenths(say),
        ),
    )
    say(
        f"wrote {args.out}: {args.rows:,} x {args.features} {args.dtype}, "
        f"{args.model}, seed {args.seed}"
        + (
            ""
            if args.density is None
            else f", sparse at density {args.density:g}, {args.popularity} column popularity"
        )
    )
    return 0


def _make_criteo(comm, args, say) -> int:
    from ..io.criteo import write_criteo

    on_root(comm, lambda: write_criteo(args.out, args.rows, seed=args.seed))  # atomic
    say(f"wrote {args.out}: {args.rows:,} lines in Criteo's layout, seed {args.seed}")
    return 0


def run_convert(args, comm) -> int:
    """``mpigd data convert``: text on every rank (:mod:`mpigd.io.text_convert`), NumPy
    files and compressed outputs on rank 0; returns the exit status. Collective: yes."""
    from ..io.convert import convert, guess_format
    from ..io.ranges import expand_inputs
    from ..io.text_convert import convert_text

    say = reporter(comm, args.quiet)
    fmt = args.format or on_root(
        comm, lambda: guess_format(expand_inputs(args.inputs)[0]), share=True
    )
    if fmt in ("libsvm", "csv", "tsv") and args.compression is None:
        source = text_input(args, tuple(args.inputs), fmt)
        done = convert_text(comm, source, args.out, dtype=args.dtype, layout=args.layout)
    else:
        done = _convert_on_root(comm, args, fmt, convert)
    if done is not None:
        say(
            f"wrote {args.out}: {done.n_rows:,} rows x {done.n_features} features "
            f"{args.dtype}; " + "; ".join(done.notes)
        )
    return 0


def _convert_on_root(comm, args, fmt: str, convert):
    """One input converted by rank 0 (NumPy files, a compressed output)."""
    if len(args.inputs) > 1:
        on_root(comm, lambda: _refuse_several(args.inputs, fmt, args.compression))
    check_outputs_on_root(comm, {"the output": args.out}, {"the input": args.inputs[0]})
    return on_root_with_bars(
        comm,
        args.quiet,
        lambda bars: convert(
            args.inputs[0],
            args.out,
            fmt=fmt,
            label=args.label,
            header=args.header,
            delimiter=args.delimiter,
            n_features=args.features,
            zero_based=args.zero_based,
            dtype=args.dtype,
            contiguous=args.contiguous,
            compression=args.compression,
            layout=args.layout,
            progress=lambda source: bars(source.n_rows),
        ),
    )


def _refuse_several(inputs, fmt: str, compression) -> None:
    why = f"with --compression {compression}" if compression else f"{fmt} files"
    raise MpigdError(f"{len(inputs)} inputs given: {why} are converted one at a time")


def run_split(args, comm) -> int:
    """``mpigd data split``; returns the exit status. Collective: yes."""
    from ..io.split import split as split_file

    say = reporter(comm, args.quiet)
    stem, suffix = os.path.splitext(args.data)
    suffix = suffix if suffix.lower() == ".h5ad" else ".h5"  # an .h5ad stays one
    train, test = args.train or f"{stem}-train{suffix}", args.test or f"{stem}-test{suffix}"
    check_outputs_on_root(comm, {"--train": train, "--test": test}, {"the data file": args.data})

    counts = on_root_with_bars(
        comm,
        args.quiet,
        lambda bars: split_file(
            args.data,
            train,
            test,
            test_fraction=args.test_fraction,
            seed=args.seed,
            x_key=args.x_key,
            progress=bars(None),
        ),
    )
    if counts is not None:
        say(f"wrote {train} ({counts[0]:,} rows) and {test} ({counts[1]:,} rows), seed {args.seed}")
    return 0


def run_info(args, comm) -> int:
    """``mpigd data info``; returns the exit status. Collective: yes."""
    from ..io.info import describe

    say = reporter(comm, args.quiet)
    if args.json:
        check_outputs_on_root(comm, {"--json": args.json}, {"the data file": args.data})
    y_key = None if args.y_key.lower() == "none" else args.y_key
    summary = describe(comm, args.data, args.x_key, y_key)
    for line in summary_lines({**summary, "path": args.data}, args.show):
        say(line)
    if args.json:
        write_json_on_root(comm, args.json, summary)
    return 0


def summary_lines(summary: dict, show: int) -> list[str]:
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
    if "sparse" in summary:
        s = summary["sparse"]
        per_row = s["values_per_row"]
        lines.append(
            f"  sparse: {s['nnz']:,} values, density {100 * s['density']:.3g}%, per row "
            f"{per_row['min']:,} / {per_row['mean']:.1f} / {per_row['max']:,} (min/mean/max)"
        )
    if "label_stats" in summary:
        if summary["classes"] is not None:
            total = summary["rows"]
            names = summary.get("class_names") or {}
            lines.append(
                "  labels: "
                + ", ".join(
                    f"{k}{f' ({names[k]})' if k in names else ''}: {v:,} ({100 * v / total:.1f}%)"
                    for k, v in summary["classes"].items()
                )
            )
        else:
            s = summary["label_stats"]
            lines.append(f"  labels: min {s['min']:.6g}, mean {s['mean']:.6g}, max {s['max']:.6g}")
    stats = summary["feature_stats"]
    if stats is None:
        return [*lines, f"  features: {summary['note']}"]
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
