"""The ``mpigd`` command line: one module per command group, all run under one guard.

:func:`main` parses the same arguments on every rank (only rank 0 prints help and usage
errors), limits BLAS threads and runs the command inside
:func:`mpigd.cli.guard.run_guarded`, which turns errors into one line and an exit status.
The command modules are imported by :func:`build_parser`, once MPI runs, so that a
problem found while importing them (``MPIGD_KERNELS=bogus``) is one line too.
"""

from __future__ import annotations

import signal
import sys
import warnings

from .._version import __version__
from ..errors import Interrupted, MpigdError
from ..parallel import default_comm, launcher_rank, print0
from ..threads import blas_threads
from .common import RootParser, run_options
from .guard import run_guarded


def build_parser(rank: int = 0) -> RootParser:
    """The parser of every command; only ``rank`` 0 prints. Importing the commands
    imports the kernels, whose environment switch may raise :class:`MpigdError`.
    Collective: no."""
    from . import bench, cv, data, scoring, train

    RootParser.rank = rank
    parser = RootParser(
        prog="mpigd",
        description="Train linear models on HDF5 data with MPI. "
        "Run under mpiexec: mpiexec -n P mpigd train ...",
    )
    parser.add_argument("--version", action="version", version=f"mpigd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    shared = run_options()
    for group in (train, cv, scoring, bench, data):
        group.register(commands, shared)
    return parser


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
    try:
        parser = build_parser(comm.rank)
    except MpigdError as exc:  # the environment, alike on every rank: rank 0 says so
        print0(comm, f"mpigd: {exc.label}: {exc}", file=sys.stderr)
        return exc.exit_status
    args = parser.parse_args(argv)
    warnings.formatwarning = _one_line_warning
    signal.signal(signal.SIGTERM, Interrupted.on_signal)  # unwind, removing partial outputs
    return run_guarded(lambda: _run(args, comm), comm, debug=args.debug)


def _run(args, comm) -> int:
    with blas_threads(args.threads):
        return args.func(args, comm)
