"""The models beyond least squares and logistic regression, trained on one process: every
smooth optimiser reaches the stated objective's minimum, on dense and CSR rows, float32
and float64, with row weights, standardisation and an L1 penalty; the loss parameters
reach the model file."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import EPSILON, POWER, random_problem, reference_objective, write_csr, write_h5
from scipy.optimize import minimize

from mpigd import fit, load_model
from mpigd.train.driver import ConvergenceWarning

FAMILY = ["poisson", "gamma", "tweedie", "huber", "svm"]
PARAMETER = {"tweedie": {"power": POWER}, "huber": {"epsilon": EPSILON}}
L2 = 0.05


def minimum(kind, X, y, l2=L2, weights=None):
    """The stated objective's minimum (row weights: the same rows repeated), by scipy."""
    if weights is not None:  # integer weights: each row that many times
        X, y = np.repeat(X, weights, axis=0), np.repeat(y, weights)
    found = minimize(
        lambda theta: reference_objective(kind, X, y, theta, l2), np.zeros(X.shape[1] + 1),
        jac=True, method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000},
    )  # fmt: skip
    return found.fun


def reached(kind, path, X, y, l2=L2, **options):
    model = fit(path, kind, l2=l2, tol=1e-9, max_iter=20_000, **PARAMETER.get(kind, {}),
                **options).model  # fmt: skip
    theta = np.append(model.coef, model.intercept)
    return reference_objective(kind, X, y, theta, l2)[0], model


@pytest.mark.parametrize("kind", FAMILY)
@pytest.mark.parametrize("optimizer", ["gd", "nesterov", "lbfgs", "newton"])
def test_every_smooth_optimiser_reaches_the_minimum(kind, optimizer, tmp_path):
    X, y = random_problem(kind, 300, 4, seed=8)
    path = write_h5(tmp_path / "d.h5", X, y)
    best = minimum(kind, X, y)
    value, model = reached(kind, path, X, y, optimizer=optimizer)
    assert value - best <= 1e-6 * abs(best)
    assert model.kind == kind and model.info["optimizer"] == optimizer


@pytest.mark.parametrize("kind", FAMILY)
def test_csr_float32_weights_and_standardisation(kind, tmp_path):
    X, y = random_problem(kind, 300, 4, seed=9)
    X[np.abs(X) < 0.7] = 0.0  # about half the values stored
    X = X.astype(np.float32).astype(np.float64)  # the values float32 holds exactly
    weights = np.random.default_rng(1).integers(1, 4, len(y))
    path = write_csr(tmp_path / "s.h5", sp.csr_matrix(X.astype(np.float32)), y)
    with h5py.File(path, "a") as f:
        f["w"] = weights.astype(np.float64)
    best = minimum(kind, X, y, weights=weights)
    repeated_X, repeated_y = np.repeat(X, weights, axis=0), np.repeat(y, weights)
    value, _ = reached(kind, path, repeated_X, repeated_y, weight_key="w")
    assert value - best <= 1e-6 * abs(best)
    # standardised without a penalty: the same minimiser, mapped back to raw features
    unpenalised = minimum(kind, X, y, l2=0.0, weights=weights)
    value, _ = reached(kind, path, repeated_X, repeated_y, l2=0.0, weight_key="w",
                       standardize=True)  # fmt: skip
    assert value - unpenalised <= 1e-6 * abs(unpenalised)


@pytest.mark.parametrize("kind", FAMILY)
def test_an_l1_penalty_zeroes_weights(kind, tmp_path):
    X, y = random_problem(kind, 300, 6, seed=10)
    X[:, 4:] = np.random.default_rng(2).standard_normal((300, 2)) * 0.01  # little signal
    path = write_h5(tmp_path / "d.h5", X, y)
    model = fit(path, kind, l1=0.05, tol=1e-9, max_iter=20_000, **PARAMETER.get(kind, {})).model
    assert (model.coef[4:] == 0).all() and (model.coef[:4] != 0).any()


def test_the_loss_parameter_is_recorded_and_changes_the_model(tmp_path):
    X, y = random_problem("tweedie", 300, 4, seed=11)
    path = write_h5(tmp_path / "d.h5", X, y)
    for power in (1.2, 1.8):
        fit(path, "tweedie", power=power, l2=L2).model.save(tmp_path / f"{power}.h5")
    low, high = load_model(tmp_path / "1.2.h5"), load_model(tmp_path / "1.8.h5")
    assert (low.info["power"], high.info["power"], low.power) == (1.2, 1.8, 1.2)
    assert np.abs(low.coef - high.coef).max() > 1e-3
    linear = fit(path, "linear", l2=L2).model
    assert "power" not in linear.info and "epsilon" not in linear.info
    assert fit(path, "huber", epsilon=0.5, l2=L2).model.info["epsilon"] == 0.5


def test_cv_trains_its_final_model_with_the_loss_parameter(tmp_path):
    from mpigd import cv

    X, y = random_problem("tweedie", 300, 4, seed=12)
    path = write_h5(tmp_path / "d.h5", X, y)
    chosen = cv(path, "tweedie", power=1.2, l2_path=[0.03], folds=3).model
    alone = fit(path, "tweedie", power=1.2, l2=0.03, tol=1e-9).model
    assert chosen.info["power"] == 1.2
    np.testing.assert_allclose(chosen.coef, alone.coef, rtol=1e-5, atol=1e-7)
    huber = cv(path, "huber", epsilon=0.3, l2_path=[0.03], folds=3).model
    assert huber.info["epsilon"] == 0.3


def test_newton_without_curvature_steps_down_the_gradient(tmp_path):
    # Every residual beyond epsilon at the start: Huber's generalised Hessian is 0.
    X, y = random_problem("linear", 200, 3, seed=13)
    path = write_h5(tmp_path / "d.h5", X, y + 1000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("error", category=RuntimeWarning)
        model = fit(path, "huber", optimizer="newton", max_iter=5).model
    history = model.history
    assert np.all(np.isfinite(history)) and np.all(np.diff(history) < 0)


def test_log_link_scores_use_the_log_of_the_mean():
    from mpigd import PoissonRegressor

    est = PoissonRegressor(alpha=0.0).fit([[0.0], [1.0], [2.0]], [1.0, 2.0, 3.0])
    assert np.isfinite(est.score([[0.0], [-5000.0]], [1.0, 0.0]))  # a mean of 0 in float64
