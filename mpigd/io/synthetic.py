"""Synthetic datasets, written block by block so a file larger than memory can be made."""

from __future__ import annotations

import os

import h5py
import numpy as np
from scipy.special import expit

from ..errors import MpigdError
from .outputs import check_outputs, create_rows_dataset, space_problem, writing

#: Rows drawn per random-number stream. Each block has its own stream, seeded by
#: ``(seed, block index)``, so the file's content depends on the seed only.
GENERATION_ROWS = 1 << 16


def make_dataset(
    path: str | os.PathLike,
    n_rows: int,
    n_features: int,
    *,
    kind: str = "logistic",
    seed: int = 0,
    noise: float = 0.1,
    dtype: str = "float64",
    progress=None,
) -> None:
    """Write a random linear or logistic regression problem to ``path``, atomically.

    ``X`` has independent standard normal features; the true weights are drawn
    ``N(0, 4 / n)`` so that ``z = X w + b`` has a standard deviation of about 2, and the
    intercept ``N(0, 1)``. Linear: ``y = z + noise * N(0, 1)``. Logistic:
    ``y ~ Bernoulli(expit(z))`` (``noise`` is not used). The true parameters are stored in
    the attributes ``coef_true`` and ``intercept_true``. HDF5 chunks hold whole rows
    (about 1 MiB each) so that reading a block of rows touches only its own chunks.
    Memory use is one generation block (65,536 rows), whatever ``n_rows`` is.

    Collective: no (call on one rank).
    """
    if kind not in ("linear", "logistic"):
        raise ValueError(f"kind must be 'linear' or 'logistic', got {kind!r}")
    if n_rows < 1 or n_features < 1:
        raise ValueError(f"need n_rows >= 1 and n_features >= 1, got {n_rows}, {n_features}")
    if not (noise >= 0 and np.isfinite(noise)):
        raise MpigdError(f"noise must be a finite number >= 0, got {noise}")
    dtype = np.dtype(dtype)
    check_outputs({"the output": path})
    problem = space_problem(path, n_rows * (n_features * dtype.itemsize + 8), "dataset")
    if problem:
        raise MpigdError(problem)
    rng = np.random.default_rng([seed, 0xC0EF])
    coef = rng.normal(0.0, 2.0 / np.sqrt(n_features), n_features)
    intercept = rng.normal()

    with writing(path) as tmp, h5py.File(tmp, "w") as f:
        X = create_rows_dataset(f, "X", (n_rows, n_features), dtype)
        y = create_rows_dataset(f, "y", (n_rows,), np.float64)
        f.attrs.update(kind=kind, seed=seed, noise=noise, coef_true=coef, intercept_true=intercept)
        for block, start in enumerate(range(0, n_rows, GENERATION_ROWS)):
            stop = min(start + GENERATION_ROWS, n_rows)
            block_rng = np.random.default_rng([seed, block])
            X_b = block_rng.standard_normal((stop - start, n_features)).astype(dtype)
            z = X_b.astype(np.float64) @ coef + intercept
            if kind == "linear":
                y_b = z + noise * block_rng.standard_normal(stop - start)
            else:
                y_b = (block_rng.random(stop - start) < expit(z)).astype(np.float64)
            X[start:stop] = X_b
            y[start:stop] = y_b
            if progress is not None:
                progress(stop, n_rows)
