"""A trained model applied to data spread over ranks: its metrics, or a prediction file.

Every rank reads and scores only its own rows, as in training. Metrics are combined by
reductions (:mod:`mpigd.evaluation.metrics`); predictions are written into one file by one rank at a
time, in rank order, so no two processes ever hold the output open together.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import replace

import h5py
import numpy as np

from .._version import __version__
from ..io.dataset import data_path
from ..io.outputs import create_rows_dataset, write_errors, writing
from ..io.rows import label_error, read_rows
from ..io.stream import chunks, like
from ..kernels.losses import BINARY, CLASSIFIERS, LabelProblem, class_label_problem
from ..model import LinearModel, load_model
from ..parallel import default_comm, in_rank_order, on_root, rank_local
from ..threads import limited
from . import metrics


def _load(comm, model: LinearModel | str | os.PathLike) -> LinearModel:
    if isinstance(model, LinearModel):
        return model
    with rank_local(comm):
        return load_model(model)


@limited
def evaluate(
    data: str | os.PathLike,
    model: LinearModel | str | os.PathLike,
    *,
    comm=None,
    x_key: str = "X",
    y_key: str = "y",
    memory: float | None = None,
) -> dict:
    """Metrics of ``model`` (or a model file) on the labelled ``data``, all ranks' rows.

    Linear and huber: RMSE, MAE, R². Poisson, gamma and tweedie: mean deviance, D² and
    the MAE and RMSE of the mean. Logistic: log-loss, accuracy, precision, recall, F1,
    ROC AUC and the confusion matrix; svm the same with the hinge loss for the log-loss.
    Softmax: log-loss, accuracy and the confusion matrix.
    The same dict on every rank. Rows that do not fit a rank's budget (``memory`` bytes,
    else a share of the node's) are streamed from the file. Collective: yes.
    """
    comm = default_comm(comm)
    model = _load(comm, model)
    classes = model.arrays.get("classes")  # a model trained on label values
    checked = model.kind if classes is None else None
    info, local = read_rows(
        comm, data, x_key, y_key, None, checked, len(model.coef), memory=memory, stream=True
    )
    if classes is not None:
        with rank_local(comm):
            local = _encode(info, local, classes)
    elif model.kind == "softmax":
        with rank_local(comm):
            problem = class_label_problem(local.y, model.coef.shape[1])
            if problem:
                raise label_error(info, local, problem, " (the model's classes)")
    z = _decision_values(comm, model, local.X)
    scores = metrics.of_model(comm, model.kind, local.y, z, power=model.power)
    if model.kind in CLASSIFIERS:
        K = 2 if model.kind in BINARY else model.coef.shape[1]
        scores["classes"] = (np.arange(K) if classes is None else classes).tolist()
    return {"model": model.kind, "data": data_path(info), "ranks": comm.size, **scores}


def _decision_values(comm, model: LinearModel, X) -> np.ndarray:
    """``model``'s decision values for this rank's rows, a block at a time where they are
    streamed (each row's value does not depend on the rows beside it); a read that fails
    is raised on every rank. Collective: yes."""
    with rank_local(comm):
        parts = [model.decision_function(X_b) for _, X_b in chunks(X)]
    return np.concatenate(parts) if parts else model.decision_function(like(X))


def _encode(info, local, classes):
    """``local`` with its label values replaced by the model's class indices; values the
    model never saw are an error. Collective: no."""
    index = np.clip(np.searchsorted(classes, local.y), 0, len(classes) - 1)
    unknown = classes[index] != local.y
    if unknown.any():
        shown = ", ".join(f"{c:g}" for c in classes[:10])
        problem = LabelProblem.of(f"labels must be the model's classes ({shown})", local.y, unknown)
        raise label_error(info, local, problem)
    return replace(local, y=index.astype(np.float64))


@limited
def predict(
    data: str | os.PathLike,
    model: LinearModel | str | os.PathLike,
    out: str | os.PathLike,
    *,
    comm=None,
    x_key: str = "X",
    memory: float | None = None,
) -> int:
    """Write ``model``'s predictions for every row of ``data`` to the HDF5 file ``out``:
    ``prediction`` (values, means ``exp(z)`` for the log-link models, or class labels)
    and, for logistic and softmax, ``probability`` (P(y = 1), or one column per class).
    Rank 0 creates the file under a temporary name, each rank writes its rows in turn,
    and the finished file is renamed into place. Returns the number of rows. Rows are
    streamed as by :func:`evaluate`. Collective: yes.
    """
    comm = default_comm(comm)
    model = _load(comm, model)
    info, local = read_rows(
        comm, data, x_key, None, None, model.kind, len(model.coef), memory=memory, stream=True
    )
    prediction, probability = model.outputs(_decision_values(comm, model, local.X))
    columns = {"prediction": prediction}
    if probability is not None:
        columns["probability"] = probability

    def write_rows() -> None:
        with write_errors(out), h5py.File(tmp, "r+") as f:
            for key, values in columns.items():
                f[key][local.start : local.stop] = values

    with ExitStack() as rank0_output:

        def create() -> str:
            name = rank0_output.enter_context(writing(out))
            _create(name, out, info.n_rows, columns, model, data_path(info))
            return name

        tmp = on_root(comm, create, share=True)
        in_rank_order(comm, write_rows)
        on_root(comm, rank0_output.close)  # the rename into place, agreed like the rest
    return info.n_rows


def _create(path: str, out: str, n_rows: int, columns: dict, model: LinearModel, data: str) -> None:
    """The empty prediction file ``out``, under its temporary name ``path``: one dataset
    per column, chunked by rows."""
    with write_errors(out), h5py.File(path, "w") as f:
        for key, values in columns.items():
            shape = (n_rows, *values.shape[1:])
            create_rows_dataset(f, key, shape, values.dtype, fixed_layout=True)
        f.attrs.update(model=model.kind, data=data, mpigd_version=__version__)
