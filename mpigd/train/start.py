"""Where a training run starts: the rows it keeps (outside a held-out fold), the first
row that centres standardisation, and the parameters of a warm start."""

from __future__ import annotations

import numpy as np

from ..errors import MpigdError
from ..io.dataset import LocalData
from ..io.folds import exclude_fold_rows, fold_ids
from ..model import LinearModel, load_model
from ..parallel import rank_local
from ..partition import check_folds
from .options import option


def first_local_row(local: LocalData) -> np.ndarray:
    """The first of this rank's rows (zeros without rows), dense."""
    if len(local.y) == 0:
        return np.zeros(local.X.shape[1])
    row = local.X[0]
    return np.asarray(row.toarray() if hasattr(row, "toarray") else row, np.float64).ravel()


def fold_filter(folds, fold_key, exclude_fold, seed):
    """``(comm, local) -> local`` keeping the rows outside fold ``exclude_fold``, or None
    without one. The options are checked here, before anything is read."""
    if exclude_fold is None:
        named = (("folds", folds), ("fold_key", fold_key))
        given = [option(name) for name, value in named if value is not None]
        if given:
            raise MpigdError(
                f"{' and '.join(given)} only {'choose' if len(given) > 1 else 'chooses'} the "
                f"fold that {option('exclude_fold')} leaves out: give --exclude-fold too"
            )
        return None
    if folds is None:
        raise MpigdError(
            f"{option('exclude_fold')} needs the fold count, {option('folds')}"
            + (f", also with {option('fold_key')}" if fold_key is not None else "")
        )
    check_folds(folds)
    if not 0 <= exclude_fold < folds:
        raise MpigdError(
            f"{option('exclude_fold')} must lie in 0 .. {folds - 1} (with --folds {folds}), "
            f"got {exclude_fold}"
        )

    def keep(comm, local):
        fold = fold_ids(comm, local, folds, seed=seed, key=fold_key)
        return exclude_fold_rows(local, fold, exclude_fold)

    return keep


def initial_theta(comm, init, model: str, n: int, K: int, scaling) -> np.ndarray:
    """The starting parameters from the model ``init`` (a warm start), on the scale
    training works on; it must be a model of the same kind and shape. Collective: yes."""
    if not isinstance(init, LinearModel):
        with rank_local(comm):
            init = load_model(init)
    shape = (n,) if K == 1 else (n, K)
    if init.kind != model or init.coef.shape != shape:
        raise MpigdError(
            f"cannot start from a {init.kind} model of shape {init.coef.shape}: training a "
            f"{model} model of shape {shape}"
        )
    theta = np.concatenate([np.ravel(init.coef), np.ravel(init.intercept)]).astype(np.float64)
    return theta if scaling is None else scaling.from_raw(theta, K)
