"""L-BFGS with a strong Wolfe line search, with a state that can be checkpointed."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from .base import (
    FLAT,
    WHOLE,
    Function,
    Iterations,
    Memoized,
    OptimizeResult,
    Progress,
    Whole,
    check_stopping,
)
from .linesearch import armijo_search, wolfe_search


def lbfgs(
    fun: Function,
    theta0: np.ndarray,
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    ftol: float = 1e-12,
    memory: int = 10,
    c1: float = 1e-4,
    c2: float = 0.9,
    approx_tol: float = 1e-10,
    wolfe_maxiter: int = 20,
    curvature_tol: float = 1e-10,
    backtrack_tries: int = 30,
    callback: Callable[[Progress], None] | None = None,
    resume: dict[str, Any] | None = None,
    vectors: Whole = WHOLE,
) -> OptimizeResult:
    """Minimise ``fun`` by limited-memory BFGS (Nocedal & Wright, Numerical Optimization,
    algorithms 7.4 and 7.5).

    The direction comes from the two-loop recursion over the last ``memory`` pairs
    ``(s, y)``; the step from :func:`~mpigd.optimize.linesearch.wolfe_search` (strong
    Wolfe conditions ``c1``, ``c2``); ``fun`` is memoised, so the accepted point is not
    evaluated twice. Where the Wolfe search fails (near the minimum, where loss
    differences are rounding noise), a backtracking search with the derivative form of
    the Armijo test takes over (at most ``backtrack_tries`` trials from a step of 1; the
    Wolfe search makes at most ``wolfe_maxiter``). A pair enters the memory only with
    curvature ``s.y > curvature_tol |y|^2``. The pairs live in ``Progress.state()``,
    which holds all that is needed to continue exactly. Stopping rules as in
    :func:`gradient_descent`.

    The pairs and the two-loop recursion live in ``vectors``' parts (:class:`Whole`:
    the vectors themselves): given slices, each holder keeps and updates its slice of
    every pair, so that the recursion's work and memory divide among the holders; its
    dot products are combined over them and the direction is made whole for the line
    search. Each pair's ``s.y`` and ``y.y`` are computed once, when it is kept.

    Collective: as ``fun`` and ``vectors`` are.
    """
    check_stopping(max_iter=max_iter, tol=tol, ftol=ftol, lr=None)
    run = Iterations(theta0, resume, max_iter=max_iter, tol=tol, ftol=ftol, callback=callback)
    memo = Memoized(run.counting(fun))
    pairs, f_before = _restore(resume, vectors)
    p = len(vectors.part(run.theta))
    run.extra_state = lambda: {
        "pairs_s": vectors.whole(np.array([pair[0] for pair in pairs]).reshape(len(pairs), p)),
        "pairs_y": vectors.whole(np.array([pair[1] for pair in pairs]).reshape(len(pairs), p)),
        "f_before": np.nan if f_before is None else f_before,
    }
    search = partial(
        _line_search,
        memo,
        c1=c1,
        c2=c2,
        approx_tol=approx_tol,
        wolfe_maxiter=wolfe_maxiter,
        backtrack_tries=backtrack_tries,
    )
    if stop := run.begin(*memo(run.theta)):
        return stop
    work = np.empty((2, p))  # the two-loop's vectors, allocated once

    while not (stop := run.stop_before_step()):
        theta, f, g = run.theta, run.f, run.g
        direction = -vectors.whole(_two_loop(vectors.part(g), pairs, vectors, work))
        if not g @ direction < 0:  # not a descent direction: forget the curvature pairs
            pairs, direction = [], -g
        alpha = search(theta, f, g, direction, f_before)
        if alpha is None:
            if pairs:  # retry once along the steepest descent
                pairs, f_before = [], None
                continue
            return run.result(False, FLAT)
        theta_new = theta + alpha * direction
        f_new, g_new = memo(theta_new)
        s = vectors.part(theta_new) - vectors.part(theta)
        pair = _pair(vectors, s, vectors.part(g_new) - vectors.part(g))
        if pair[2] > curvature_tol * float(pair[3]):  # only pairs with positive curvature
            pairs = [*pairs, pair][-memory:]
        f_before = f
        if stop := run.advance(theta_new, f_new, g_new, float(alpha)):
            break
    return stop


def _pair(vectors: Whole, s: np.ndarray, y: np.ndarray) -> tuple:
    """The curvature pair ``(s, y, s.y, y.y)`` of the parts ``s`` and ``y``."""
    return (s, y, *vectors.dots((s, y), (y, y)))


def _restore(resume: dict[str, Any] | None, vectors: Whole) -> tuple[list, float | None]:
    """The curvature pairs ``(s, y, s.y, y.y)`` and the loss before the last step (None:
    no step yet) that ``resume`` holds; none at a fresh start."""
    if resume is None:
        return [], None
    f_before = resume["f_before"] if np.isfinite(resume["f_before"]) else None
    pairs = [
        _pair(vectors, vectors.part(s).copy(), vectors.part(y).copy())
        for s, y in zip(resume["pairs_s"], resume["pairs_y"], strict=True)
    ]
    return pairs, f_before


def _line_search(
    memo: Memoized,
    theta: np.ndarray,
    f: float,
    g: np.ndarray,
    direction: np.ndarray,
    f_before: float | None,
    *,
    c1: float,
    c2: float,
    approx_tol: float,
    wolfe_maxiter: int,
    backtrack_tries: int,
) -> float | None:
    """The step along ``direction`` from ``theta`` (loss ``f``, gradient ``g``; the loss
    before it ``f_before``): a strong Wolfe step, else a backtracking one, else None."""
    # The first trial step is min(1, 2.02 (f_before - f) / -slope), as scipy's and
    # Nocedal & Wright's (3.60); with no previous loss this makes it 1.01 / |g| on
    # the steepest descent, as scipy's BFGS does.
    slope = float(g @ direction)
    guess = f + float(np.linalg.norm(g)) / 2 if f_before is None else f_before
    step = min(1.0, 2.02 * (f - guess) / slope)
    alpha = wolfe_search(
        partial(_along, memo, theta, direction),
        f,
        slope,
        step if step > 0 else 1.0,
        c1=c1,
        c2=c2,
        max_iter=wolfe_maxiter,
    )
    if alpha is not None:
        return alpha
    # Near the minimum, loss differences are rounding noise and the Wolfe search, which
    # compares losses, can fail; backtracking with the derivative form of the Armijo test
    # still finds a step there.
    found = armijo_search(
        memo,
        theta,
        f,
        g,
        direction,
        c1=c1,
        approx_tol=approx_tol,
        max_trials=backtrack_tries,
        finite_only=True,
    )
    return None if found is None else found[0]


def _along(memo: Memoized, theta: np.ndarray, direction: np.ndarray, t: float):
    """The loss and its slope along ``direction`` at ``theta + t direction``."""
    f, g = memo(theta + t * direction)
    return f, float(g @ direction)


def _two_loop(g: np.ndarray, pairs: list, vectors: Whole, work: np.ndarray) -> np.ndarray:
    """The L-BFGS inverse-Hessian approximation times ``g`` (Nocedal & Wright, algorithm
    7.4) over the pairs ``(s, y, s.y, y.y)``, on ``vectors``' parts: ``g`` and the pairs
    are parts, and so is the result, in ``work`` (two vectors of a part's length: the
    result and a scratch one, so that no vector is allocated). Returns ``work[0]``."""
    q, scratch = work
    np.copyto(q, g)
    alphas = []
    for s, y, sy, _ in reversed(pairs):
        alphas.append(vectors.dot(s, q) / sy)
        q -= np.multiply(y, alphas[-1], out=scratch)
    if pairs:
        q *= pairs[-1][2] / pairs[-1][3]
    for (s, y, sy, _), alpha in zip(pairs, reversed(alphas), strict=True):
        q += np.multiply(s, alpha - vectors.dot(y, q) / sy, out=scratch)
    return q
