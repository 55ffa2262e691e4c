"""Gradient descent on functions with known minima; no MPI involved."""

import numpy as np
import pytest
from conftest import random_problem
from mpi4py import MPI

from mpigd.kernels.losses import make_loss
from mpigd.objective import Objective
from mpigd.optimize import OPTIMIZERS, gradient_descent
from mpigd.optimize.linesearch import wolfe_search


def quadratic(A, b):
    """f(x) = x^T A x / 2 - b^T x, minimised at A^-1 b."""

    def fun(x):
        return 0.5 * x @ A @ x - b @ x, A @ x - b

    return fun


def ill_conditioned(n=6, condition=100.0, seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = Q @ np.diag(np.geomspace(1.0, condition, n)) @ Q.T
    return A, rng.standard_normal(n)


def test_line_search_converges_to_the_minimum_to_a_tight_tolerance():
    A, b = ill_conditioned()
    result = gradient_descent(quadratic(A, b), np.zeros(6), tol=1e-11, ftol=0, max_iter=20000)
    assert result.converged and not result.diverged
    assert result.grad_norm <= 1e-11
    np.testing.assert_allclose(result.x, np.linalg.solve(A, b), rtol=1e-9)
    assert result.nfev >= result.nit + 1 and len(result.history) == result.nit + 1


def test_every_line_search_step_decreases_the_loss():
    X, y = random_problem("logistic", 300, 5)
    f = Objective(MPI.COMM_SELF, X, y, make_loss("logistic"))
    result = gradient_descent(f, np.zeros(6), tol=1e-7, initial_step=50.0)
    assert result.converged
    steps = np.diff(result.history)
    assert (steps[: len(steps) // 2] < 0).all()  # strict decrease while far from the minimum
    assert (steps <= 1e-10 * abs(result.history[0])).all()  # never more than rounding up


def test_fixed_step_follows_the_textbook_update():
    A, b = np.diag([1.0, 2.0]), np.array([1.0, 1.0])
    result = gradient_descent(quadratic(A, b), np.zeros(2), lr=0.1, max_iter=3, tol=0)
    x = np.zeros(2)
    for _ in range(3):
        x = x - 0.1 * (A @ x - b)
    np.testing.assert_array_equal(result.x, x)
    assert result.nfev == 4  # one evaluation per point, no line search


def test_too_large_fixed_step_reports_divergence_and_keeps_a_finite_point():
    A, b = np.diag([1.0, 100.0]), np.ones(2)
    with np.errstate(over="ignore", invalid="ignore"):
        result = gradient_descent(quadratic(A, b), np.zeros(2), lr=1.0, max_iter=10_000)
    assert result.diverged and not result.converged
    assert np.isfinite(result.x).all() and np.isfinite(result.fun)


def test_max_iter_is_reported_not_raised():
    A, b = ill_conditioned(condition=1e4)
    result = gradient_descent(quadratic(A, b), np.zeros(6), max_iter=5)
    assert not result.converged and result.nit == 5
    assert "max_iter" in result.message


def test_stalled_loss_stops_the_run():
    A, b = ill_conditioned(condition=1e6)
    result = gradient_descent(quadratic(A, b), np.zeros(6), tol=0, ftol=1e-3, max_iter=10_000)
    assert result.converged and "relative loss change" in result.message
    assert result.nit < 10_000


def test_callback_sees_every_iteration():
    A, b = ill_conditioned()
    seen = []
    result = gradient_descent(quadratic(A, b), np.zeros(6), max_iter=7, tol=0, callback=seen.append)
    assert [p.nit for p in seen] == list(range(1, 8))
    assert seen[-1].fun == result.fun and seen[-1].nfev == result.nfev


@pytest.mark.parametrize(
    "options", [{"max_iter": 0}, {"tol": -1.0}, {"ftol": -1.0}, {"lr": 0.0}, {"lr": np.inf}]
)
def test_invalid_options_are_rejected_before_any_evaluation(options):
    def fun(x):
        raise AssertionError("evaluated")

    with pytest.raises(ValueError):
        gradient_descent(fun, np.zeros(2), **options)


def test_registry_holds_gradient_descent():
    assert OPTIMIZERS["gd"].run is gradient_descent


def logistic_objective(n=5, l2=1e-2, seed=0):
    X, y = random_problem("logistic", 400, n, seed=seed)
    return Objective(MPI.COMM_SELF, X, y, make_loss("logistic"), l2=l2)


@pytest.mark.parametrize("name", ["nesterov", "lbfgs", "newton"])
def test_every_optimizer_finds_the_minimum_of_a_quadratic(name):
    A, b = ill_conditioned()
    extras = {"hess_fun": lambda x: (*quadratic(A, b)(x), A), "hessp": lambda x, v: A @ v}
    spec = OPTIMIZERS[name]
    result = spec.run(
        quadratic(A, b),
        np.zeros(6),
        tol=1e-10,
        ftol=0,
        max_iter=100_000,
        **{k: extras[k] for k in spec.needs if k in extras},
    )
    assert result.converged, result.message
    np.testing.assert_allclose(result.x, np.linalg.solve(A, b), rtol=1e-8)


def test_newton_cg_agrees_with_full_newton():
    f = logistic_objective(n=8)
    full = OPTIMIZERS["newton"].run(f, np.zeros(9), hess_fun=f.hessian, hessp=f.hessp, tol=1e-10)
    cg = OPTIMIZERS["newton"].run(
        f, np.zeros(9), hess_fun=f.hessian, hessp=f.hessp, tol=1e-10, full_hessian_max=0
    )  # force Hessian-vector products
    assert full.converged and cg.converged
    np.testing.assert_allclose(cg.x, full.x, rtol=1e-8)


def test_preconditioned_newton_cg_takes_fewer_products_on_badly_scaled_features():
    X, y = random_problem("logistic", 400, 8, seed=2)
    X = X * np.logspace(-2, 2, 8)  # columns four orders of magnitude apart
    f = Objective(MPI.COMM_SELF, X, y, make_loss("logistic"), l2=1e-4)
    runs = {}
    for name, diagonal in (("plain", None), ("jacobi", f.hess_diagonal)):
        start = f.n_evals
        runs[name] = OPTIMIZERS["newton"].run(
            f,
            np.zeros(9),
            hess_fun=f.hessian,
            hessp=f.hessp,
            hess_diag=diagonal,
            tol=1e-9,
            ftol=0.0,
            full_hessian_max=0,
        )
        runs[name].reductions = f.n_evals - start
    assert runs["plain"].converged and runs["jacobi"].converged
    # the same minimum: the losses to rounding (the weight of the column scaled by 1e-2 is
    # determined only to about 1e-5 by a gradient norm of 1e-9)
    assert runs["jacobi"].fun == pytest.approx(runs["plain"].fun, rel=1e-12)
    np.testing.assert_allclose(runs["jacobi"].x, runs["plain"].x, rtol=1e-4, atol=1e-6)
    assert runs["jacobi"].reductions < runs["plain"].reductions / 2, runs


def test_lbfgs_evaluates_no_point_twice():
    f = logistic_objective()
    seen = []

    def counted(theta):
        seen.append(theta.tobytes())
        return f(theta)

    result = OPTIMIZERS["lbfgs"].run(counted, np.zeros(6), tol=1e-9)
    assert result.converged and len(seen) == len(set(seen)) == result.nfev


def test_hessian_matches_finite_differences_of_the_gradient():
    f = logistic_objective(n=3)
    theta = np.array([0.3, -0.2, 0.1, 0.05])
    _, _, H = f.hessian(theta)
    h = 1e-6
    numeric = np.array([(f(theta + h * e)[1] - f(theta - h * e)[1]) / (2 * h) for e in np.eye(4)])
    np.testing.assert_allclose(H, numeric, rtol=1e-6, atol=1e-9)
    v = np.array([1.0, -2.0, 0.5, 3.0])
    np.testing.assert_allclose(f.hessp(theta, v), H @ v, rtol=1e-12)


def test_l1_prox_sets_exact_zeros():
    from mpigd.optimize import L1Penalty

    penalty = L1Penalty(0.5, np.array([True, True, False]))
    np.testing.assert_array_equal(penalty.prox(np.array([0.3, -2.0, 0.1]), 1.0), [0.0, -1.5, 0.1])
    assert penalty.value(np.array([0.3, -2.0, 9.0])) == pytest.approx(1.15)


def test_sgd_batches_depend_on_seed_and_step_only():
    from mpigd.optimize import batch_rows

    first = batch_rows(3, 10, 1000, 64)
    np.testing.assert_array_equal(first, batch_rows(3, 10, 1000, 64))
    assert not np.array_equal(first, batch_rows(3, 11, 1000, 64))
    assert first.min() >= 0 and first.max() < 1000 and (np.diff(first) >= 0).all()


def test_backtracking_shrinks_until_accepted_and_gives_up_where_told():
    from mpigd.optimize.linesearch import backtrack

    tried = []
    step, value, trials = backtrack(lambda t: tried.append(t) or -t, lambda t, v: t <= 0.25, 1.0)
    assert (step, value, trials) == (0.25, -0.25, 3) and tried == [1.0, 0.5, 0.25]
    assert backtrack(lambda t: t, lambda t, v: False, 1.0, min_step=0.1) is None  # 1 .. 0.125
    tried.clear()
    assert backtrack(tried.append, lambda t, v: False, 1.0, max_trials=4) is None
    assert tried == [1.0, 0.5, 0.25, 0.125]


def test_armijo_search_accepts_sufficient_decrease_and_rejects_non_finite_points():
    from mpigd.optimize.linesearch import armijo_search

    A, b = ill_conditioned()
    fun = quadratic(A, b)
    theta = np.zeros(len(b))
    f, g = fun(theta)
    step, (point, f_new, _), _ = armijo_search(fun, theta, f, g, -g, c1=1e-4, approx_tol=0)
    assert f_new <= f + 1e-4 * step * float(g @ -g)
    np.testing.assert_array_equal(point, theta - step * g)

    def blows_up(x):
        value = fun(x)
        return (np.inf, value[1]) if np.linalg.norm(x) > 1e-3 else value

    found = armijo_search(blows_up, theta, f, g, -g, c1=1e-4, approx_tol=0)
    assert found is not None and np.linalg.norm(found[1][0]) <= 1e-3


def test_normal_equations_report_their_iteration_and_resume_from_the_solution():
    from mpigd.optimize import normal_equations

    A, b = ill_conditioned()

    def hess_fun(x):
        return 0.5 * x @ A @ x - b @ x, A @ x - b, A

    seen = []
    result = normal_equations(None, np.zeros(len(b)), hess_fun=hess_fun, callback=seen.append)
    np.testing.assert_allclose(result.x, np.linalg.solve(A, b), rtol=1e-10)
    assert [p.nit for p in seen] == [1] and seen[0].fun == result.fun
    state = seen[0].state()
    np.testing.assert_array_equal(state["theta"], result.x)
    again = normal_equations(None, np.zeros(len(b)), hess_fun=hess_fun, resume=state)
    np.testing.assert_array_equal(again.x, result.x)


# ------------------------------------------------------------- the strong Wolfe search


def wolfe_holds(phi, t, c1=1e-4, c2=0.9):
    f0, d0 = phi(0.0)
    f, d = phi(t)
    return f <= f0 + c1 * t * d0 and abs(d) <= c2 * abs(d0)


@pytest.mark.parametrize(
    ("name", "phi", "expected_calls"),
    [
        ("unit step is fine", lambda t: ((t - 1.2) ** 2, 2 * (t - 1.2)), 1),
        ("needs expansion", lambda t: ((t - 40.0) ** 2, 2 * (t - 40.0)), None),
        ("needs a zoom", lambda t: ((t - 0.01) ** 2, 2 * (t - 0.01)), None),
        ("log-loss", lambda t: (np.logaddexp(0, 3 - 5 * t) + 0.1 * t * t,
                                -5 / (1 + np.exp(5 * t - 3)) + 0.2 * t), None),
    ],
)  # fmt: skip
def test_wolfe_search_returns_a_strong_wolfe_step(name, phi, expected_calls):
    calls = []

    def counted(t):
        calls.append(t)
        return phi(t)

    f0, d0 = phi(0.0)
    t = wolfe_search(counted, f0, d0, 1.0, c1=1e-4, c2=0.9, max_iter=20)
    assert t is not None and wolfe_holds(phi, t), (name, t)
    if expected_calls is not None:
        assert len(calls) == expected_calls


def test_wolfe_search_steps_back_from_non_finite_losses():
    def phi(t):  # overflows beyond t = 2: a diverging trial is too far, not the answer
        return ((t - 1.5) ** 2, 2 * (t - 1.5)) if t < 2 else (np.inf, np.nan)

    t = wolfe_search(phi, *phi(0.0), 8.0, c1=1e-4, c2=0.1, max_iter=20)
    assert t is not None and t < 2 and wolfe_holds(phi, t, c2=0.1)


def test_wolfe_search_gives_up_after_max_iter():
    def phi(t):  # decreases forever: no step meets the curvature condition
        return -t, -1.0

    assert wolfe_search(phi, 0.0, -1.0, 1.0, c1=1e-4, c2=0.9, max_iter=5) is None


def test_wolfe_search_gives_up_on_a_bracket_of_rounding_noise():
    calls = []

    def phi(t):  # flat: the loss never decreases enough, so the zoom narrows forever
        calls.append(t)
        return 1.0, -1e-300 if t < 1e-3 else 1.0

    assert wolfe_search(phi, 1.0, -1.0, 1.0, c1=1e-4, c2=0.9, max_iter=200) is None
    assert len(calls) < 60
