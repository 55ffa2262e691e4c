"""The training problem as every rank holds it: this rank's rows, the loss, the class
labels and what the data imply before an objective is built. :func:`load_problem` serves
``train`` (:func:`mpigd.fit`), ``cv`` (:func:`mpigd.cv`) and the estimators alike."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import MpigdError
from ..io.dataset import DatasetInfo, LocalData, first_row
from ..io.rows import local_rows, read_rows
from ..io.stream import StreamedRows
from ..kernels.losses import CLASSIFIERS, PointwiseLoss
from ..parallel import allreduce_sum, memory_per_rank, on_root, rank_local
from ..partition import check_folds
from .labels import encode, n_classes, warn_about_empty_classes
from .options import TrainOptions, parameters_problem
from .start import first_local_row, outside_fold


@dataclass(frozen=True)
class Problem:
    """This rank's share of the training problem, as loaded."""

    info: DatasetInfo
    local: LocalData  # this rank's training rows (outside the held-out fold, with one)
    loss: PointwiseLoss
    n_classes: int  # K for softmax, 2 otherwise
    budget: float  # bytes of data this rank may hold (parallel.memory_per_rank)
    n_rows: int  # training rows over all ranks (fewer than the file's without a fold)
    shift: np.ndarray | None  # the row that centres standardisation (row 0), or None
    classes: np.ndarray | None = None  # the label values, with labels="auto"

    @property
    def streamed(self) -> bool:
        """Whether this rank's X stays on disk, read on every pass."""
        return isinstance(self.local.X, StreamedRows)


def load_problem(
    comm, data: str | os.PathLike | LocalData, options: TrainOptions, *, models: int = 1
) -> Problem:
    """Read this rank's rows (only those outside the held-out fold of
    ``options.exclude_fold``), map label values to classes (``labels="auto"``), find the
    class count from all rows, check that the parameters of ``models`` models trained side
    by side (a cross-validation's fold models) fit a rank's memory, and warn about classes
    without training rows. ``data`` is a path, or this rank's rows read already (the
    estimators' arrays, or the rows of a cross-validation for its final model).
    Collective: yes."""
    info, local, classes = _rows(comm, data, options)
    count = n_classes(comm, local) if options.model == "softmax" else 2
    folds = models if models > 1 else options.folds
    if folds is not None:
        check_folds(folds, info.n_rows)  # a count that cannot be is no memory problem
    budget = memory_per_rank(comm, options.memory)
    with rank_local(comm):
        n_outputs = count if options.model == "softmax" else 1
        problem = parameters_problem(
            options.model, info.n_features, n_outputs, len(local.y), budget / models
        )
        if problem:  # each fold model holds its own optimiser's vectors: a share each
            raise MpigdError(problem if models == 1 else f"{models} fold models, each: {problem}")
    n_rows = info.n_rows
    if options.exclude_fold is not None:
        local = outside_fold(
            comm, local, options.folds, options.fold_key, options.exclude_fold, options.seed
        )
        kept = np.array([float(len(local.y))])
        allreduce_sum(comm, kept)
        n_rows = int(kept[0])
    if options.model in CLASSIFIERS:
        warn_about_empty_classes(comm, local, count)
    shift = None
    if options.standardize:
        shift = on_root(
            comm,
            lambda: first_row(info) if info.path and not info.text else first_local_row(local),
            share=True,
        )
    loss = options.loss(count)
    return Problem(info, local, loss, count, budget, n_rows, shift, classes)


def _rows(comm, data, options: TrainOptions):
    """This rank's rows, checked for the model, and the label values with
    ``labels="auto"`` (None for class indices). Collective: yes."""
    if isinstance(data, LocalData):  # rows read already (mpigd.cv, in-memory estimators)
        return data.info, local_rows(comm, data, options.model), None
    auto = options.labels == "auto"
    checked = None if auto else options.model  # any values: checked by encode
    # Rows that a held-out fold splits are held in memory; others are streamed from the
    # file when they do not fit.
    stream = options.exclude_fold is None
    info, local = read_rows(
        comm, data, options.x_key, options.y_key, options.weight_key, checked,
        memory=options.memory, stream=stream,
    )  # fmt: skip
    classes = None
    if auto:
        local, classes = encode(comm, local, options.model)
    return info, local, classes
