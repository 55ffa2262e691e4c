"""A trained model applied to data spread over ranks: its metrics, or a prediction file.

Every rank reads and scores only its own rows, as in training. Metrics are combined by
reductions (:mod:`mpigd.metrics`); predictions are written into one file by one rank at a
time, in rank order, so no two processes ever hold the output open together.
"""

from __future__ import annotations

import os
from contextlib import ExitStack

import h5py

from . import __version__, metrics
from .errors import MpigdError
from .files import atomic_path, create_rows_dataset
from .fit import read_rows
from .losses import class_label_problem
from .model import LinearModel, load_model
from .parallel import agreed, bcast_from_root, default_comm, in_rank_order


def _load(comm, model: LinearModel | str | os.PathLike) -> LinearModel:
    if isinstance(model, LinearModel):
        return model
    with agreed(comm):
        return load_model(model)


def evaluate(
    data: str | os.PathLike,
    model: LinearModel | str | os.PathLike,
    *,
    comm=None,
    x_key: str = "X",
    y_key: str = "y",
) -> dict:
    """Metrics of ``model`` (or a model file) on the labelled ``data``, all ranks' rows.

    Linear: RMSE, MAE, R². Logistic: log-loss, accuracy, precision, recall, F1, ROC AUC
    and the confusion matrix. Softmax: log-loss, accuracy and the confusion matrix.
    The same dict on every rank. Collective: yes.
    """
    comm = default_comm(comm)
    model = _load(comm, model)
    info, local = read_rows(comm, data, x_key, y_key, None, model.kind, len(model.coef))
    if model.kind == "softmax":
        with agreed(comm):
            problem = class_label_problem(local.y, model.coef.shape[1])
            if problem:
                raise MpigdError(f"{info.path}: '{y_key}': {problem} (the model's classes)")
    z = model.decision_function(local.X)
    if model.kind == "linear":
        scores = metrics.regression(comm, local.y, z)
    elif model.kind == "logistic":
        scores = metrics.binary(comm, local.y, z)
    else:
        scores = metrics.multiclass(comm, local.y, z)
    return {"model": model.kind, "data": os.path.abspath(info.path), "ranks": comm.size, **scores}


def predict(
    data: str | os.PathLike,
    model: LinearModel | str | os.PathLike,
    out: str | os.PathLike,
    *,
    comm=None,
    x_key: str = "X",
) -> int:
    """Write ``model``'s predictions for every row of ``data`` to the HDF5 file ``out``:
    ``prediction`` (values, or class labels) and, for classifiers, ``probability``
    (P(y = 1), or one column per class). Rank 0 creates the file under a temporary name,
    each rank writes its rows in turn, and the finished file is renamed into place.
    Returns the number of rows. Collective: yes.
    """
    comm = default_comm(comm)
    model = _load(comm, model)
    info, local = read_rows(comm, data, x_key, None, None, model.kind, len(model.coef))
    prediction, probability = model.outputs(model.decision_function(local.X))
    columns = {"prediction": prediction}
    if probability is not None:
        columns["probability"] = probability

    def write_rows() -> None:
        try:
            with h5py.File(tmp, "r+") as f:
                for key, values in columns.items():
                    f[key][local.start : local.stop] = values
        except OSError as exc:
            raise MpigdError(f"cannot write {out}: {exc}") from exc

    with ExitStack() as rank0_output:
        tmp = None
        with agreed(comm, root=0):
            if comm.rank == 0:
                tmp = rank0_output.enter_context(atomic_path(out))
                _create(tmp, info.n_rows, columns, model, info.path)
        tmp = bcast_from_root(comm, tmp)
        in_rank_order(comm, write_rows)
    return info.n_rows


def _create(path: str, n_rows: int, columns: dict, model: LinearModel, data: str) -> None:
    """The empty prediction file: one dataset per column, chunked by rows."""
    try:
        with h5py.File(path, "w") as f:
            for key, values in columns.items():
                shape = (n_rows, *values.shape[1:])
                create_rows_dataset(f, key, shape, values.dtype, fixed_layout=True)
            f.attrs.update(model=model.kind, data=os.path.abspath(data), mpigd_version=__version__)
    except OSError as exc:
        raise MpigdError(f"cannot write {path}: {exc}") from exc
