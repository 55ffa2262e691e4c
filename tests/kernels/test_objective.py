"""Losses and the objective on one process (COMM_SELF): formulas, derivatives, stability."""

import warnings

import numpy as np
import pytest
from conftest import EPSILON, POWER, random_problem, reference_objective
from mpi4py import MPI

from mpigd.kernels.dense import local_sums, reference_sums
from mpigd.kernels.losses import log1pexp_and_expit, make_loss
from mpigd.objective import Objective

KINDS = ["linear", "logistic", "poisson", "gamma", "tweedie", "huber", "svm"]


def loss_of(kind):
    return make_loss(kind, power=POWER, epsilon=EPSILON)


def objective(kind, X, y, l2=0.0):
    return Objective(MPI.COMM_SELF, X, y, loss_of(kind), l2=l2)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_matches_the_stated_formula(kind, l2):
    X, y = random_problem(kind, 57, 5)
    theta = np.random.default_rng(1).standard_normal(6) / 3
    loss, grad = objective(kind, X, y, l2)(theta)
    ref_loss, ref_grad = reference_objective(kind, X, y, theta, l2)
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_gradient_matches_finite_differences(kind, l2):
    X, y = random_problem(kind, 40, 4, seed=3)
    f = objective(kind, X, y, l2)
    theta = np.random.default_rng(2).standard_normal(5) / 3
    _, grad = f(theta)
    h = 1e-6
    numeric = [(f(theta + h * e)[0] - f(theta - h * e)[0]) / (2 * h) for e in np.eye(len(theta))]
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_curvature_matches_finite_differences_of_the_gradient(kind):
    # Huber and the squared hinge have a generalised curvature: it is the derivative of
    # the gradient wherever no row sits on a kink, as here with probability 1.
    X, y = random_problem(kind, 40, 3, seed=5)
    f = objective(kind, X, y, 0.1)
    theta = np.array([0.3, -0.2, 0.1, 0.05])
    _, _, H = f.hessian(theta)
    h = 1e-7
    numeric = np.array([(f(theta + h * e)[1] - f(theta - h * e)[1]) / (2 * h) for e in np.eye(4)])
    np.testing.assert_allclose(H, numeric, rtol=1e-5, atol=1e-8)
    v = np.array([1.0, -2.0, 0.5, 3.0])
    np.testing.assert_allclose(f.hessp(theta, v), H @ v, rtol=1e-12)
    np.testing.assert_allclose(f.hess_diagonal(theta), np.diag(H), rtol=1e-12)


@pytest.mark.parametrize(
    ("kind", "y", "count", "example", "rule"),
    [
        ("poisson", [0.0, 2.5, -1.0, -3.0], 2, -1.0, "poisson targets must be >= 0"),
        ("gamma", [1.0, 0.0, 2.0, -1.0], 2, 0.0, "gamma targets must be > 0"),
        ("tweedie", [0.0, 1.5, -0.5], 1, -0.5, "tweedie targets must be >= 0"),
        ("svm", [0.0, 1.0, -1.0], 1, -1.0, "svm labels must be 0 or 1"),
    ],
)
def test_each_loss_names_the_targets_it_cannot_take(kind, y, count, example, rule):
    problem = loss_of(kind).label_problem(np.array(y))
    assert (problem.count, problem.example) == (count, example) and rule in problem.rule
    assert loss_of(kind).label_problem(np.array([1.0, 0.5 if kind != "svm" else 0.0])) is None
    assert loss_of("huber").label_problem(np.array([-1e9, 3.0])) is None


@pytest.mark.parametrize("kind", ["poisson", "gamma", "tweedie"])
def test_log_link_losses_overflow_to_inf_without_warnings(kind):
    # exp overflows only where the loss is beyond float64: the value is inf, which the
    # line search steps back from, and NumPy says nothing.
    z = np.array([-3000.0, 0.0, 3000.0])
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise"):
        warnings.simplefilter("error")
        values, derivative = loss_of(kind).values_and_derivative(z, np.array([1.0, 1.0, 1.0]))
    assert np.isinf(values).any() and not np.isnan(values).any() and np.isfinite(values[1])
    assert np.isfinite(derivative[1])


def test_loss_parameters_out_of_range_are_refused():
    for power in (1.0, 2.0, np.nan):
        with pytest.raises(ValueError, match="between 1 and 2"):
            make_loss("tweedie", power=power)
    for epsilon in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="epsilon must be > 0"):
            make_loss("huber", epsilon=epsilon)


def test_intercept_is_not_penalised():
    X, y = random_problem("linear", 30, 3)
    theta = np.array([0.0, 0.0, 0.0, 5.0])
    plain, penalised = objective("linear", X, y)(theta), objective("linear", X, y, 10.0)(theta)
    assert plain[0] == penalised[0]
    np.testing.assert_array_equal(plain[1], penalised[1])


def test_logistic_is_stable_at_large_margins():
    z = np.array([-1000.0, -800.0, 800.0, 1000.0])
    X, y = z[:, None], np.array([0.0, 1.0, 0.0, 1.0])
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        softplus, sigmoid = log1pexp_and_expit(z)
        np.testing.assert_array_equal(softplus, [0.0, 0.0, 800.0, 1000.0])
        np.testing.assert_array_equal(sigmoid, [0.0, 0.0, 1.0, 1.0])
        loss, grad = objective("logistic", X, y)(np.array([1.0, 0.0]))
    # rows 0 and 3 are right with certainty; rows 1 and 2 are wrong by a margin of 800
    assert loss == pytest.approx(1600 / 4, rel=1e-15)
    np.testing.assert_allclose(grad, [(800 + 800) / 4, (-1 + 1) / 4], atol=1e-15)


def test_softplus_and_sigmoid_match_the_reference_functions():
    from scipy.special import expit

    z = np.linspace(-40, 40, 8001)
    softplus, sigmoid = log1pexp_and_expit(z)
    np.testing.assert_allclose(softplus, np.logaddexp(0.0, z), rtol=1e-15, atol=0)
    np.testing.assert_allclose(sigmoid, expit(z), rtol=1e-15, atol=0)


def test_logistic_labels_must_be_binary():
    check = make_loss("logistic").label_problem
    assert check(np.array([0.0, 1.0, 1.0])) is None
    problem = check(np.array([0.0, 2.0, -1.0, 1.0]))
    assert problem.count == 2 and problem.example == 2.0 and "must be 0 or 1" in problem.rule
    assert make_loss("linear").label_problem(np.array([3.5, -2.0])) is None


@pytest.mark.parametrize("kind", KINDS)
def test_blocks_and_float32_do_not_change_the_sums(kind):
    X, y = random_problem(kind, 1001, 6)
    theta = np.random.default_rng(4).standard_normal(7)
    theta /= 3
    loss_sum, grad_sum = reference_sums(X, y, theta, loss_of(kind))
    small_blocks = reference_sums(X, y, theta, loss_of(kind), block_bytes=8 * 6 * 7)
    assert small_blocks[0] == pytest.approx(loss_sum, rel=1e-13)
    np.testing.assert_allclose(small_blocks[1], grad_sum, rtol=1e-12)

    X32 = X.astype(np.float32)
    wide = local_sums(X32.astype(np.float64), y, theta, loss_of(kind))
    narrow = local_sums(X32, y, theta, loss_of(kind))
    assert narrow[0] == pytest.approx(wide[0], rel=1e-13)  # float64 arithmetic either way
    np.testing.assert_allclose(narrow[1], wide[1], rtol=1e-12)


def test_a_rank_without_rows_contributes_zeros():
    loss_sum, grad_sum = local_sums(
        np.empty((0, 3)), np.empty(0), np.ones(4), make_loss("logistic")
    )
    assert loss_sum == 0.0
    np.testing.assert_array_equal(grad_sum, np.zeros(4))


def test_evaluations_and_time_are_counted():
    X, y = random_problem("linear", 20, 2)
    f = objective("linear", X, y)
    f(np.zeros(3))
    f(np.ones(3))
    assert f.n_evals == 2
    assert f.timings.compute > 0 and f.timings.allreduce >= 0
