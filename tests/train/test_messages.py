"""Messages a newcomer meets say what to do: running out of iterations suggests
standardising where the features' scales differ (and only there), and cross-validation
says when the chosen penalty is an end of the path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import write_h5
from mpi4py import MPI

import mpigd
from mpigd.selection.penalties import PathEndWarning, warn_at_an_end
from mpigd.train.driver import ConvergenceWarning


def _rows(scales, m=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, len(scales))) * np.asarray(scales)
    y = X @ (1.0 / np.asarray(scales)) + 0.1 * rng.normal(size=m)
    return X, y


def _messages(caught, category) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, category)]


@pytest.mark.parametrize(
    ("scales", "standardize", "hinted"),
    [
        ([1.0, 100.0, 0.01], False, True),
        ([1.0, 2.0, 0.5], False, False),
        ([1.0, 100.0], True, False),
    ],
)
def test_max_iter_suggests_standardize_only_where_scales_differ(
    tmp_path, scales, standardize, hinted
):
    path = write_h5(tmp_path / "d.h5", *_rows(scales))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mpigd.fit(path, "linear", optimizer="lbfgs", max_iter=2, standardize=standardize)
    (message,) = _messages(caught, ConvergenceWarning)
    assert message.startswith("not converged: reached max_iter=2")
    assert ("try --standardize" in message) == hinted


def _noise(m=60, n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(m, n)), rng.normal(size=m)


@pytest.mark.parametrize(
    ("rows", "path", "end"),
    [(_noise, "1e2:1e-4:3", "largest"), (lambda: _rows([1.0, 1.0, 1.0]), "1e3:1e1:3", "smallest")],
)
def test_cv_says_when_the_chosen_penalty_is_an_end_of_the_path(tmp_path, rows, path, end):
    data = write_h5(tmp_path / "d.h5", *rows())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = mpigd.cv(data, "linear", folds=3, l2_path=path, refit=False)
    (message,) = _messages(caught, PathEndWarning)
    assert f"the chosen l2 = {result.record['chosen']:.3g} is the {end} penalty" in message


@pytest.mark.parametrize(("chosen", "warned"), [(0, True), (1, False), (3, False), (4, True)])
def test_only_an_end_of_a_longer_path_is_warned_of(chosen, warned):
    path = np.geomspace(1.0, 1e-4, 5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_at_an_end(MPI.COMM_SELF, "l2", path, chosen)
        warn_at_an_end(MPI.COMM_SELF, "l2", path[:1], 0)  # a path of one: no end to pass
    assert len(_messages(caught, PathEndWarning)) == warned
