"""What every optimiser shares: its result and progress records, option checks and the
stopping tests. Optimisers see only functions of ``theta``, never MPI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Function = Callable[[np.ndarray], tuple[float, np.ndarray]]

#: The largest iteration count: model and checkpoint files store counts as 64-bit integers.
MAX_ITER = 2**63 - 1


@dataclass(frozen=True)
class Progress:
    """What a callback sees after each iteration.

    ``state()`` returns the optimiser's full state, from which the same optimiser,
    given it as ``resume``, continues exactly as if it had never stopped; it is built
    only when called (for a checkpoint). Collective: as the optimiser's vectors are
    (L-BFGS's, given slices, are gathered whole on every rank).
    """

    nit: int
    fun: float
    grad_norm: float
    step: float
    nfev: int
    state: Callable[[], dict[str, Any]]


@dataclass
class OptimizeResult:
    """The outcome of one run.

    ``converged`` says whether a stopping test was met (gradient norm or stalled loss);
    ``diverged`` that the loss became NaN or infinite. ``history`` holds the loss after
    every iteration, starting with the initial point.
    """

    x: np.ndarray
    fun: float
    grad: np.ndarray
    nit: int
    nfev: int
    converged: bool
    message: str
    diverged: bool = False
    history: list[float] = field(default_factory=list)

    @property
    def grad_norm(self) -> float:
        return float(np.linalg.norm(self.grad))


def check_stopping(*, max_iter: int, tol: float, ftol: float, lr: float | None) -> None:
    """Raise ValueError, naming the allowed range, for out-of-range common options.
    Collective: no."""
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if max_iter > MAX_ITER:
        raise ValueError(f"max_iter must be at most 2^63 - 1, got {max_iter}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if not ftol >= 0:
        raise ValueError(f"ftol must be >= 0, got {ftol}")
    if lr is not None and not (lr > 0 and np.isfinite(lr)):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")


def finite(f: float, g: np.ndarray) -> bool:
    return bool(np.isfinite(f) and np.isfinite(g).all())


def stalled(f_old: float, f: float, ftol: float) -> bool:
    """The relative loss change of one iteration is below ``ftol`` (0 turns it off).
    Collective: no."""
    return abs(f_old - f) < ftol * max(abs(f_old), abs(f), 1.0)


def sufficient_decrease(f, f_new, slope, slope_new, step, c1, approx_tol) -> bool:
    """Armijo's test ``f(t) <= f(0) + c1 t phi'(0)`` along a descent direction.

    ``slope`` and ``slope_new`` are the directional derivatives at 0 and at the trial
    point. Where the loss changes by at most ``approx_tol |f|``, rounding error could
    decide the loss test either way, so its derivative form from Hager & Zhang's
    approximate Wolfe conditions (SIAM J. Optim. 16, 2005) decides instead:
    ``phi'(t) <= -(1 - 2 c1) phi'(0)``; the two agree exactly on quadratics.

    Collective: no.
    """
    if abs(f_new - f) <= approx_tol * abs(f):
        return bool(slope_new <= -(1 - 2 * c1) * slope)
    return bool(f_new <= f + c1 * step * slope)


class Whole:
    """Vectors held whole: what an optimiser's vector work runs on by default.

    An optimiser that keeps many vectors of the parameters' length (L-BFGS's curvature
    pairs) works on ``part(v)`` of each and adds their dot products with ``dot`` and
    ``dots``; ``whole(part)`` gives back the full vector (or, for a 2-D array, each row's
    full vector). Here the part is the vector itself. A caller may give an optimiser
    another object with these four methods whose parts are slices, and whose ``dot``,
    ``dots`` and ``whole`` then combine the parts of all holders (collective calls, made
    in the same order everywhere because every holder runs the same optimiser on the same
    numbers): the vector work divides among them, and the optimiser never knows how.
    """

    def part(self, v: np.ndarray) -> np.ndarray:
        return v

    def dot(self, a: np.ndarray, b: np.ndarray) -> float:
        return a @ b

    def dots(self, *pairs: tuple[np.ndarray, np.ndarray]) -> list[float]:
        """``[a @ b for a, b in pairs]``: several dot products in one combination."""
        return [a @ b for a, b in pairs]

    def whole(self, part: np.ndarray) -> np.ndarray:
        return part


WHOLE = Whole()


class Memoized:
    """``fun`` that remembers its last evaluation, so that a line search asking for the
    loss and the gradient at one point separately pays for one evaluation."""

    def __init__(self, fun: Function):
        self.fun = fun
        self._x: np.ndarray | None = None
        self._value: tuple[float, np.ndarray] | None = None

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        if self._x is None or not np.array_equal(x, self._x):
            self._value = self.fun(x)
            self._x = np.array(x, copy=True)
        return self._value

    def loss(self, x: np.ndarray) -> float:
        return self(x)[0]

    def grad(self, x: np.ndarray) -> np.ndarray:
        return self(x)[1]


FLAT = "line search found no decrease; the loss is flat to rounding error here (try a larger tol)"


class Iterations:
    """The bookkeeping every iterative optimiser shares, in one place.

    It holds the current point, loss and gradient, counts iterations and evaluations,
    keeps the loss history, runs the stopping tests, calls the callback and builds the
    result and the resumable state. An optimiser creates one, evaluates through
    :meth:`counting`, and reports each accepted step to :meth:`advance`; whatever a test
    ends with comes back as an :class:`OptimizeResult` to return.

    ``residual(theta, g)`` is what the ``tol`` test measures (the gradient by default;
    a prox-gradient residual with a penalty); ``extra_state()`` adds the optimiser's own
    state (step, momentum, curvature pairs...) to :meth:`state`.
    """

    def __init__(self, theta0, resume, *, max_iter, tol, ftol, callback, residual=None):
        self.max_iter, self.tol, self.ftol, self.callback = max_iter, tol, ftol, callback
        self.residual = residual or (lambda theta, g: g)
        self.extra_state: Callable[[], dict[str, Any]] = dict
        if resume is None:
            self.theta, self.nit, self.nfev, self.history = theta0, 0, 0, []
        else:
            self.theta, self.nit, self.nfev = resume["theta"], resume["nit"], resume["nfev"]
            self.history = list(resume["history"])[:-1]  # its last entry is evaluated again
        self.theta = np.array(self.theta, dtype=np.float64)
        self.f, self.g = np.inf, np.zeros_like(self.theta)

    def counting(self, fun):
        """``fun``, counting each call as one evaluation."""

        def counted(*args):
            self.nfev += 1
            return fun(*args)

        return counted

    def begin(self, f: float, g: np.ndarray) -> OptimizeResult | None:
        """Record the loss and gradient at the starting point."""
        self.f, self.g = f, g
        self.history.append(f)
        if not finite(f, g):
            return self.result(False, "loss or gradient is not finite at the initial point", True)
        return None

    def residual_norm(self) -> float:
        return float(np.linalg.norm(self.residual(self.theta, self.g)))

    def stop_before_step(self) -> OptimizeResult | None:
        """The tests before each iteration: converged, or out of iterations."""
        norm = self.residual_norm()
        if norm <= self.tol:
            return self.result(True, f"gradient norm {norm:.3g} <= tol {self.tol:g}")
        if self.nit >= self.max_iter:
            return self.result(False, f"reached max_iter={self.max_iter} before the stopping tests")
        return None

    def advance(self, theta, f: float, g: np.ndarray, step: float) -> OptimizeResult | None:
        """Accept ``theta``; report it; stop if it diverged or the loss stalled."""
        self.nit += 1
        if not finite(f, g):
            return self.result(False, f"loss or gradient became {f} at iteration {self.nit}", True)
        f_old = self.f
        self.theta, self.f, self.g = theta, f, g
        self.history.append(f)
        if self.callback is not None:
            self.callback(Progress(self.nit, f, self.residual_norm(), step, self.nfev, self.state))
        if stalled(f_old, f, self.ftol):
            return self.result(True, f"relative loss change < ftol {self.ftol:g}")
        return None

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly: give it back as ``resume``."""
        return {
            "theta": self.theta.copy(),
            "nit": self.nit,
            "nfev": self.nfev,
            "history": np.array(self.history),
            **self.extra_state(),
        }

    def result(self, converged: bool, message: str, diverged: bool = False) -> OptimizeResult:
        return OptimizeResult(
            self.theta,
            self.f,
            self.residual(self.theta, self.g),
            self.nit,
            self.nfev,
            converged,
            message,
            diverged,
            self.history,
        )
