"""``mpigd bench``: measure one run under MPI, and report on many."""

from __future__ import annotations

from ..errors import plural
from ..io.outputs import check_outputs
from ..kernels.losses import MODELS
from ..parallel import on_root
from .common import (
    add_command,
    add_command_group,
    add_memory,
    add_out,
    add_x_key,
    add_y_key,
    check_outputs_on_root,
    positive_int,
    reporter,
    write_json_on_root,
)


def register(commands, run_options) -> None:
    bench = add_command_group(commands, "bench", help="scaling measurements")
    run = add_command(
        bench,
        "run",
        run_options,
        run_measure,
        help="measure one run (under mpiexec) and write its record",
        description="Time evaluations, memory bandwidth and Allreduce at this rank count.",
    )
    run.add_argument("data", help="HDF5 file with X and y")
    add_out(run, "JSON record to write")
    run.add_argument("--model", choices=list(MODELS), default="logistic", help="loss to time")
    run.add_argument("--evals", type=positive_int, default=20, help="timed evaluations")
    run.add_argument("--warmup", type=int, default=3, help="untimed evaluations first")
    add_x_key(run)
    add_y_key(run)
    add_memory(run)
    report = add_command(
        bench,
        "report",
        run_options,
        run_report,
        help="aggregate records into a table, CSV, model prediction and plots",
    )
    report.add_argument("records", nargs="+", help="JSON records, or folders of them")
    add_out(report, "output prefix (PREFIX.csv, .json, .png)")
    report.add_argument(
        "--kind", choices=["strong", "weak"], default="strong", help="kind of scaling sweep"
    )


def run_measure(args, comm) -> int:
    """``mpigd bench run``; returns the exit status. Collective: yes."""
    from ..bench.measure import measure  # not loaded by the other commands

    check_outputs_on_root(comm, {"--out": args.out}, {"the data file": args.data})
    record = measure(
        comm,
        args.data,
        args.model,
        evals=args.evals,
        warmup=args.warmup,
        x_key=args.x_key,
        y_key=args.y_key,
        memory=args.memory,
    )
    write_json_on_root(comm, args.out, record)
    if comm.rank == 0:
        reporter(comm, args.quiet)(
            f"{plural(comm.size, 'rank')}: {record['eval_median'] * 1e3:.2f} ms per evaluation, "
            f"pass {record['pass_gb_s']:.1f} GB/s of {record['stream_gb_s']:.1f} GB/s read "
            f"bandwidth; record in {args.out}"
        )
    return 0


def run_report(args, comm) -> int:
    """``mpigd bench report``; returns the exit status. Collective: yes."""
    from ..bench.report import REPORT_SUFFIXES, record_files, report

    say = reporter(comm, args.quiet)
    on_root(
        comm,
        lambda: check_outputs(
            [("--out gives", args.out + suffix) for suffix in REPORT_SUFFIXES],
            [("a benchmark record", file) for file in record_files(args.records)],
        ),
    )
    for line in on_root(comm, lambda: report(args.records, args.out, args.kind)) or []:
        say(line)
    return 0
