"""The guard around a command: every failure becomes one line and an exit status on
every rank, and nothing that can hit one rank only leaves the others waiting (the job is
aborted instead). The interrupt and error reports of :func:`run_guarded`."""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Callable

from ..errors import EXIT_ABORTED, Interrupted, MpigdError
from ..parallel import INTERRUPT_GRACE, INTERRUPT_STAGGER, abort_job, print0


def _interrupted(comm, exc: BaseException) -> int:
    """Report an interrupt once and end the job; the ``with`` blocks it unwound have
    removed the partial outputs. Ranks may have been stopped at different points, so
    with several ranks the job ends by ``MPI_Abort`` rather than waiting for them."""
    signum = signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.Signals[str(exc)]
    status = 128 + signum
    line = f"mpigd: interrupted by {signum.name}; partial outputs removed"
    if comm.size == 1:
        print(line, file=sys.stderr, flush=True)
        return status
    if comm.rank != 0:
        time.sleep(INTERRUPT_GRACE + INTERRUPT_STAGGER * min(comm.rank - 1, 16))
        line = f"{line} (rank {comm.rank})"
    abort_job(comm, line, status)
    return status  # not reached


def _output_closed(comm) -> int:
    """Standard output's reader went away (``mpigd data info X | head``): end as a Unix
    filter does, quietly with 128 + SIGPIPE. Only rank 0 writes there, and the others may
    be waiting for it in a collective, so with several ranks the job is ended."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit flush
    status = 128 + signal.SIGPIPE
    if comm.size > 1:
        abort_job(comm, "mpigd: output closed (broken pipe); ending all ranks", status)
    return status


def run_guarded(main: Callable[[], int], comm, *, debug: bool = False) -> int:
    """Run ``main`` so that no failure can leave ranks hanging.

    An :class:`MpigdError` (raised on every rank by construction) is reported once by
    rank 0 and turns into its exit status (2 for bad input, 3 for divergence, 75 for
    preemption) on every rank. Any other exception is a bug or an
    environment failure that may have hit this rank only: it is reported with the rank
    and the whole job is aborted with ``MPI_Abort`` instead of waiting in a collective.
    ``SystemExit`` passes through: it is raised deliberately, and identically on every
    rank (argument parsing). A closed standard output (a pipe into ``head``) ends the
    job quietly with 128 + SIGPIPE. ``debug`` (or ``MPIGD_DEBUG=1``) adds tracebacks.
    Collective: no.
    """
    debug = debug or os.environ.get("MPIGD_DEBUG", "") not in ("", "0")
    try:
        status = main()
        Interrupted.raise_pending()  # a signal whose exception a finaliser swallowed
        return status
    except MpigdError as exc:
        if debug:
            traceback.print_exc()
        print0(comm, f"mpigd: {exc.label}: {exc}", file=sys.stderr)
        return exc.exit_status
    except (Interrupted, KeyboardInterrupt) as exc:
        if debug:
            traceback.print_exc()
        return _interrupted(comm, exc)
    except BrokenPipeError:
        return _output_closed(comm)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        abort_job(
            comm,
            f"mpigd: internal error on rank {comm.rank}: {detail}; aborting all ranks"
            + ("" if debug else " (MPIGD_DEBUG=1 or --debug shows the traceback)"),
            EXIT_ABORTED,
        )
        return EXIT_ABORTED  # not reached
    finally:
        Interrupted.pending = None  # reported (or superseded): not the next command's
