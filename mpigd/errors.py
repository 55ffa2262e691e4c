"""Exceptions that end a run on every rank alike, and the exit status each one means.

Code that raises them under MPI must raise them on every rank (see ``parallel.rank_local``),
otherwise the ranks that did not raise would wait in the next collective. The command
line turns each into one line on stderr from rank 0 and the exit status below.
"""

#: Exit statuses of the ``mpigd`` command (``EX_TEMPFAIL`` from sysexits.h for preemption).
EXIT_OK, EXIT_ABORTED, EXIT_INPUT, EXIT_DIVERGED, EXIT_PREEMPTED = 0, 1, 2, 3, 75


class MpigdError(Exception):
    """A problem with the input, the options or the environment."""

    exit_status = EXIT_INPUT
    label = "error"


class Diverged(MpigdError):
    """The loss or gradient became NaN or infinite during training."""

    exit_status = EXIT_DIVERGED


class Preempted(MpigdError):
    """A signal asked the run to stop; a checkpoint was written and it can be resumed."""

    exit_status = EXIT_PREEMPTED
    label = "preempted"
