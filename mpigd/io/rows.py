"""The collective loader: every rank checks the file and reads its own rows, and a
failure on any rank is one error on all of them."""

from __future__ import annotations

import sys
from dataclasses import replace

from ..errors import InvalidInputError, MpigdError, literal
from ..host import resident_bytes
from ..kernels.losses import LabelProblem, class_label_problem, make_loss
from ..parallel import gather_all, max_over_ranks, memory_per_rank, print0, rank_local
from .budget import STREAM_ENV, block_bytes, forced_block_bytes, held_bytes, settle_libraries
from .dataset import (
    DatasetInfo,
    LocalData,
    check_codes,
    inspect_dataset,
    memory_problem,
    rank_range,
    read_block,
)
from .memory import checked_rows
from .outputs import human_bytes
from .stream import StreamedRows, read_streamed
from .text_rows import is_text, read_text_rows


def read_rows(
    comm,
    data,
    x_key,
    y_key,
    weight_key,
    model,
    n_features: int | None = None,
    memory: float | None = None,
    stream: bool = False,
) -> tuple[DatasetInfo, LocalData]:
    """Check the file, this rank's memory and its rows, agreeing on every failure: the
    labels must suit ``model`` (unless ``y_key`` or ``model`` is None) and, when given, X must have
    ``n_features`` columns. What training, evaluation, prediction and the benchmark read.
    Where a rank's rows of an HDF5 file do not fit its budget (``memory`` bytes, else
    :func:`~mpigd.parallel.memory_per_rank`), every rank leaves X on disk and streams it
    (:class:`~mpigd.io.stream.StreamedRows`) if the caller can ``stream``, else that is
    an error; text is always read into memory.

    Collective: yes. Each check is rank-local work agreed across ranks before the next
    collective step, so a failure on one rank ends every rank with the same error.
    """
    if is_text(data):
        if weight_key is not None:
            raise MpigdError(f"row weights ('{weight_key}') need an HDF5 file; {data} is text")
        info, local = read_text_rows(comm, data, labelled=y_key is not None, n_features=n_features)
    else:
        info, local = _read_hdf5_rows(
            comm, data, x_key, y_key, weight_key, n_features, memory, stream
        )
    with rank_local(comm):
        if y_key is None or model is None:
            return info, local
        check = class_label_problem if model == "softmax" else make_loss(model).label_problem
        problem = check(local.y)
        if problem:
            note = " (any label values: --labels auto)" if model == "softmax" else ""
            raise label_error(info, local, problem, note)
    return info, local


def _read_hdf5_rows(comm, data, x_key, y_key, weight_key, n_features, memory, stream):
    """This rank's rows of an HDF5 file, once its layout is checked: in memory where
    every rank's fit its budget, else streamed by every rank (or, without ``stream``,
    refused). Collective: yes."""
    with rank_local(comm):
        info = inspect_dataset(data, x_key, y_key, weight_key)
        if n_features is not None and info.n_features != n_features:
            raise MpigdError(
                f"{info.path}: '{x_key}' has {info.n_features} features but the model has "
                f"{n_features}"
            )
    forced = forced_block_bytes() if stream else None
    budget = memory_per_rank(comm, memory)
    # --memory bounds the whole process, and what it holds already is not for the data
    # (the default budget is a share of the memory still available: it is not)
    taken = 0.0
    if memory is not None:
        settle_libraries(info.csr)
        taken = float(max_over_ranks(comm, [resident_bytes()])[0])
    with rank_local(comm):
        too_big = memory_problem(info, comm.rank, comm.size, budget - taken)
        if too_big and not stream:
            raise MpigdError(too_big)
    if not forced and not max_over_ranks(comm, [float(too_big is not None)])[0]:
        with rank_local(comm):
            local = read_block(info, comm.rank, comm.size)
        return info, local
    with rank_local(comm):
        start, stop = rank_range(info, comm.rank, comm.size)
    fixed = max_over_ranks(comm, [held_bytes(taken, info, stop - start)])
    with rank_local(comm):
        block = forced or block_bytes(info, budget, float(fixed[0]))
        local = read_streamed(info, start, stop, block)
    why = f"the ranks' rows do not fit a budget of {human_bytes(budget)} a rank"
    print0(
        comm,
        f"mpigd: note: {info.path}: {f'{STREAM_ENV} is set' if forced else why}, so every "
        f"pass streams them from disk, in blocks of {human_bytes(block)}: "
        f"{human_bytes(local.X.pass_bytes)} a pass on rank 0",
        file=sys.stderr,
    )
    return info, local


def local_rows(comm, local: LocalData, model: str) -> LocalData:
    """Rows already in memory (:func:`mpigd.fit` called with a :class:`LocalData`), checked
    as a file's are when read (:func:`~mpigd.io.memory.checked_rows`; whatever else the
    caller's arrays raise is bad input too), then agreed: the ranks' rows add up to
    ``local.info.n_rows`` (the objective divides by it) and all of them have row weights
    or none (each weighted sum is a reduction). Collective: yes."""
    info = local.info
    with rank_local(comm):
        try:
            if isinstance(local.X, StreamedRows):  # read from a file, and checked then
                X, y, weights = local.X, local.y, local.weights
            else:
                X, y, weights = checked_rows(
                    local.X, local.y, local.weights, info.n_features, model
                )
        except MpigdError:
            raise
        except (TypeError, ValueError, IndexError, AttributeError) as exc:
            raise InvalidInputError(f"the rows in memory cannot be used: {exc!r}") from exc
        local = replace(local, X=X, y=y, weights=weights)
    views = gather_all(comm, (local.X.shape[0], local.weights is not None))
    rows, weighted = (sum(view[0] for view in views), [view[1] for view in views])
    if rows != info.n_rows or rows == 0:
        raise MpigdError(
            f"the ranks hold {rows:,} rows in all, but the data says {info.n_rows:,}"
            + ("" if rows else ": there is nothing to train on")
        )
    if any(weighted) and not all(weighted):  # one rank's reductions would be missing
        raise MpigdError(
            f"row weights are given on rank {weighted.index(True)} but not on rank "
            f"{weighted.index(False)}: give them on every rank or on none"
        )
    return local


def label_error(info: DatasetInfo, local: LocalData, problem: LabelProblem, note: str = ""):
    """The error for bad labels in this rank's rows, naming the rows from the first bad
    one to the last; it merges with the same problem on other ranks (counts summed, rows
    joined). Collective: no."""
    return MpigdError.in_rows(
        f"{literal(info.path)}: '{literal(info.y_key)}': {literal(problem.rule)}; found "
        f"{{count}} other values (e.g. {{example}}) in rows {{rows}}{literal(note)}",
        problem.count,
        local.start + problem.first,
        local.start + problem.last + 1,
        f"{problem.example:g}",
    )


def read_labels(comm, data, x_key: str = "X", y_key: str = "y"):
    """This rank's block of the labels alone (float64; NaN or infinite values are an
    error), e.g. to learn the classes before training. Collective: yes."""
    import h5py
    import numpy as np

    from ..partition import block_range
    from .hdf5 import READ_ERRORS

    with rank_local(comm):
        info = inspect_dataset(data, x_key, y_key)
        start, stop = block_range(info.n_rows, comm.size, comm.rank)
        try:
            with h5py.File(info.path, "r") as f:
                y = f[info.y_key].astype(np.float64)[start:stop].reshape(-1)
        except READ_ERRORS as exc:
            raise MpigdError(f"reading labels of {info.path} failed: {exc}") from exc
        bad = ~np.isfinite(y)
        if bad.any():
            raise MpigdError.in_rows(
                f"{literal(info.path)}: '{literal(info.y_key)}' holds {{count}} NaN or "
                "infinite values in rows {rows}",
                np.count_nonzero(bad),
                start,
                stop,
            )
        check_codes(info, y, start, stop)
    return y
