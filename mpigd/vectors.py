"""Parameter vectors split over the ranks, for the vector work of an optimiser.

Every rank evaluates the objective at the same parameters and gets the same reduced
gradient, so every rank can run the optimiser whole, and for most of them that is what
is cheapest. L-BFGS's two-loop recursion is the exception on wide models: 4m passes
over 2m kept vectors of the parameters' length each iteration, the same on every rank,
which does not divide by P as the pass over the rows does (8.9 ms a step at 262,144
parameters and m = 10 on the 2-core development machine, where one rank's pass over
the 400,000 x 262,144 CSR benchmark takes about 65 ms). :class:`RankSlices` gives it
slices instead: rank r keeps and updates parameters ``[lo_r, hi_r)`` of every pair, the
dot products are one ``Allreduce`` of the slices' sums each, and the direction is made
whole with one ``Allgatherv``. A dot product's bits then depend on P (its slices are
added by MPI), but every rank gets the same, so the parameters stay the same on all.
"""

from __future__ import annotations

import numpy as np

from .optimize.base import WHOLE, Whole
from .parallel import allreduce_sum, gather_parts
from .partition import block_range

#: Parameters from which L-BFGS's vectors are split over the ranks: its two-loop takes
#: about 1.7 ms a step at 65,536 (m = 10), one small ``Allreduce`` about 5 us between two
#: ranks of one node, and a step makes 2m + 1 of them.
SPLIT_FROM = 2**16


class RankSlices(Whole):
    """Vectors of ``size`` numbers split into contiguous slices, one a rank (the
    slices' lengths differ by at most one, as the rows' do). Collective: ``dot``,
    ``dots`` and ``whole``, called in the same order on every rank."""

    def __init__(self, comm, size: int):
        self.comm = comm
        self.lo, self.hi = block_range(size, comm.size, comm.rank)
        self.counts = [
            hi - lo for lo, hi in (block_range(size, comm.size, r) for r in range(comm.size))
        ]

    def part(self, v: np.ndarray) -> np.ndarray:
        return v[..., self.lo : self.hi]

    def dot(self, a: np.ndarray, b: np.ndarray) -> float:
        return self.dots((a, b))[0]

    def dots(self, *pairs: tuple[np.ndarray, np.ndarray]) -> list[float]:
        sums = np.array([a @ b for a, b in pairs], dtype=np.float64)
        allreduce_sum(self.comm, sums)
        return list(sums)

    def whole(self, part: np.ndarray) -> np.ndarray:
        """The full vector of a slice, or of each row of a 2-D array of slices."""
        if part.ndim == 1:
            return gather_parts(self.comm, part, self.counts)
        rows = part.shape[0]
        sizes = [rows * count for count in self.counts]
        blocks = np.split(gather_parts(self.comm, part, sizes), np.cumsum(sizes)[:-1])
        return np.hstack([b.reshape(rows, c) for b, c in zip(blocks, self.counts, strict=True)])


def vectors_for(comm, size: int) -> Whole:
    """How an optimiser with vectors of ``size`` numbers holds them on ``comm``: split
    over the ranks from :data:`SPLIT_FROM` numbers on, when there are several ranks;
    whole otherwise. Collective: no."""
    return RankSlices(comm, size) if comm.size > 1 and size >= SPLIT_FROM else WHOLE
