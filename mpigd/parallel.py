"""The one module that imports ``mpi4py``: every collective call goes through here.

The communicator is always a parameter; :func:`default_comm` (called by the public entry
points :func:`mpigd.fit`, :func:`mpigd.evaluate`, :func:`mpigd.predict` and the command
line) falls back to ``COMM_WORLD``. Here live rank-0 output, the reductions, error
agreement across ranks and the deadline on reductions (the guard around a command is
:mod:`mpigd.cli.guard`).

Two kinds of work, never mixed: **rank-local work** that can fail on some ranks only
(reading a slice, checking its values, writing a file on rank 0) runs inside
:func:`rank_local` (or :func:`on_root`), which agrees on the failure afterwards; every
**collective** helper is marked :func:`collective` and refuses to run inside rank-local
work, raising :class:`CollectiveInLocalWork` at once (a bug) where it would otherwise
leave the ranks that failed waiting for the others.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
from mpi4py import MPI

from .errors import EXIT_ABORTED, MpigdError, merge_reports, report_of
from .host import available_memory, parse_bytes

wtime = MPI.Wtime
T = TypeVar("T")

#: Above 0 while this process runs rank-local work (:func:`rank_local`, :func:`on_root`,
#: the work of :func:`in_rank_order`).
_local_depth = 0


class CollectiveInLocalWork(Exception):
    """A collective call was made inside rank-local work: a bug in mpigd, reported at once
    (the guard around ``main`` aborts the job) instead of a hang."""


def collective(fn: Callable[..., T]) -> Callable[..., T]:
    """Mark ``fn`` as a collective call, which every rank of the communicator must make.
    Inside :func:`rank_local` it raises :class:`CollectiveInLocalWork` instead.
    Collective: no (it marks what is)."""

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        if _local_depth:
            raise CollectiveInLocalWork(
                f"{fn.__name__} is collective but was called inside rank-local work"
            )
        return fn(*args, **kwargs)

    return checked


#: Variables in which launchers tell each process how many they started, and its rank.
_LAUNCHERS = (
    ("srun", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID"),
    ("mpiexec (PMI)", "PMI_SIZE", "PMI_RANK"),
    ("Open MPI's mpirun", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
)


def _env_int(name: str) -> int | None:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return None


def launch_mismatch(size: int) -> str | None:
    """Why a ``COMM_WORLD`` of ``size`` processes cannot be what the launcher started,
    or None. A launcher that started P > 1 processes whose MPI library did not reach its
    process-management interface (PMI) leaves each one alone in a world of size 1: P
    separate copies of the job. Collective: no."""
    if size != 1:
        return None
    for launcher, size_var, _ in _LAUNCHERS:
        started = _env_int(size_var)
        if started is not None and started > 1:
            return (
                f"{launcher} started {started} processes ({size_var}={started}) but MPI sees "
                f"only 1, so each would train alone: {library_version()} did not connect to "
                "the launcher's PMI. With srun use --mpi=pmi2 for MPICH or --mpi=pmix for "
                "Open MPI (srun --mpi=list shows the choices), or start mpigd with the "
                "mpiexec of the MPI that mpi4py uses"
            )
    return None


def launcher_rank() -> int:
    """This process's rank as its launcher numbered it (0 when there is no launcher).
    Collective: no."""
    for _, _, rank_var in _LAUNCHERS:
        rank = _env_int(rank_var)
        if rank is not None:
            return rank
    return 0


def default_comm(comm: MPI.Comm | str | None = None) -> MPI.Comm:
    """``comm`` (an mpi4py communicator, or ``"world"`` or ``"self"`` by name), or
    ``COMM_WORLD`` when it is None; then an :class:`MpigdError` if the launcher started
    more processes than ``COMM_WORLD`` holds (:func:`launch_mismatch`). Collective: no."""
    deadline_seconds()  # a bad limit is an error before any work
    if isinstance(comm, str) and comm.lower() in ("world", "self"):
        comm = None if comm.lower() == "world" else MPI.COMM_SELF
    if comm is not None:
        if not isinstance(comm, MPI.Comm) or comm == MPI.COMM_NULL:
            raise MpigdError(
                f"comm={comm!r} is not an MPI communicator: pass None or 'world' "
                "(MPI.COMM_WORLD), 'self' (MPI.COMM_SELF) or an mpi4py communicator"
            )
        return comm
    problem = launch_mismatch(MPI.COMM_WORLD.size)
    if problem:
        raise MpigdError(problem)
    return MPI.COMM_WORLD


def print0(comm: MPI.Comm, *args, file=None) -> None:
    """Print on rank 0 only (stdout by default), flushed. Collective: no."""
    if comm.rank == 0:
        print(*args, file=sys.stdout if file is None else file, flush=True)


#: Seconds a rank that ends the job waits between its line and ``MPI_Abort``: the
#: launcher forwards a rank's output and its abort request on separate channels, and an
#: abort handled first tears the job down with the line still unforwarded.
ABORT_FLUSH = 0.5


def abort_job(comm: MPI.Comm, line: str, status: int) -> None:
    """Print ``line`` on stderr, give the launcher :data:`ABORT_FLUSH` s to forward it,
    and end every rank of the job with exit status ``status``. Collective: no (it is
    how one rank ends the others)."""
    print(line, file=sys.stderr, flush=True)
    time.sleep(ABORT_FLUSH)
    comm.Abort(status)


def warn0(comm: MPI.Comm, message: str, category: type[Warning] = UserWarning) -> None:
    """Issue a Python warning on rank 0 only. Collective: no."""
    if comm.rank == 0:
        warnings.warn(message, category, stacklevel=3)


#: How long a reduction may wait for the other ranks (seconds; ``0`` turns the limit
#: off): a rank that waits longer takes the job for lost (a node gone, or the network
#: between nodes silent, where TCP alone would wait for hours) and aborts it. Ranks
#: wait in a reduction only for the slowest rank's pass, so the limit is generous.
DEADLINE_ENV, DEADLINE_DEFAULT = "MPIGD_COLLECTIVE_TIMEOUT", 300.0


class _Deadline:
    """A watchdog thread that aborts the job when a collective wait (a reduction, a
    gather, a broadcast of control data) outlasts the deadline.

    It counts the time it sees pass in ticks of at most ``TICK`` s, each counted at most
    twice, so that a job suspended and resumed (``scontrol suspend``, Ctrl-Z) does not
    take its pause for a lost node. Ranks report in turn (rank r waits ``r`` times
    :attr:`STAGGER` more, at most 16), so that when rank 0 is alive its abort ends the
    job and one line is printed."""

    TICK = 1.0
    #: Seconds between ranks' reports: more than a tick and :data:`ABORT_FLUSH`, so
    #: that rank 0's abort lands before rank 1 reports.
    STAGGER = 2.0

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.waiting = False  # a reduction is in progress
        self.waited = 0.0  # seconds of it counted so far
        self.comm: MPI.Comm | None = None
        threading.Thread(target=self._watch, name="mpigd-deadline", daemon=True).start()

    def start(self, comm: MPI.Comm) -> None:
        self.comm, self.waited, self.waiting = comm, 0.0, True

    def _watch(self) -> None:
        tick = max(0.05, min(self.TICK, self.seconds / 4))
        last = time.monotonic()
        while True:
            time.sleep(tick)
            now = time.monotonic()
            step, last = min(now - last, 2 * tick), now
            comm = self.comm
            if not self.waiting or comm is None:
                continue
            self.waited += step
            if self.waited - self.seconds > self.STAGGER * min(comm.rank, 16):
                abort_job(
                    comm,
                    f"mpigd: error: rank {comm.rank}: a collective call waited more than "
                    f"{self.seconds:g} s for the other ranks: a rank stopped outside mpigd "
                    "(an error in the calling program), or a node, or the network between "
                    f"nodes, is lost ({DEADLINE_ENV} sets the limit); ending the job",
                    EXIT_ABORTED,
                )


_deadline: _Deadline | None = None
_deadline_decided = False  # whether this process has decided on its watchdog


def deadline_seconds() -> float:
    """:data:`DEADLINE_ENV`'s limit (0: none); an :class:`MpigdError` if it is not a
    number. Collective: no."""
    text = os.environ.get(DEADLINE_ENV, "")
    try:
        seconds = float(text) if text else DEADLINE_DEFAULT
    except ValueError:
        raise MpigdError(f"{DEADLINE_ENV}={text!r} is not a number of seconds") from None
    if not (seconds >= 0 and np.isfinite(seconds)):
        raise MpigdError(f"{DEADLINE_ENV}={text!r}: give seconds > 0, or 0 for no limit")
    return seconds


def _deadline_for(comm: MPI.Comm) -> _Deadline | None:
    """The watchdog, started on first use; none when the limit is off, the job has one
    rank (nothing to wait for), or MPI was not started with ``MPI_THREAD_MULTIPLE`` (the
    watchdog calls ``MPI_Abort`` from its own thread)."""
    global _deadline, _deadline_decided
    if comm.size == 1:
        return None
    if not _deadline_decided:  # once a process, not on every reduction
        _deadline_decided = True
        seconds = deadline_seconds()
        if seconds > 0 and MPI.Query_thread() == MPI.THREAD_MULTIPLE:
            _deadline = _Deadline(seconds)
    return _deadline


@contextmanager
def _within_deadline(comm: MPI.Comm) -> Iterator[None]:
    """A wait for every rank of ``comm`` (a reduction, a gather, a broadcast of control
    data) that ends the job after :data:`DEADLINE_ENV` seconds. Not around a wait for
    work of any length before it: one rank's (:func:`on_root`, :func:`in_rank_order`) or
    each rank's own (the agreement that ends :func:`rank_local`)."""
    deadline = _deadline_for(comm)
    if deadline is None:
        yield
        return
    deadline.start(comm)
    try:
        yield
    finally:
        deadline.waiting = False


def _wait(comm: MPI.Comm, call: Callable[..., T], *args, **kwargs) -> T:
    """``call(*args, **kwargs)``, one of ``comm``'s waits for every rank, within the
    deadline (:func:`_within_deadline`)."""
    with _within_deadline(comm):
        return call(*args, **kwargs)


def _reduce(comm: MPI.Comm, buf: np.ndarray, op) -> None:
    """``Allreduce`` in place, within the deadline (:data:`DEADLINE_ENV`)."""
    _wait(comm, comm.Allreduce, MPI.IN_PLACE, buf, op=op)


@collective
def allreduce_sum(comm: MPI.Comm, buf: np.ndarray) -> None:
    """Sum ``buf`` over all ranks, in place, with the buffer API, within the deadline
    (:data:`DEADLINE_ENV`). Collective: yes."""
    _reduce(comm, buf, MPI.SUM)


@collective
def bcast_from_root(comm: MPI.Comm, obj, root: int = 0):
    """``root``'s small Python object on every rank (pickle; control data only).
    Collective: yes."""
    return _wait(comm, comm.bcast, obj, root=root)


@collective
def barrier(comm: MPI.Comm) -> None:
    """Wait for every rank (before timing a collective phase). Collective: yes."""
    _wait(comm, comm.Barrier)


@collective
def gather_to_root(comm: MPI.Comm, obj, root: int = 0):
    """Every rank's small Python object, as a list on ``root`` (None elsewhere).
    Collective: yes."""
    return _wait(comm, comm.gather, obj, root=root)


@collective
def gather_all(comm: MPI.Comm, obj) -> list:
    """Every rank's small Python object, as a list on every rank. Collective: yes."""
    return _wait(comm, comm.allgather, obj)


@collective
def gather_parts(comm: MPI.Comm, part: np.ndarray, counts: list[int]) -> np.ndarray:
    """Every rank's float64 ``part`` (``counts[r]`` numbers from rank r) in rank order,
    on every rank, with the buffer API. Collective: yes."""
    out = np.empty(sum(counts))
    part = np.ascontiguousarray(part, dtype=np.float64)
    _wait(comm, comm.Allgatherv, part, [out, counts])
    return out


@collective
def rows_before(comm: MPI.Comm, n_local: int) -> int:
    """Sum of ``n_local`` over the ranks below this one (an exclusive scan). Collective: yes."""
    return _wait(comm, comm.exscan, n_local) or 0


@collective
def sums_before(comm: MPI.Comm, values) -> np.ndarray:
    """Element-wise sums of an int64 vector over the ranks below this one (an exclusive
    scan; zeros on rank 0). Collective: yes."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    out = np.zeros_like(values)
    _wait(comm, comm.Exscan, values, out, op=MPI.SUM)
    return out if comm.rank > 0 else np.zeros_like(values)


@collective
def max_over_ranks(comm: MPI.Comm, values: np.ndarray) -> np.ndarray:
    """Element-wise maximum of a float64 vector over all ranks. Collective: yes."""
    out = np.array(values, dtype=np.float64)
    _reduce(comm, out, MPI.MAX)
    return out


@collective
def min_max_over_ranks(comm: MPI.Comm, low, high) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise minimum of ``low`` and maximum of ``high`` over all ranks, in one
    reduction (the minima travel negated, so that MAX reduces both). Collective: yes."""
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    both = max_over_ranks(comm, np.concatenate([-low.ravel(), high.ravel()]))
    return -both[: low.size].reshape(low.shape), both[low.size :].reshape(high.shape)


#: Share of the available memory that one rank's data may take; the rest is headroom
#: for Python, MPI buffers and the computation's temporaries.
MEMORY_SHARE = 0.8


@collective
def memory_per_rank(comm: MPI.Comm, memory: float | None = None) -> float:
    """Bytes of data one rank may hold: ``memory`` if given (``--memory``), else
    ``MPIGD_MEMORY_PER_RANK`` (a size > 0, like ``4G``) if set, else ``MEMORY_SHARE`` of
    the node's available memory split over its ranks, the same on every rank of a node
    (the least any of them found, so that a message quoting it is one message).
    Collective: yes (finds the ranks sharing this node)."""
    text = os.environ.get("MPIGD_MEMORY_PER_RANK", "")
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        budget = MEMORY_SHARE * available_memory() / node.size
        budget = node.allreduce(budget, op=MPI.MIN)
    finally:
        node.Free()
    if memory is not None:
        return float(memory)
    if text:
        try:
            return parse_bytes(text)
        except ValueError:
            raise MpigdError(
                f"MPIGD_MEMORY_PER_RANK={text!r} is not a size > 0 such as 4G, 512M or "
                "1000000 (the bytes of data one rank may hold)"
            ) from None
    return budget


def library_version() -> str:
    """First line of the MPI library's version string (Open MPI's carries a NUL, which
    HDF5 attributes refuse). Collective: no."""
    return " ".join(MPI.Get_library_version().replace("\0", "").splitlines()[0].split())


@collective
def agree(comm: MPI.Comm, error: str | MpigdError | None, *, root: int | None = None) -> None:
    """Raise one :class:`MpigdError` on every rank if any rank passes an error.

    The message names the ranks that failed unless all of them failed alike; the same
    problem on several ranks is one sentence (:func:`~mpigd.errors.merge_reports`). With
    ``root``, only that rank's error counts (work done on one rank, such as writing the
    output) and no rank is named. The error keeps its class, so its exit status.
    Collective: yes (a small ``allgather``, or ``bcast`` with ``root``, of the reports).
    """
    if root is not None:
        report = comm.bcast(report_of(error), root=root)
        if report is not None:
            raise report[0](report[1])
        return
    # No deadline: the ranks come here from rank-local work of any length (reading a
    # rank's rows), and a slow rank is not a lost one.
    merged = merge_reports(comm.allgather(report_of(error)), comm.size)
    if merged is not None:
        raise merged


_ORDER_TAG = 77  # message tag of the in_rank_order chain


@collective
def in_rank_order(comm: MPI.Comm, work: Callable[[], None]) -> None:
    """Run ``work`` on one rank at a time, rank 0 first (each rank writing its part of a
    file that only one process may hold open). An :class:`MpigdError` on one rank skips
    the work of the ranks after it and is raised on every rank. Collective: yes (a chain
    of point-to-point messages, then one broadcast)."""
    error = comm.recv(source=comm.rank - 1, tag=_ORDER_TAG) if comm.rank > 0 else None
    if error is None:
        try:
            with _local_work():
                work()
        except MpigdError as exc:
            error = type(exc)(f"{exc} (on rank {comm.rank})" if comm.size > 1 else str(exc))
    if comm.rank < comm.size - 1:
        comm.send(error, dest=comm.rank + 1, tag=_ORDER_TAG)
    agree(comm, error, root=comm.size - 1)


@contextmanager
def _local_work() -> Iterator[None]:
    global _local_depth
    _local_depth += 1
    try:
        yield
    finally:
        _local_depth -= 1


@contextmanager
def rank_local(comm: MPI.Comm, *, root: int | None = None) -> Iterator[None]:
    """Run a block of rank-local work on every rank; if it raises :class:`MpigdError` on
    any rank, raise one on all of them when the block ends.

    Use it around work that can fail on some ranks only (reading a slice, checking its
    values, writing a file on rank 0), so that a failure on one rank cannot leave the
    others waiting in the next collective. The block itself must not communicate: a
    :func:`collective` call inside it raises :class:`CollectiveInLocalWork`. ``root`` as
    in :func:`agree`. Collective: yes (on leaving the block).
    """
    error = None
    try:
        with _local_work():
            yield
    except MpigdError as exc:
        error = exc
    agree(comm, error, root=root)


@collective
def on_root(comm: MPI.Comm, work: Callable[[], T], *, share: bool = False) -> T | None:
    """Run ``work()`` on rank 0 only, as rank-local work: an :class:`MpigdError` there is
    raised on every rank. Returns its result on rank 0 and None elsewhere, or with
    ``share`` on every rank (a broadcast: small objects only). Collective: yes."""
    result = None
    with rank_local(comm, root=0):
        if comm.rank == 0:
            result = work()
    return bcast_from_root(comm, result) if share else result


#: Seconds a rank other than 0 waits, after an interrupt, for rank 0 to report it and end
#: the job, before it reports it itself; rank r waits (r - 1) more staggers (at most 16),
#: so that when rank 0 is stuck in a collective one rank reports and its abort ends the rest.
#: The stagger is more than :data:`ABORT_FLUSH`, the time a reporting rank waits before
#: its abort: the next rank's line would come in that window.
INTERRUPT_GRACE, INTERRUPT_STAGGER = 3.0, 2.0
