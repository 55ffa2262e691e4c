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
    cond = threading.Condition()
    asked: dict[int, np.ndarray] = {}
    answers: dict[int, tuple[float, np.ndarray]] = {}
    results: dict[int, R] = {}
    errors: dict[int, BaseException] = {}
    cancelled = False

    def fun_for(j: int):
        def fun(theta: np.ndarray):
            with cond:
                asked[j] = np.array(theta, dtype=np.float64, copy=True)
                cond.notify_all()
                cond.wait_for(lambda: j in answers or cancelled)
                if cancelled:
                    raise _Cancelled
                return answers.pop(j)

        return fun

    def body(j: int) -> None:
        try:
            value = tasks[j](fun_for(j))
        except BaseException as exc:
            with cond:
                errors[j] = exc
                cond.notify_all()
        else:
            with cond:
                results[j] = value
                cond.notify_all()

    threads = [threading.Thread(target=body, args=(j,), daemon=True) for j in range(len(tasks))]
    for thread in threads:
        thread.start()
    try:
        while True:
            with cond:
                cond.wait_for(lambda: len(asked) + len(results) + len(errors) == len(tasks))
                _raise_first(errors)
                if not asked:
                    break
                points = dict(sorted(asked.items()))
                asked.clear()
            values = batch(points)
            with cond:
                answers.update(values)
                cond.notify_all()
    except BaseException:
        with cond:
            cancelled = True
            cond.notify_all()
        raise
    finally:
        for thread in threads:
            thread.join()
    _raise_first(errors)
    return [results[j] for j in range(len(tasks))]


def _raise_first(errors: dict[int, BaseException]) -> None:
    """Raise the first task's error, if any task failed (cancelled tasks aside)."""
    for j in sorted(errors):
        if not isinstance(errors[j], _Cancelled):
            raise errors[j]
