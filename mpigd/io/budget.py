"""How a rank's memory budget is spent when its rows are streamed from disk
(:mod:`mpigd.io.stream`): what it keeps a row, what the process and the kernels take,
and the size of the two blocks a pass reads with what is left. Pure, no MPI."""

from __future__ import annotations

import os

import numpy as np

from ..errors import MpigdError
from ..host import parse_bytes
from ..partition import BLOCK_BYTES, OPTIMIZER_VECTORS
from . import sparse
from .dataset import DatasetInfo
from .outputs import human_bytes

#: The largest block a pass reads at a time (each of the two buffers): a long sequential
#: request, and small enough that the block the kernel sums and the one being read stay
#: in the last-level cache, so X crosses memory once more than in memory, not twice.
#: Measured (benchmarks/stream.py, 1M x 256 float64, one rank): 4-8 MiB blocks overlap
#: reading and summing fully (streamed 0.97-1.15x the larger of the two); 16-64 MiB 1.2-1.5x.
MAX_BLOCK_BYTES = 8 << 20


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
    """Bytes of each of a pass's two read buffers for a rank that may use ``budget``
    bytes in all, ``fixed`` of them taken already (the process as it is, the optimiser's
    vectors, :data:`ROW_STATE_BYTES` a row) and :data:`KERNEL_WORK_BYTES` kept for the
    kernels: a fifth of what is left for dense rows
    (the two buffers, and the NumPy kernels' float64 copy of a block and its
    temporaries), an eighth for CSR (whose NumPy kernels copy a block's values and
    indices twice), at most :data:`MAX_BLOCK_BYTES`. Raises
    :class:`~mpigd.errors.MpigdError` when that is not one row (the widest, for CSR) or
    64 KiB. Collective: no."""
    left = budget - fixed - KERNEL_WORK_BYTES
    size = int(min(left // (8 if info.csr else 5), MAX_BLOCK_BYTES))
    itemsize = sparse.memory_dtype(info.x_dtype).itemsize
    row = (itemsize + 8) * info.n_features if info.csr else itemsize * info.n_features
    least = max(row, 1 << 16)
    if size >= least:
        return size
    raise _too_little(info, budget, budget - left + (8 if info.csr else 5) * least)


def _too_little(info: DatasetInfo, budget: float, need: float) -> MpigdError:
    return MpigdError(
        f"a memory budget of {human_bytes(budget)} a rank is too little to stream "
        f"{info.path}: a rank needs about {human_bytes(need)} (the process, the optimiser, "
        f"{ROW_STATE_BYTES} bytes a row and two blocks of at least one row); give more "
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
