"""Second-order methods: Newton's method (full Hessian or Newton-CG) and, for least
squares, the exact solution of the normal equations in one pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .base import FLAT, Function, Iterations, OptimizeResult, Progress, check_stopping, finite
from .linesearch import armijo_search

HessianFunction = Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]
HessianProduct = Callable[[np.ndarray, np.ndarray], np.ndarray]
HessianDiagonal = Callable[[np.ndarray], np.ndarray]

#: Cholesky pivots this much smaller than the largest mean a condition number above
#: about 1e14: the system is singular to working precision.
SINGULAR_PIVOT_RATIO = 1e-7


#: Newton forms the (p x p) Hessian up to this many parameters, beyond it Newton-CG.
FULL_HESSIAN_MAX = 2000


class SingularSystem(ValueError):
    """The Hessian (the Gram matrix, for least squares) is singular."""


SINGULAR_MESSAGE = (
    "the normal equations are singular (collinear or constant features, or fewer rows than "
    "parameters): this is their minimum-norm solution; l2 > 0 gives a unique one"
)


def _min_norm(H: np.ndarray, g: np.ndarray, rcond: float = 1e-10) -> np.ndarray:
    """A solution of ``H s = g`` whose weights (all but the last, the intercept) have
    the smallest norm: the intercept is eliminated (the Schur complement of its
    curvature, which centres the features), the weights solved by ``lstsq``, singular
    values below ``rcond`` times the largest taken as zero (the subtraction leaves those
    of a singular matrix at rounding level, where lstsq's own cut would decide by
    chance)."""
    h_ww, h_wb, h_bb = H[:-1, :-1], H[:-1, -1], H[-1, -1]
    if not h_bb > 0:
        return np.linalg.lstsq(H, g, rcond=rcond)[0]
    schur = h_ww - np.outer(h_wb, h_wb) / h_bb
    s_w = np.linalg.lstsq(schur, g[:-1] - h_wb * g[-1] / h_bb, rcond=rcond)[0]
    return np.append(s_w, (g[-1] - h_wb @ s_w) / h_bb)


def _solve(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``H^{-1} g`` by Cholesky; :class:`SingularSystem` when H is singular to working
    precision."""
    from scipy.linalg import LinAlgError, cho_factor, cho_solve  # only these optimisers

    try:
        factor = cho_factor(H, lower=True)
    except LinAlgError as exc:
        raise SingularSystem(str(exc)) from exc
    pivots = np.abs(np.diag(factor[0]))
    if pivots.min() <= SINGULAR_PIVOT_RATIO * pivots.max():
        raise SingularSystem("a Cholesky pivot is zero to working precision")
    return cho_solve(factor, g)


def newton(
    fun: Function,
    theta0: np.ndarray,
    *,
    hess_fun: HessianFunction,
    hessp: HessianProduct,
    hess_diag: HessianDiagonal | None = None,
    max_iter: int = 100,
    tol: float = 1e-6,
    ftol: float = 1e-12,
    full_hessian_max: int = FULL_HESSIAN_MAX,
    singular_ridge: float = 1e-8,
    c1: float = 1e-4,
    shrink: float = 0.5,
    approx_tol: float = 1e-10,
    min_step: float = 1e-12,
    callback: Callable[[Progress], None] | None = None,
    resume: dict[str, Any] | None = None,
) -> OptimizeResult:
    """Minimise a convex ``fun`` by Newton's method with a backtracking line search.

    Up to ``full_hessian_max`` parameters, each point is evaluated with ``hess_fun``
    (loss, gradient and Hessian in one go) and the Newton system is solved by Cholesky;
    a Hessian that is singular to working precision gets a ridge of ``singular_ridge``
    times its mean diagonal. Beyond that, Newton-CG: conjugate gradients on ``hessp``
    products, stopped at a relative residual of ``min(0.5, sqrt(|g|))`` (Nocedal &
    Wright, algorithm 7.1), with the loss and gradient from ``fun``; with ``hess_diag``
    (the Hessian's diagonal, one more pass per Newton step) the conjugate gradients are
    preconditioned by it, which on features of very different scales or frequencies
    (sparse data) takes a fraction of the products. Stopping rules as in
    :func:`gradient_descent`.

    Collective: as ``fun``, ``hess_fun``, ``hessp`` and ``hess_diag`` are.
    """
    check_stopping(max_iter=max_iter, tol=tol, ftol=ftol, lr=None)
    run = Iterations(theta0, resume, max_iter=max_iter, tol=tol, ftol=ftol, callback=callback)
    full = len(run.theta) <= full_hessian_max
    evaluate = run.counting(hess_fun if full else lambda point: (*fun(point), None))
    f, g, H = evaluate(run.theta)
    if stop := run.begin(f, g):
        return stop

    while not (stop := run.stop_before_step()):
        theta, f, g = run.theta, run.f, run.g
        direction, slope = _direction(theta, g, H, hessp, hess_diag, singular_ridge)
        found = armijo_search(
            evaluate,
            theta,
            f,
            g,
            direction,
            c1=c1,
            approx_tol=approx_tol,
            shrink=shrink,
            min_step=min_step,
            slope=slope,
        )
        if found is None:
            return run.result(False, FLAT)
        step, (theta_new, f_new, g_new, H), _ = found
        if stop := run.advance(theta_new, f_new, g_new, step):
            break
    return stop


def _direction(theta, g, H, hessp, hess_diag, singular_ridge) -> tuple[np.ndarray, float]:
    """The Newton direction at ``theta`` and its slope ``g.d``: by Cholesky on ``H``
    (with a ridge of ``singular_ridge`` times its mean diagonal where ``H`` is singular),
    or, where ``H`` is None, by truncated CG on ``hessp`` products, preconditioned by
    ``hess_diag`` if given; the steepest descent where that is not a descent direction."""
    g_norm = float(np.linalg.norm(g))
    if H is None:
        diagonal = None if hess_diag is None else hess_diag(theta)
        tol = min(0.5, np.sqrt(g_norm)) * g_norm
        direction = _conjugate_gradients(hessp, theta, -g, tol, diagonal)
    else:
        try:
            direction = -_solve(H, g)
        except SingularSystem:
            scale = float(np.trace(H)) / len(g)
            if not scale > 0:  # no curvature at all (Huber beyond epsilon): no Newton step
                return -g, -(g_norm**2)
            direction = -np.linalg.solve(H + singular_ridge * scale * np.eye(len(g)), g)
    slope = float(g @ direction)
    if not slope < 0:
        direction, slope = -g, -(g_norm**2)
    return direction, slope


def _conjugate_gradients(hessp, theta, b: np.ndarray, tol: float, diagonal=None) -> np.ndarray:
    """Approximately solve ``H(theta) x = b`` to a residual norm of ``tol``, by conjugate
    gradients preconditioned with ``diagonal`` (Jacobi; positive entries only, the others
    taken as 1), or plain; stops at negative curvature (truncated CG)."""
    inverse = None if diagonal is None else 1.0 / np.where(diagonal > 0, diagonal, 1.0)
    x = np.zeros_like(b)
    r = b.copy()
    z = r if inverse is None else inverse * r
    d = z.copy()
    rz = float(r @ z)
    for _ in range(len(b)):
        Hd = hessp(theta, d)
        curvature = float(d @ Hd)
        if curvature <= 0:
            return x if x.any() else b
        alpha = rz / curvature
        x += alpha * d
        r -= alpha * Hd
        if np.linalg.norm(r) <= tol:
            break
        z = r if inverse is None else inverse * r
        rz_new = float(r @ z)
        d = z + (rz_new / rz) * d
        rz = rz_new
    return x


def normal_equations(
    fun: Function,
    theta0: np.ndarray,
    *,
    hess_fun: HessianFunction,
    callback: Callable[[Progress], None] | None = None,
    resume: dict[str, Any] | None = None,
    **stopping,
) -> OptimizeResult:
    """Least squares in one pass: one ``hess_fun`` evaluation and a Cholesky solve.

    For a quadratic loss, the loss, gradient and Hessian at ``theta0`` are the sums of
    the normal equations (``A^T A``, ``A^T y``, ``y^T y`` and the weight, with ``A = [X 1]``,
    scaled and penalised by the objective), and one Newton step solves them exactly:
    ``theta = theta0 - H^-1 g``. The loss and gradient at the solution follow from the
    same quadratic, so no second pass is needed. ``stopping`` options are accepted for a
    uniform interface and have nothing to stop. Like the other optimisers it reports its
    one iteration to ``callback`` (so it can be checkpointed, and a signal during the
    pass stops it with a checkpoint) and accepts ``resume``: the solution does not depend
    on the starting point, so a resumed run repeats the pass from ``theta0`` and gets the
    bits of a run that never stopped. When ``H`` is singular to working precision
    (collinear or constant features, or fewer rows than parameters, without a penalty)
    the step is the solution with the smallest weights (the intercept, the last
    parameter, left out of the norm, as scikit-learn's ``LinearRegression`` does by
    centring) and the message says so (:data:`SINGULAR_MESSAGE`).

    Collective: as ``hess_fun`` is.
    """
    start = np.array(theta0, dtype=np.float64)
    f0, g0, H = hess_fun(start)
    if not (finite(f0, g0) and np.isfinite(H).all()):
        message = "loss or gradient is not finite at the initial point"
        return OptimizeResult(start, f0, g0, 0, 1, False, message, True, [f0])
    try:
        step, message = -_solve(H, g0), "solved the normal equations by Cholesky"
    except SingularSystem:
        step, message = -_min_norm(H, g0), SINGULAR_MESSAGE
    theta = start + step
    f = f0 + float(g0 @ step) + 0.5 * float(step @ H @ step)
    g = g0 + H @ step
    state = {"theta": theta, "nit": 1, "nfev": 1, "history": np.array([f0, f])}
    if callback is not None:
        callback(Progress(1, f, float(np.linalg.norm(g)), 1.0, 1, lambda: dict(state)))
    return OptimizeResult(theta, f, g, 1, 1, True, message, False, [f0, f])
