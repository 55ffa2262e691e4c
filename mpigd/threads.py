"""How many BLAS threads a rank runs: ``--threads``, else ``$MPIGD_NUM_THREADS``, else 1,
on the command line and in the Python API alike.

Under ``mpiexec -n P`` on P cores, BLAS's own default (a thread a core, in every rank)
puts P x P threads on P cores; L-BFGS's dot products over 262,144 parameters, threaded
so, took three times as long a step at P = 2 on the 2-core development machine. The
compiled passes run one thread a rank whatever this says."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from threadpoolctl import threadpool_limits

from .errors import MpigdError

ENV = "MPIGD_NUM_THREADS"
#: The most BLAS threads a rank may ask for (BLAS libraries take a C int, and no node has
#: more cores than this).
MAX_THREADS = 4096
T = TypeVar("T")

#: The count an enclosing :func:`blas_threads` chose (a command's ``--threads``), which an
#: API call inside it keeps.
_chosen: ContextVar[int | None] = ContextVar("mpigd_blas_threads", default=None)


def from_env() -> int:
    """``$MPIGD_NUM_THREADS``, else 1; one clear error where it is not a whole number
    from 1 to :data:`MAX_THREADS`. Collective: no."""
    text = os.environ.get(ENV, "1")
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_THREADS:
        raise MpigdError(
            f"{ENV}={text!r} is not a whole number from 1 to {MAX_THREADS} (BLAS threads per rank)"
        )
    return value


@contextmanager
def blas_threads(count: int | None = None) -> Iterator[None]:
    """Run the block with ``count`` BLAS threads in this process; with None, the count
    an enclosing block chose, else :func:`from_env`. Collective: no."""
    if count is None and _chosen.get() is not None:
        yield
        return
    count = from_env() if count is None else count
    token = _chosen.set(count)
    try:
        with threadpool_limits(limits=count, user_api="blas"):
            yield
    finally:
        _chosen.reset(token)


def limited(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` run inside :func:`blas_threads` (the Python API's entry points)."""

    @functools.wraps(fn)
    def run(*args, **kwargs) -> T:
        with blas_threads():
            return fn(*args, **kwargs)

    return run
