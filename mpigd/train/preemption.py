"""Turning SIGTERM and SIGUSR1 into a request to stop cleanly at the next iteration.

SLURM sends SIGUSR1 (``--signal=USR1@SECONDS``) or SIGTERM before a job's time limit,
and ``mpiexec`` forwards both to every rank. While a :class:`SignalWatch` is active, a
signal only sets a flag; the objective adds the flags of all ranks in its one
``Allreduce``, so every rank learns of the request in the same iteration, and the driver
writes a checkpoint and stops.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class SignalWatch:
    """Context manager that records SIGTERM and SIGUSR1 instead of dying of them.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    Calling the watch returns whether a signal arrived. Collective: no.
    """

    def __init__(self):
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.received is not None

    def _handle(self, signum, frame) -> None:
        self.received = signal.Signals(signum).name

    def __enter__(self) -> SignalWatch:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
