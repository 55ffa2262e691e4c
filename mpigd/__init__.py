"""mpigd: data-parallel training of linear and logistic regression with MPI.

Each rank reads its own rows of an HDF5 dataset, computes local loss and gradient sums,
and one ``Allreduce`` per evaluation adds them; every rank applies the same update.
"""

from ._version import __version__
from .errors import MpigdError
from .evaluation.scoring import evaluate, predict
from .model import LinearModel, load_model
from .train.driver import FitResult, fit

__all__ = [
    "FitResult",
    "LinearModel",
    "MpigdError",
    "__version__",
    "evaluate",
    "fit",
    "load_model",
    "predict",
]
