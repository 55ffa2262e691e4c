"""How a rank's memory budget is spent when its rows are streamed from disk
(:mod:`mpigd.io.stream`): what it keeps a row, what the process and the kernels take,
and the size of the blocks a pass reads with what is left. Pure, no MPI."""

from __future__ import annotations

import os

import numpy as np

from ..errors import MpigdError
from ..host import parse_bytes
from ..partition import BLOCK_BYTES, OPTIMIZER_VECTORS
from . import sparse
from .dataset import DatasetInfo
from .outputs import human_bytes

#: The largest block a pass reads at a time (each of its buffers): a long sequential
#: request, and small enough that the blocks being summed and read stay in the
#: last-level cache, so X crosses memory once more than in memory, not twice.
MAX_BLOCK_BYTES = 4 << 20

#: The buffers a pass cycles through: the block being summed, the one being read, and
#: one more, so that the reader does not wait for the kernel to hand a buffer back at
#: every block. Measured (benchmarks/stream.py, 1M x 256 float64, one rank, side by side,
#: three rounds; streamed time against the larger of a plain read and the in-memory
#: pass): two buffers of 8 MiB 1.22-1.30x, three of 4 MiB 0.97-1.18x, four of 4 MiB
#: 1.33-1.42x, three or four of 2 MiB 0.98-1.09x, two of 1 or 2 MiB 1.8-3.2x; at two
#: ranks 2.3-2.5x with two of 8 MiB, 1.9-2.0x with three of 4 MiB (no core is free there
#: for the readers). On the 1.2 GB CSR file, whose pass is compute-bound, two of 8 MiB
#: and three of 4 MiB were within the noise of each other (1.14-1.38x, 0.96-1.40x).
BUFFERS = 3


#: Bytes a rank keeps for each of its rows while streaming: its label, weight (a class
#: weight or the file's), Newton-CG's curvature, for CSR its ``indptr`` entry, and two
#: more for a pass's per-row temporaries.
ROW_STATE_BYTES = 6 * 8


#: Set to a size (``1M``), every HDF5 input that can be streamed is, in blocks of that
#: many bytes, whatever the budget: to measure streaming against the same run in memory,
#: and to test it on small files.
STREAM_ENV = "MPIGD_STREAM_BLOCK_BYTES"


def forced_block_bytes() -> int | None:
    """The block size that :data:`STREAM_ENV` forces, or None. Collective: no."""
    text = os.environ.get(STREAM_ENV, "")
    if not text:
        return None
    try:
        return int(parse_bytes(text))
    except ValueError:
        raise MpigdError(f"{STREAM_ENV}={text!r} is not a size > 0 such as 1M") from None


#: What the NumPy kernels and the optimisers' linear algebra allocate beside the blocks
#: (their own row blocks of :data:`~mpigd.partition.BLOCK_BYTES`, widened and stacked).
KERNEL_WORK_BYTES = 4 * BLOCK_BYTES


def held_bytes(process: float, info: DatasetInfo, rows: int) -> float:
    """What a rank of ``rows`` rows holds before its blocks: ``process`` (the process as
    measured), the optimiser's vectors and :data:`ROW_STATE_BYTES` a row: ``fixed`` of
    :func:`block_bytes`. Collective: no."""
    return process + 8.0 * OPTIMIZER_VECTORS * (info.n_features + 1) + rows * ROW_STATE_BYTES


def block_bytes(info: DatasetInfo, budget: float, fixed: float) -> int:
    """Bytes of each of a pass's :data:`BUFFERS` read buffers for a rank that may use
    ``budget`` bytes in all, ``fixed`` of them taken already (the process as it is, the
    optimiser's vectors, :data:`ROW_STATE_BYTES` a row) and :data:`KERNEL_WORK_BYTES`
    kept for the kernels: what is left, shared by the buffers and three blocks more for
    dense rows (the NumPy kernels' float64 copy of a block and its temporaries), six
    more for CSR (whose NumPy kernels copy a block's values and indices twice), at most
    :data:`MAX_BLOCK_BYTES`. Raises :class:`~mpigd.errors.MpigdError` when that is not
    one row (the widest, for CSR) or 64 KiB. Collective: no."""
    left = budget - fixed - KERNEL_WORK_BYTES
    shares = BUFFERS + (6 if info.csr else 3)
    size = int(min(left // shares, MAX_BLOCK_BYTES))
    itemsize = sparse.memory_dtype(info.x_dtype).itemsize
    row = (itemsize + 8) * info.n_features if info.csr else itemsize * info.n_features
    least = max(row, 1 << 16)
    if size >= least:
        return size
    raise _too_little(info, budget, budget - left + shares * least)


def _too_little(info: DatasetInfo, budget: float, need: float) -> MpigdError:
    return MpigdError(
        f"a memory budget of {human_bytes(budget)} a rank is too little to stream "
        f"{info.path}: a rank needs about {human_bytes(need)} (the process, the optimiser, "
        f"{ROW_STATE_BYTES} bytes a row and {BUFFERS} blocks of at least one row); give more "
        "(--memory) or use more ranks"
    )


def settle_libraries(csr: bool) -> None:
    """Load what a pass will use before the process is measured for a budget: the CSR
    kernels' scipy.sparse, scipy.linalg for the normal equations and Newton's systems,
    and BLAS's work buffers (touched by one 512 x 512 product), which a pass would
    otherwise add to the process after it was measured. Collective: no."""
    import scipy.linalg

    if csr:
        import scipy.sparse  # noqa: F401
    square = np.ones((512, 512))
    square @ square
