"""Checkpoints: the full optimiser state, and what it was computed from.

A checkpoint holds everything an optimiser needs to continue exactly where it stopped
(its ``state`` dict: parameters, iteration, step, histories...), plus a description of
the run it belongs to: the dataset's fingerprint, the model and objective options and
the rank count. Written by one rank, atomically; read back by one rank and broadcast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import MpigdError, Preempted, plural
from ..io.hdf5 import READ_ERRORS, open_input, read_problem
from ..io.outputs import read_attrs, writing
from ..optimize import Progress
from ..parallel import on_root, warn0
from .options import option

FORMAT = "mpigd-checkpoint-1"
#: State entries that hold one or more vectors of the parameters' length.
VECTOR_STATE = ("theta_prev", "pairs_s", "pairs_y")
#: What the state of each optimiser that iterates holds besides its parameters.
STATE_KEYS = {
    "gd": ("nit", "nfev", "history", "step"),
    "lbfgs": ("nit", "nfev", "history", "pairs_s", "pairs_y", "f_before"),
    "nesterov": ("nit", "nfev", "history", "step", "momentum", "theta_prev"),
}
#: The order in which differences are reported: the most telling first. The data path
#: may differ (a moved file is the same data); the sampled rows may not.
MATCH_FIRST = ("model", "l2", "x_key", "y_key", "data_shape", "data_dtypes", "data_sample_sha256")
#: How a message names the settings that are not options (the others are named by
#: :func:`~mpigd.train.options.option`: ``--l2``, ``--fold-key (fold_key)``).
SETTING_NAMES = {
    "data_shape": "data shape",
    "data_dtypes": "data dtypes",
    "n_outputs": "output count (classes)",
    "penalty": "penalty (--l2-path or --l1-path)",
    "path": "penalty path",
}


@dataclass(frozen=True)
class Checkpoint:
    """One saved optimiser state.

    Parameters
    ----------
    optimizer : str
        Name in :data:`mpigd.optimize.OPTIMIZERS`; the state's format depends on it.
    state : dict
        The optimiser's state: arrays and Python scalars.
    run : dict
        What must match to resume: ``model``, objective options and the dataset's
        fingerprint (see :func:`mpigd.io.dataset.fingerprint`), all scalars or strings.
    ranks : int
        Rank count that wrote it (resuming with another count is allowed).
    """

    optimizer: str
    state: dict[str, Any]
    run: dict[str, Any]
    ranks: int
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path`` atomically: a crash mid-write leaves the previous file.
        Collective: no (call on one rank)."""
        with writing(path, "checkpoint") as tmp, h5py.File(tmp, "w") as f:
            f.attrs.update(
                format=FORMAT, optimizer=self.optimizer, ranks=self.ranks, created=self.created
            )
            f.create_group("run").attrs.update(self.run)
            state = f.create_group("state")
            for key, value in self.state.items():
                if np.ndim(value) == 0:
                    state.attrs[key] = value
                else:
                    state[key] = np.asarray(value)

    def state_problem(self, size: int) -> str | None:
        """Why the saved state cannot be the state of ``size`` parameters, or None."""
        return state_problem(self.state, size, STATE_KEYS.get(self.optimizer, ()))

    def mismatch(self, optimizer: str, run: dict[str, Any]) -> str | None:
        """Why this checkpoint cannot continue a run with these settings, or None."""
        if optimizer != self.optimizer:
            return f"it was written by optimizer {self.optimizer!r}, not {optimizer!r}"
        keys = [*MATCH_FIRST, *sorted(set(run) | set(self.run))]
        for key in dict.fromkeys(keys):
            mine, theirs = self.run.get(key), run.get(key)
            if key == "data_sample_sha256" and mine != theirs:
                return (
                    f"it was written for other data: sampled rows of "
                    f"{self.run.get('data_path')} and {run.get('data_path')} differ"
                )
            if key != "data_path" and mine != theirs:
                name = SETTING_NAMES.get(key) or option(key)
                return f"its {name} is {_shown(key, mine)}, but this run's is {_shown(key, theirs)}"
        return None


def _shown(key: str, value) -> str:
    """A setting's value in a message: ``none`` for an option not given (None, or
    the empty name a checkpoint stores for it), ``the default`` for ``max_iter`` -1."""
    if value is None or (isinstance(value, str) and not value):
        return "none"
    if key == "max_iter" and value == -1:
        return "the default"
    return repr(value)


def state_problem(state: dict[str, Any], size: int, keys: tuple[str, ...] = ()) -> str | None:
    """Why ``state`` cannot be an optimiser's state of ``size`` parameters holding
    ``keys``, or None: the parameters (and every per-parameter vector an optimiser
    keeps) must have ``size`` entries and be finite, the counters whole numbers."""
    theta = np.asarray(state.get("theta", []))
    if theta.shape != (size,) or theta.dtype.kind != "f":
        return f"its state holds parameters of shape {theta.shape}, this run has {size}"
    if not np.isfinite(theta).all():
        return "its parameters hold NaN or infinite values"
    missing = [key for key in keys if key not in state]
    if missing:
        return f"its state lacks {', '.join(missing)}"
    for key in VECTOR_STATE:
        if key in state and np.shape(state[key])[-1:] not in ((size,), (0,)):
            return f"its {key} has shape {np.shape(state[key])}, not (..., {size})"
    if np.shape(state.get("pairs_s", ())) != np.shape(state.get("pairs_y", ())):
        return "its curvature pairs s and y differ in shape"
    for key in ("nit", "nfev"):
        if not (
            np.ndim(state.get(key)) == 0
            and np.issubdtype(type(state.get(key)), np.integer)
            and state[key] >= 0
        ):
            return f"its {key} is {state.get(key)!r}, not a count"
    return None


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :meth:`Checkpoint.save`; a file that is missing,
    unreadable, no checkpoint, or cut short or damaged (a copy that did not finish, a
    full disk) is one :class:`MpigdError`. Collective: no."""
    if not (Path(path).is_file() and os.access(path, os.R_OK)):
        with open_input(path, "checkpoint"):  # its message: not found, a folder, no access
            pass
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT or "state" not in f or "run" not in f:
                raise MpigdError(f"cannot resume from {path}: it is not an mpigd checkpoint")
            attrs = read_attrs(f)
            state = read_attrs(f["state"])
            state.update({key: dataset[()] for key, dataset in f["state"].items()})
            run = read_attrs(f["run"])
        return Checkpoint(attrs["optimizer"], state, run, attrs["ranks"], attrs["created"])
    except (*READ_ERRORS, TypeError) as exc:
        if isinstance(exc, PermissionError) or "unable to lock file" in str(exc):
            raise MpigdError(read_problem(path, "checkpoint", exc)) from exc
        raise MpigdError(
            f"cannot resume from {path}: it is not a readable checkpoint (truncated or "
            f"damaged); start without {option('resume')}"
        ) from exc


def resume_state(comm, path, optimizer: str, run: dict | None, size: int) -> dict:
    """Rank 0 reads and checks the checkpoint; every rank gets its state. Collective: yes."""
    return checked_state(comm, path, optimizer, run, lambda saved: saved.state_problem(size))


def checked_state(comm, path, optimizer: str, run: dict | None, problem) -> dict:
    """The state of checkpoint ``path`` on every rank, once rank 0 has checked that it
    continues this run (``optimizer``, ``run``) and that ``problem(checkpoint)``, why
    its state does not fit, is None. Collective: yes."""

    def load() -> dict:
        saved = load_checkpoint(path)
        why = saved.mismatch(optimizer, run) or problem(saved)
        if why:  # another run's checkpoint (a job beside this one, or older settings)
            raise MpigdError(
                f"cannot resume from {path}: {why}; it is not this run's checkpoint: to start "
                f"afresh, leave out {option('resume')} (or remove the file)"
            )
        if saved.ranks != comm.size:
            warn0(
                comm,
                f"resuming with {plural(comm.size, 'rank')} from a checkpoint written by "
                f"{saved.ranks}: the state does not depend on the rank count, but sums "
                "are added in another order, so the last bits can differ from a run "
                "that never stopped",
            )
        return saved.state

    return on_root(comm, load, share=True)


def checkpointing(
    comm, callback, objective, stop_flag, path, every: int, optimizer: str, run: dict | None
):
    """Wrap ``callback``: write a checkpoint every ``every`` iterations, and on a signal
    (reduced with the objective, so every rank sees it in the same iteration) write one
    and raise Preempted. The wrapper is collective: every rank calls it each iteration."""

    def on_iteration(progress: Progress) -> None:
        if callback is not None:
            callback(progress)
        stop = objective.stop_requested
        if stop or progress.nit % every == 0:
            state = progress.state()  # on every rank: it may gather vectors held in slices
            on_root(comm, lambda: Checkpoint(optimizer, state, run, comm.size).save(path))
        if stop:
            why = stop_flag.received or "a signal on another rank"
            raise Preempted(
                f"{why} at iteration {progress.nit}; checkpoint written to "
                f"{path}; resume from it to continue"
            )

    return on_iteration
