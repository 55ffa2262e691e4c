"""Optimisers. Each sees only functions of the parameters (``theta -> (loss, grad)`` and,
for some, Hessians or mini-batches), never MPI.

Every optimiser is a plain function ``run(fun, theta0, *, max_iter, tol, ftol, callback,
resume, **extras) -> OptimizeResult``, registered in :data:`OPTIMIZERS` with the extra
arguments it needs and what it supports, so the driver dispatches with one lookup. Under
MPI every rank runs the same optimiser on the same reduced numbers, so every decision
(step acceptance, stopping) comes out the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .base import WHOLE, Memoized, OptimizeResult, Progress, Whole, check_stopping
from .gd import gradient_descent
from .lbfgs import lbfgs
from .nesterov import L1Penalty, accelerated_gradient
from .newton import SingularSystem, newton, normal_equations
from .sgd import batch_rows, sgd


@dataclass(frozen=True)
class Optimizer:
    """An optimiser and what it needs from the objective.

    ``needs`` names the extra keyword arguments beyond ``fun`` and the stopping options:
    ``lr``, ``penalty`` (an :class:`L1Penalty`), ``hess_fun``, ``hessp``, ``hess_diag``,
    ``batch_fun``, ``n_rows``, ``batch_size``, ``seed``, ``vectors`` (how its vectors
    are held: a :class:`Whole`, or slices of them).
    """

    run: Callable[..., OptimizeResult]
    needs: tuple[str, ...] = ()
    l1: bool = False  # supports an L1 penalty
    single_output: bool = False  # needs a Hessian: not for softmax
    least_squares: bool = False  # linear regression only


OPTIMIZERS: dict[str, Optimizer] = {
    "gd": Optimizer(gradient_descent, ("lr",)),
    "nesterov": Optimizer(accelerated_gradient, ("lr", "penalty"), l1=True),
    "lbfgs": Optimizer(lbfgs, ("vectors",)),
    "newton": Optimizer(newton, ("hess_fun", "hessp", "hess_diag"), single_output=True),
    "normal": Optimizer(normal_equations, ("hess_fun",), single_output=True, least_squares=True),
    "sgd": Optimizer(sgd, ("lr", "batch_fun", "n_rows", "batch_size", "seed")),
}

__all__ = [
    "OPTIMIZERS",
    "WHOLE",
    "L1Penalty",
    "Memoized",
    "OptimizeResult",
    "Optimizer",
    "Progress",
    "SingularSystem",
    "Whole",
    "accelerated_gradient",
    "batch_rows",
    "check_stopping",
    "gradient_descent",
    "lbfgs",
    "newton",
    "normal_equations",
    "sgd",
]
