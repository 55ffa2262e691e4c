"""Exceptions that end a run on every rank alike, and the exit status each one means.

Code that raises them under MPI must raise them on every rank (see ``parallel.rank_local``),
otherwise the ranks that did not raise would wait in the next collective. The command
line turns each into one line on stderr from rank 0 and the exit status below.

A problem found in some ranks' rows (:meth:`MpigdError.in_rows`) keeps its count and rows
apart from its wording, so that when several ranks report it, ``parallel.agree`` merges
them into one sentence with the counts summed, the rows joined and the ranks as ranges.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

#: Exit statuses of the ``mpigd`` command (``EX_TEMPFAIL`` from sysexits.h for preemption;
#: an interrupt exits with 128 + the signal's number, as shells report it).
EXIT_OK, EXIT_ABORTED, EXIT_INPUT, EXIT_DIVERGED, EXIT_PREEMPTED = 0, 1, 2, 3, 75


def plural(count: int, noun: str) -> str:
    """``1 rank``, ``2 ranks``, ``1,024 rows``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def literal(text) -> str:
    """``text`` made safe inside a :class:`RowsProblem` template (braces doubled)."""
    return str(text).replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class RowsProblem:
    """A problem in a range of rows: ``template`` has the fields ``{count}``, ``{rows}``
    and, optionally, ``{example}``."""

    template: str
    count: int
    start: int
    stop: int
    example: str = ""

    def text(self, count: int | None = None, rows: str | None = None) -> str:
        return self.template.format(
            count=self.count if count is None else count,
            rows=f"{self.start}:{self.stop}" if rows is None else rows,
            example=self.example,
        )


class MpigdError(Exception):
    """A problem with the input, the options or the environment."""

    exit_status = EXIT_INPUT
    label = "error"

    def __init__(self, message: str = "", *, rows: RowsProblem | None = None):
        super().__init__(message if rows is None else rows.text())
        self.rows = rows

    @classmethod
    def in_rows(cls, template: str, count: int, start: int, stop: int, example: str = ""):
        """The error for ``count`` bad values in rows ``start:stop`` (see
        :class:`RowsProblem`)."""
        return cls(rows=RowsProblem(template, int(count), int(start), int(stop), example))


class InvalidInputError(MpigdError, ValueError):
    """Bad arrays or parameters handed to the Python API (the estimators, in-memory rows):
    a ``ValueError`` as scikit-learn and NumPy users expect, and an :class:`MpigdError`
    (exit status :data:`EXIT_INPUT`, agreed over the ranks like any other)."""


class Diverged(MpigdError):
    """The loss or gradient became NaN or infinite during training."""

    exit_status = EXIT_DIVERGED


class Preempted(MpigdError):
    """A signal asked the run to stop; a checkpoint was written and it can be resumed."""

    exit_status = EXIT_PREEMPTED
    label = "preempted"


class Interrupted(BaseException):
    """SIGTERM (or SIGINT, as ``KeyboardInterrupt``) ended a command. Like
    ``KeyboardInterrupt`` it is no ``Exception``, so that no handler takes it for an
    error of the work: it unwinds every ``with`` block, which removes partial outputs."""

    #: The signal that arrived, until the command's guard has reported it. Python only
    #: prints an exception raised inside a finaliser or weakref callback, so a signal that
    #: lands there is lost as an exception: outputs check this before they are committed,
    #: and the guard before it reports success.
    pending: int | None = None

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_status = 128 + signum

    @classmethod
    def on_signal(cls, signum, frame):
        """A signal handler that raises it."""
        cls.pending = signum
        raise cls(signum)

    @classmethod
    def agreed(cls) -> Interrupted:
        """The interrupt that every rank raises once the ranks have agreed to stop for a
        signal on some rank (this one's, else SIGTERM). Collective: no."""
        return cls(cls.pending or signal.SIGTERM)

    @classmethod
    def raise_pending(cls) -> None:
        """Raise it again if a signal arrived whose exception may have been lost."""
        if cls.pending is not None:
            signum, cls.pending = cls.pending, None
            raise cls(signum)


# ------------------------------------------------ one error from the reports of all ranks


def _rank_list(ranks: list[int], shown: int = 8) -> str:
    """``rank 3`` or ``ranks 0-63, 70``: consecutive ranks as ranges, at most ``shown``."""
    runs: list[list[int]] = []
    for rank in ranks:
        if runs and rank == runs[-1][1] + 1:
            runs[-1][1] = rank
        else:
            runs.append([rank, rank])
    text = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs[:shown])
    if len(runs) > shown:
        text += f" and {sum(b - a + 1 for a, b in runs[shown:])} more"
    return f"rank{'s' if len(ranks) > 1 else ''} {text}"


def _row_ranges(problems: list[RowsProblem], shown: int = 4) -> str:
    """The rows of several problems as ``0:34, 67:101``, adjacent ranges joined."""
    spans: list[list[int]] = []
    for p in sorted(problems, key=lambda p: p.start):
        if spans and p.start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], p.stop)
        else:
            spans.append([p.start, p.stop])
    text = ", ".join(f"{a}:{b}" for a, b in spans[:shown])
    return text + (f" and {len(spans) - shown} more ranges" if len(spans) > shown else "")


Report = tuple[type, str, RowsProblem | None]


def report_of(error: str | MpigdError | Report | None) -> Report | None:
    """What a rank sends of its error: class, message and rows problem (picklable)."""
    if error is None or isinstance(error, tuple):
        return error
    if isinstance(error, MpigdError):
        return type(error), str(error) or type(error).__name__, error.rows
    return MpigdError, error, None


def merge_reports(reports: list, size: int) -> MpigdError | None:
    """One error for the reports of all ranks: the same problem on several ranks is one
    sentence (counts summed, rows joined) naming the ranks, unless every rank had it."""
    groups: dict[tuple, list[tuple[int, Report]]] = {}
    for rank, report in enumerate(map(report_of, reports)):
        if report is not None:
            kind, message, rows = report
            key = (kind, rows.template) if rows is not None else (kind, message)
            groups.setdefault(key, []).append((rank, report))
    if not groups:
        return None
    parts = []
    for members in groups.values():
        ranks = [rank for rank, _ in members]
        problems = [report[2] for _, report in members]
        if problems[0] is not None:
            total = sum(p.count for p in problems)
            message = problems[0].text(count=total, rows=_row_ranges(problems))
        else:
            message = members[0][1][1]
        parts.append(message if len(ranks) == size else f"{message} (on {_rank_list(ranks)})")
    kind = next(iter(groups.values()))[0][1][0]
    return kind("; ".join(parts))
