"""Several optimisations in lockstep, sharing every evaluation.

Cross-validation minimises F objectives whose values at F points come from one pass
over the data (``Theta -> (f, G)``). Each problem keeps its own optimiser, unchanged:
its own memory, step, line search and stopping test. :func:`run_lockstep` runs each
optimiser in a thread of its own whose ``fun`` only posts the point and waits; when
every unfinished problem is waiting, the calling thread evaluates all their points in
one batch and releases them. So the batches are the same whatever the thread
scheduling (each optimiser is deterministic between its evaluations), problems that
have converged drop out of the batches, and the batch function, the only code that
may be collective, runs in the calling thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

R = TypeVar("R")
Batch = Callable[[dict[int, np.ndarray]], dict[int, tuple[float, np.ndarray]]]


class _Cancelled(BaseException):
    """Ends a waiting optimiser thread when the batch function failed."""


def run_lockstep(tasks: Sequence[Callable[[Callable], R]], batch: Batch) -> list[R]:
    """Run ``tasks[j](fun_j)`` for every j, with every ``fun_j`` answered by ``batch``.

    ``batch({j: theta_j, ...})`` returns ``{j: (f_j, g_j)}`` for the problems that asked;
    it is called from this thread only, once per round, with every problem that has not
    finished, and must answer every one of them. Returns the tasks' results in order. The
    first exception of a task, or of ``batch``, cancels the other tasks (their next
    evaluation raises) and is raised here: a task that fails deterministically fails in
    the same round on every rank, so no rank goes on to a batch the others never make.
    Collective: as ``batch`` is.
    """
    rounds = _Rounds(len(tasks))
    threads = [
        threading.Thread(target=rounds.run, args=(j, task), daemon=True)
        for j, task in enumerate(tasks)
    ]
    for thread in threads:
        thread.start()
    try:
        while (points := rounds.next_points()) is not None:
            rounds.answer(batch(points))
    except BaseException:
        rounds.cancel()
        raise
    finally:
        for thread in threads:
            thread.join()
    _raise_first(rounds.errors)
    return [rounds.results[j] for j in range(len(tasks))]


class _Rounds:
    """Where the optimiser threads post their points and the calling thread answers
    them, one round at a time; all its state is guarded by one condition."""

    def __init__(self, n_tasks: int):
        self.n_tasks = n_tasks
        self.cond = threading.Condition()
        self.asked: dict[int, np.ndarray] = {}
        self.answers: dict[int, tuple[float, np.ndarray]] = {}
        self.results: dict[int, object] = {}
        self.errors: dict[int, BaseException] = {}
        self.cancelled = False

    def fun_for(self, j: int):
        """Task ``j``'s ``fun``: post the point, wait for its answer (or the cancel)."""

        def fun(theta: np.ndarray):
            with self.cond:
                self.asked[j] = np.array(theta, dtype=np.float64, copy=True)
                self.cond.notify_all()
                self.cond.wait_for(lambda: j in self.answers or self.cancelled)
                if self.cancelled:
                    raise _Cancelled
                return self.answers.pop(j)

        return fun

    def run(self, j: int, task: Callable[[Callable], object]) -> None:
        """Task ``j``, in its own thread: its result or its exception is recorded."""
        try:
            value = task(self.fun_for(j))
        except BaseException as exc:
            with self.cond:
                self.errors[j] = exc
                self.cond.notify_all()
        else:
            with self.cond:
                self.results[j] = value
                self.cond.notify_all()

    def next_points(self) -> dict[int, np.ndarray] | None:
        """Once every task has asked or finished: the points asked, in task order, or
        None when every task has finished; a task's error is raised here."""
        with self.cond:
            self.cond.wait_for(
                lambda: len(self.asked) + len(self.results) + len(self.errors) == self.n_tasks
            )
            _raise_first(self.errors)
            if not self.asked:
                return None
            points = dict(sorted(self.asked.items()))
            self.asked.clear()
            return points

    def answer(self, values: dict[int, tuple[float, np.ndarray]]) -> None:
        with self.cond:
            self.answers.update(values)
            self.cond.notify_all()

    def cancel(self) -> None:
        """End every waiting task: its ``fun`` raises :class:`_Cancelled`."""
        with self.cond:
            self.cancelled = True
            self.cond.notify_all()


def _raise_first(errors: dict[int, BaseException]) -> None:
    """Raise the first task's error, if any task failed (cancelled tasks aside)."""
    for j in sorted(errors):
        if not isinstance(errors[j], _Cancelled):
            raise errors[j]
