"""Where a training run starts: the rows it keeps (outside a held-out fold), the first
row that centres standardisation, and the parameters of a warm start."""

from __future__ import annotations

import numpy as np

from ..errors import MpigdError
from ..io.dataset import LocalData
from ..io.folds import exclude_fold_rows, fold_ids
from ..model import LinearModel, load_model
from ..parallel import rank_local


def first_local_row(local: LocalData) -> np.ndarray:
    """The first of this rank's rows (zeros without rows), dense."""
    if len(local.y) == 0:
        return np.zeros(local.X.shape[1])
    row = local.X[0]
    return np.asarray(row.toarray() if hasattr(row, "toarray") else row, np.float64).ravel()


def outside_fold(comm, local: LocalData, folds: int, fold_key, exclude_fold: int, seed: int):
    """This rank's rows outside fold ``exclude_fold`` (a copy), with folds as ``mpigd.cv``
    assigns them. Collective: yes."""
    fold = fold_ids(comm, local, folds, seed=seed, key=fold_key)
    return exclude_fold_rows(local, fold, exclude_fold)


def initial_theta(comm, init, problem, scaling) -> np.ndarray:
    """The starting parameters from the model ``init`` (a warm start) for ``problem``
    (:class:`~mpigd.train.problem.Problem`), on the scale training works on; it must be
    a model of the same kind and shape. Collective: yes."""
    if not isinstance(init, LinearModel):
        with rank_local(comm):
            init = load_model(init)
    model, n, K = problem.loss.name, problem.info.n_features, problem.loss.n_outputs
    shape = (n,) if K == 1 else (n, K)
    if init.kind != model or init.coef.shape != shape:
        raise MpigdError(
            f"cannot start from a {init.kind} model of shape {init.coef.shape}: training a "
            f"{model} model of shape {shape}"
        )
    theta = np.concatenate([np.ravel(init.coef), np.ravel(init.intercept)]).astype(np.float64)
    return theta if scaling is None else scaling.from_raw(theta, K)
