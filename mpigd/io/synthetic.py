"""Synthetic datasets, written block by block so a file larger than memory can be made."""

from __future__ import annotations

import os

import h5py
import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from ..errors import MpigdError
from .outputs import check_outputs, create_rows_dataset, space_problem, writing
from .sparse import CSRWriter

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
    density: float | None = None,
    popularity: str = "zipf",
    progress=None,
) -> None:
    """Write a random linear, logistic or Poisson regression problem to ``path``,
    atomically.

    Dense by default: ``X`` has independent standard normal features. With ``density``,
    X is a CSR group (:mod:`mpigd.io.sparse`) with about ``density * n_features`` values
    a row, standard normal, in columns drawn with Zipf-like popularity (column j about
    ``1 / (j + 1)`` as often as column 0), as in click logs and text, or with
    ``popularity="flat"`` all columns alike, as after the hashing trick. The true weights
    are drawn so that ``z = X w + b`` has a standard deviation of about 2, the intercept
    ``N(0, 1)``. Linear: ``y = z + noise * N(0, 1)``. Logistic: ``y ~ Bernoulli(expit(z))``
    (``noise`` is not used). Poisson: counts ``y ~ Poisson(exp(z))``, with the weights
    half as large and the intercept a quarter of its draw plus 0.5 (mean counts
    of about 0.2 to 5). The true parameters are stored as ``coef_true`` and
    ``intercept_true`` (attributes, or a dataset for more than ``ATTRIBUTE_COEF``
    features). Memory use is one generation block (65,536 rows), whatever ``n_rows`` is.

    Collective: no (call on one rank).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if n_rows < 1 or n_features < 1:
        raise ValueError(f"need n_rows >= 1 and n_features >= 1, got {n_rows}, {n_features}")
    if not (noise >= 0 and np.isfinite(noise)):
        raise MpigdError(f"noise must be a finite number >= 0, got {noise}")
    if density is not None and not 0 < density <= 1:
        raise MpigdError(f"density must be in (0, 1], got {density}")
    if popularity not in POPULARITY:
        raise MpigdError(f"popularity must be one of {', '.join(POPULARITY)}, got {popularity!r}")
    dtype = np.dtype(dtype)
    check_outputs({"the output": path})
    per_row = n_features * (dtype.itemsize if density is None else density * (dtype.itemsize + 4))
    problem = space_problem(path, n_rows * (per_row + 16), "dataset")
    if problem:
        raise MpigdError(problem)
    rng = np.random.default_rng([seed, 0xC0EF])
    stored = n_features if density is None else max(density * n_features, 1.0)
    coef = rng.normal(0.0, 2.0 / np.sqrt(stored), n_features)
    intercept = rng.normal()
    shares = None
    if density is not None:
        shares = POPULARITY[popularity](n_features)
        # column j is in a row with probability about density * n * p_j: scaling its
        # weight by 1 / sqrt(n p_j) keeps the spread of z at about 2 for every column
        coef /= np.sqrt(n_features * shares)
    if kind == "poisson":
        coef, intercept = coef / 2, intercept / 4 + 0.5

    with writing(path) as tmp, h5py.File(tmp, "w") as f:
        if density is None:
            X = create_rows_dataset(f, "X", (n_rows, n_features), dtype)
        else:
            X = CSRWriter(f, "X", n_rows, n_features, dtype, None)
        y = create_rows_dataset(f, "y", (n_rows,), np.float64)
        f.attrs.update(kind=kind, seed=seed, noise=noise, intercept_true=intercept)
        if density is not None:
            f.attrs["density"] = density
        if n_features <= ATTRIBUTE_COEF:
            f.attrs["coef_true"] = coef
        else:
            f["coef_true"] = coef
        for block, start in enumerate(range(0, n_rows, GENERATION_ROWS)):
            stop = min(start + GENERATION_ROWS, n_rows)
            block_rng = np.random.default_rng([seed, block])
            if density is None:
                X_b = block_rng.standard_normal((stop - start, n_features)).astype(dtype)
            else:
                X_b = sparse_rows(block_rng, stop - start, n_features, density, shares, dtype)
            z = X_b.astype(np.float64) @ coef + intercept
            if kind == "linear":
                y_b = z + noise * block_rng.standard_normal(stop - start)
            elif kind == "poisson":
                y_b = block_rng.poisson(np.exp(z)).astype(np.float64)
            else:
                y_b = (block_rng.random(stop - start) < expit(z)).astype(np.float64)
            X[start:stop] = X_b
            y[start:stop] = y_b
            if progress is not None:
                progress(stop, n_rows)


#: The kinds of problem :func:`make_dataset` draws.
KINDS = ("linear", "logistic", "poisson")

#: The most features whose true weights are stored as an attribute (HDF5 keeps
#: attributes in the object header, which holds 64 KiB).
ATTRIBUTE_COEF = 4096


def zipf_popularity(n_features: int) -> np.ndarray:
    """Column j's share of the values, proportional to 1 / (j + 1), as in click logs and
    text. Collective: no."""
    popularity = 1.0 / np.arange(1, n_features + 1)
    return popularity / popularity.sum()


def flat_popularity(n_features: int) -> np.ndarray:
    """Every column's share alike, as after the hashing trick. Collective: no."""
    return np.full(n_features, 1.0 / n_features)


#: The column popularities :func:`make_dataset` can draw from.
POPULARITY = {"zipf": zipf_popularity, "flat": flat_popularity}


def sparse_rows(rng, rows, n_features, density, popularity, dtype) -> sp.csr_matrix:
    """CSR rows with Binomial(n, density) values each, in columns drawn by popularity;
    a column drawn twice in a row is stored once. Collective: no."""
    counts = rng.binomial(n_features, density, rows)
    row = np.repeat(np.arange(rows), counts)
    column = rng.choice(n_features, size=int(counts.sum()), p=popularity)
    values = rng.standard_normal(len(row)).astype(dtype)
    X = sp.coo_matrix((values, (row, column)), shape=(rows, n_features)).tocsr()
    X.sum_duplicates()
    return X
