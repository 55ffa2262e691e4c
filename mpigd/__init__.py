"""mpigd: data-parallel training of linear models (least squares, logistic and softmax
regression) with MPI.

Each rank reads its own rows of an HDF5 dataset, computes local loss and gradient sums,
and one ``Allreduce`` per evaluation adds them; every rank applies the same update.

The names below are imported on first use (PEP 562), so that ``mpigd train`` starts
without loading what only evaluation or the data tools need.
"""

from importlib import import_module

from ._version import __version__
from .errors import MpigdError

_LAZY = {
    "FitResult": ".train.driver",
    "fit": ".train.driver",
    "cv": ".selection.path",
    **dict.fromkeys(
        (
            "GammaRegressor",
            "HuberRegressor",
            "LinearRegression",
            "LinearSVC",
            "LogisticRegression",
            "PoissonRegressor",
            "TweedieRegressor",
        ),
        ".estimators",
    ),
    "CVResult": ".selection.path",
    "LinearModel": ".model",
    "TrainOptions": ".train.options",
    "load_model": ".model",
    "evaluate": ".evaluation.scoring",
    "predict": ".evaluation.scoring",
}

__all__ = [
    "CVResult",
    "FitResult",
    "GammaRegressor",
    "HuberRegressor",
    "LinearModel",
    "LinearRegression",
    "LinearSVC",
    "LogisticRegression",
    "MpigdError",
    "PoissonRegressor",
    "TrainOptions",
    "TweedieRegressor",
    "__version__",
    "cv",
    "evaluate",
    "fit",
    "load_model",
    "predict",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
