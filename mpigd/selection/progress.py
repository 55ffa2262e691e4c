"""Where a cross-validation stands, and its checkpoints.

A path is under way at one penalty; each fold model is at its warm start there, part way
through its optimisation (its optimiser's state after its last iteration), or finished
(its result). :class:`PathProgress` holds that, and the table's rows of the penalties
done; it is what a checkpoint saves, so that a resumed job continues every fold model
exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np

from ..errors import Interrupted, Preempted
from ..optimize import OptimizeResult, Progress
from ..train.checkpoint import STATE_KEYS, Checkpoint, checked_state, state_problem
from .objective import FoldObjectives

#: The table's columns, one row per penalty done and one entry per fold model.
ROWS = ("val", "iterations", "evaluations", "converged")
_RESULT = tuple(f.name for f in fields(OptimizeResult))


@dataclass
class FoldProgress:
    """One fold model at the penalty under way: its starting point (``theta`` and the
    optimiser's state ``resume``; ``known``, the loss and gradient there when they are
    known without a pass), the passes it asked for, its latest iteration and, once it
    has finished, its result."""

    theta: np.ndarray
    resume: dict | None = None
    known: tuple[float, np.ndarray] | None = None
    passes: int = 0
    result: OptimizeResult | None = None
    latest: Progress | None = field(default=None, repr=False)

    def task(self, run: Callable[..., OptimizeResult]):
        """The lockstep task ``fun -> result`` that runs (or goes on with) this model's
        optimisation ``run(fun, theta, resume=..., callback=...)``."""

        def task(fun) -> OptimizeResult:
            if self.result is None:  # not finished before a checkpoint

                def counted(theta):
                    if self.known is not None and np.array_equal(theta, self.theta):
                        return self.known
                    self.passes += 1
                    return fun(theta)

                self.result = run(counted, self.theta, resume=self.resume, callback=self._seen)
            return self.result

        return task

    def _seen(self, progress: Progress) -> None:
        self.latest = progress

    def state(self) -> dict | None:
        """The optimiser's state after its last iteration (None before any)."""
        return self.resume if self.latest is None else self.latest.state()

    def next(self, l2_change: float, mask: np.ndarray, *, ridge: bool) -> FoldProgress:
        """The finished model's warm start at the next penalty of a path: its solution,
        its optimiser's state there (so that it keeps what it learnt of the curvature)
        and, with ``ridge`` (an L2 path), the loss and gradient there under the new
        penalty, which follow without a pass. A ridge penalty changed by ``l2_change``
        adds ``l2_change * W`` to the gradient: the L-BFGS pairs ``(s, y)`` get
        ``y += l2_change * s`` on the weights, exactly (the penalty is quadratic). FISTA
        keeps its step (a Lipschitz estimate) and restarts its momentum. The iteration
        counts start again from 0."""
        theta, state, known = self.result.x, self.state(), None
        if ridge:
            W = theta * mask
            f, g = self.result.fun, self.result.grad
            known = (f + 0.5 * l2_change * float(W @ W), g + l2_change * W)
        if state is None:
            return FoldProgress(theta, None, known)
        resume = {**state, "theta": theta, "nit": 0, "nfev": 0, "history": np.array([np.nan])}
        if "pairs_y" in state:
            resume["pairs_y"] = state["pairs_y"] + l2_change * state["pairs_s"] * mask
            resume["f_before"] = np.nan
        if "momentum" in state:
            resume.update(momentum=1.0, theta_prev=theta.copy())
        return FoldProgress(theta, resume, known)

    def now(self) -> FoldProgress:
        """The same model, from which a resumed job continues exactly: its start moved
        to its last iteration, or its result and final state once it has finished. Call
        it while its task waits for an evaluation, or after it has finished."""
        if self.result is not None:
            return FoldProgress(self.result.x, self.state(), None, self.passes, self.result)
        if self.latest is None:
            return FoldProgress(self.theta, self.resume, self.known, self.passes)
        state = self.latest.state()
        return FoldProgress(state["theta"], state, None, self.passes)


@dataclass
class PathProgress:
    """A cross-validation's progress: the penalty under way (``step``: its index in the
    path, the path's length when all are done), every fold model there, the table's
    rows so far (:data:`ROWS`, each a list of per-fold lists) and the passes so far."""

    step: int
    folds: list[FoldProgress]
    rows: dict[str, list] = field(default_factory=lambda: {key: [] for key in ROWS})
    n_evals: int = 0
    score_passes: int = 0

    def checkpoint(self, optimizer: str, run: dict | None, ranks: int) -> Checkpoint:
        """This progress, with every fold model as :meth:`FoldProgress.now` has it, as
        a :class:`~mpigd.train.checkpoint.Checkpoint` of optimiser ``cv-<optimizer>``.
        Collective: no."""
        F = len(self.folds)
        state = {"step": self.step, "n_evals": self.n_evals, "score_passes": self.score_passes}
        for key in ROWS:  # (step, F) arrays; h5py keeps an empty one's shape
            state[key] = np.array(self.rows[key], dtype=np.float64).reshape(-1, F)
        for j, fold in enumerate(fold.now() for fold in self.folds):
            state[f"fold{j}.theta"], state[f"fold{j}.passes"] = fold.theta, fold.passes
            if fold.known is not None:
                state[f"fold{j}.known_f"], state[f"fold{j}.known_g"] = fold.known
            for key, value in (fold.resume or {}).items():
                state[f"fold{j}.state.{key}"] = value
            if fold.result is not None:
                state.update(
                    {f"fold{j}.result.{k}": _saved(getattr(fold.result, k)) for k in _RESULT}
                )
        return Checkpoint(f"cv-{optimizer}", state, run or {}, ranks)

    @classmethod
    def from_checkpoint(
        cls, state: dict, optimizer: str, folds: int, size: int, count: int
    ) -> PathProgress:
        """The progress a checkpoint's ``state`` holds, for ``folds`` fold models of
        ``size`` parameters trained by ``optimizer`` on a path of ``count`` penalties;
        a ``ValueError`` saying what does not fit. Collective: no."""
        step = state.get("step")
        if not (isinstance(step, int) and 0 <= step <= count):
            raise ValueError(f"its step is {step!r}, not a penalty of a path of {count}")
        rows = {}
        for key, kind in zip(ROWS, (float, int, int, bool), strict=True):
            table = np.asarray(state.get(key, np.empty((0, 0))))
            if table.shape != (step, folds):
                raise ValueError(f"its {key} has shape {table.shape}, not ({step}, {folds})")
            rows[key] = [[kind(value) for value in row] for row in table]
        progress = cls(step, [], rows, int(state["n_evals"]), int(state["score_passes"]))
        for j in range(folds):
            fold = FoldProgress(_vector(state, f"fold{j}.theta", size))
            fold.passes = int(state[f"fold{j}.passes"])
            if f"fold{j}.known_f" in state:
                fold.known = (
                    float(state[f"fold{j}.known_f"]),
                    _vector(state, f"fold{j}.known_g", size),
                )
            fold.resume = _prefixed(state, f"fold{j}.state.") or None
            if fold.resume is not None:
                problem = state_problem(fold.resume, size, STATE_KEYS[optimizer])
                if problem:
                    raise ValueError(f"fold model {j}: {problem}")
            if result := _prefixed(state, f"fold{j}.result."):
                if set(result) != set(_RESULT):
                    raise ValueError(f"fold model {j}'s result is incomplete")
                for key in ("x", "grad"):
                    result[key] = _vector(result, key, size)
                fold.result = OptimizeResult(**{**result, "history": list(result["history"])})
            progress.folds.append(fold)
        return progress


def resumed(comm, path, optimizer: str, run, folds: int, size: int, count: int):
    """The :class:`PathProgress` that checkpoint ``path`` holds, on every rank, once
    rank 0 has checked that it continues this cross-validation. Collective: yes."""

    def problem(saved) -> str | None:
        try:
            PathProgress.from_checkpoint(saved.state, optimizer, folds, size, count)
        except (KeyError, TypeError, ValueError) as exc:
            return f"its state is not that of this cross-validation ({exc})"
        return None

    state = checked_state(comm, path, f"cv-{optimizer}", run, problem)
    return PathProgress.from_checkpoint(state, optimizer, folds, size, count)


def checkpointed(objective: FoldObjectives, save: Callable[[], None], every: int, where, watch):
    """``objective``, saving the path's progress (``save()`` writes a checkpoint and
    says where) every ``every`` evaluations, and when a signal (``watch``) asks to
    stop, then raising Preempted that names ``where()`` the path stands. It is called
    while every unfinished fold model waits for its answer, so their states are whole.
    Collective: yes."""
    calls = [0]

    def evaluate(points):
        calls[0] += 1
        if calls[0] % every == 0:
            save()
        try:
            return objective(points)
        except Interrupted:
            if not objective.stop_requested:
                raise
            raise Preempted(
                f"{watch.received or 'a signal on another rank'} in {where()}, after "
                f"{objective.n_evals} evaluations; checkpoint written to {save()}; resume "
                "from it to continue"
            ) from None

    return evaluate


def _vector(state: dict, key: str, size: int) -> np.ndarray:
    value = np.asarray(state[key])
    if value.shape != (size,) or value.dtype.kind != "f" or not np.isfinite(value).all():
        raise ValueError(f"its {key} is not {size} finite numbers")
    return value


def _saved(value):
    return np.asarray(value) if isinstance(value, list) else value


def _prefixed(state: dict, prefix: str) -> dict:
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
