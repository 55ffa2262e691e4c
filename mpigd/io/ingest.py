"""Text inputs (LIBSVM/svmlight, CSV/TSV) read on every rank, and the output they are
converted to written by every rank.

Each rank reads the lines that start in its byte range of the inputs
(:mod:`~mpigd.io.ranges`):

1. **Lines**: it numbers its lines from the start of each of its pieces while it parses
   them, and counts each file's newlines; an exclusive scan of those counts then numbers
   them in their files (:meth:`RankText.renumber`), so that an error names the file and
   line whichever rank read it.
2. **Output**: rank 0 creates the output under a temporary name, every chunk of every
   dataset allocated now and never filled, and closes it (:func:`create_datasets`); each
   rank then writes its rows' bytes at their offsets (:class:`Datasets`, ``pwrite``), in
   parallel and without HDF5 holding the file open, and syncs them, the bytes written
   so far going to the disk in the background while it parses the rest. Rank 0 renames
   the file into place once every rank is done (:func:`shared_output`).

The output's bytes do not depend on the number of ranks. What a format counts and
decides is in :mod:`~mpigd.io.text_formats`, the steps in order in
:mod:`~mpigd.io.text_convert`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import MpigdError
from ..parallel import (
    on_root,
    rank_local,
)
from ..partition import CHUNK_BYTES, rows_per_block
from .outputs import check_outputs, commit, temporary_beside, write_errors
from .ranges import (
    Piece,
    count_newlines,
    expand_inputs,
    line_bounds,
    piece_blocks,
    rank_pieces,
)


@dataclass(frozen=True)
class Inputs:
    """The input files, in order, with their sizes and modification times."""

    paths: list[str]
    stamps: list[tuple[int, int]]  # (bytes, mtime_ns)

    @property
    def sizes(self) -> list[int]:
        return [n_bytes for n_bytes, _ in self.stamps]

    def check_unchanged(self) -> None:
        """An :class:`MpigdError` naming an input that changed since it was listed (a
        file still being written). Collective: no."""
        for path, stamp in zip(self.paths, self.stamps, strict=True):
            info = os.stat(path)
            if (info.st_size, info.st_mtime_ns) != stamp:
                raise MpigdError(f"{path} changed while it was read: run again once it is complete")


def list_inputs(patterns, output) -> Inputs:
    """The inputs named by ``patterns`` (files or globs), checked against ``output``.
    Collective: no."""
    paths = expand_inputs(patterns)
    named = {"the input": paths[0]} if len(paths) == 1 else {f"input {p}": p for p in paths}
    if output is not None:
        check_outputs({"the output": output}, named)
    stamps = [(info.st_size, info.st_mtime_ns) for info in map(os.stat, paths)]
    if sum(n_bytes for n_bytes, _ in stamps) == 0:
        raise MpigdError(f"{paths[0]} holds no data" if len(paths) == 1 else "no input holds data")
    return Inputs(paths, stamps)


@dataclass
class RankText:
    """This rank's pieces of the inputs: their byte ranges of whole lines, and the line
    number each starts at (1 until :meth:`renumber` knows the lines before)."""

    pieces: list[Piece]
    bounds: list[tuple[int, int]]
    first_lines: list[int]

    def blocks(self) -> Iterator[tuple[Piece, memoryview, int, int]]:
        """``(piece, block of whole lines, its first line's number, its newlines)``, in
        input order. Collective: no."""
        for piece, bounds, first in zip(self.pieces, self.bounds, self.first_lines, strict=True):
            for block in piece_blocks(piece, bounds):
                newlines = count_newlines(block)
                yield piece, block, first, newlines
                first += newlines

    def renumber(self, before: np.ndarray) -> None:
        """Number the pieces' lines in their files, ``before[f]`` lines of file f being
        other ranks' before this one's. Collective: no."""
        self.first_lines = [1 + int(before[p.file]) for p in self.pieces]


def rank_text(comm, inputs: Inputs) -> RankText:
    """This rank's pieces, their lines numbered from 1 until :meth:`RankText.renumber`.
    Collective: yes."""
    with rank_local(comm):
        pieces = rank_pieces(inputs.paths, inputs.sizes, comm.rank, comm.size)
        bounds = [line_bounds(p, inputs.sizes[p.file]) for p in pieces]
    return RankText(pieces, bounds, [1] * len(pieces))


@contextmanager
def shared_output(comm, output) -> Iterator[str]:
    """A temporary file beside ``output`` (made by rank 0, named on every rank) that
    replaces ``output`` when the block ends on every rank without error, and is removed
    otherwise; a failure to make, sync or rename it names ``output``. Collective: yes."""

    def make() -> str:
        with write_errors(output):
            return temporary_beside(output)

    def put_in_place() -> None:
        with write_errors(output):
            commit(tmp, output)

    tmp = on_root(comm, make, share=True)
    try:
        yield tmp
        on_root(comm, put_in_place)
    except BaseException:
        if comm.rank == 0:
            Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Extent:
    """Where a dataset's rows lie in its file: chunks of ``chunk_rows`` whole rows (one
    chunk when contiguous), chunk k at byte ``offsets[k]``."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunk_rows: int
    offsets: tuple[int, ...]

    @property
    def row_bytes(self) -> int:
        return self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))

    def spans(self, first: int, n_rows: int) -> Iterator[tuple[int, int, int]]:
        """``(byte offset, first row, rows)`` of each chunk's part of rows
        ``first:first + n_rows``."""
        row = first
        while row < first + n_rows:
            chunk, within = divmod(row, self.chunk_rows)
            rows = min(self.chunk_rows - within, first + n_rows - row)
            yield self.offsets[chunk] + within * self.row_bytes, row - first, rows
            row += rows


#: Bytes written between two background syncs of an output (:class:`Datasets`).
SYNC_BYTES = 32 * 2**20
#: A file's data to the disk (fdatasync; fsync where the system has no fdatasync).
datasync = getattr(os, "fdatasync", os.fsync)


class _BackgroundSync:
    """A data sync (``fdatasync``; ``fsync`` where there is none) of one open file in a
    thread of its own, one at a time: the pages written so far go to the disk while the
    caller goes on. The error of a sync is kept for :meth:`finish`, since the kernel
    reports a failed write-back to one sync only."""

    def __init__(self, fd: int):
        self.fd, self.thread, self.error = fd, None, None

    def start(self) -> bool:
        """Start a sync unless one is still running; whether one started."""
        if self.thread is not None and self.thread.is_alive():
            return False
        self.thread = threading.Thread(target=self._sync, name="mpigd-sync", daemon=True)
        self.thread.start()
        return True

    def _sync(self) -> None:
        try:
            datasync(self.fd)
        except BaseException as error:  # kept, and raised by finish
            self.error = error

    def join(self) -> None:
        """Wait for the running sync, if any."""
        if self.thread is not None:
            self.thread.join()

    def finish(self) -> None:
        """Wait for the running sync; raise the error of any that failed."""
        self.join()
        if self.error is not None:
            raise self.error


class Datasets:
    """Datasets of a closed HDF5 file, allocated in full, written by byte offset
    (``pwrite``): any rank, any rows, in parallel; synced to the disk in the background
    every :data:`SYNC_BYTES` and in full on leaving. A failed write or sync (a full
    disk, EIO) is an :class:`MpigdError` naming ``name``, the file the user asked
    for (``path`` is its temporary name). Collective: no."""

    def __init__(self, path: str, extents: dict[str, Extent], name=None):
        self.path, self.extents, self.name = path, extents, path if name is None else name
        self.fd, self.unsynced, self.syncing = -1, 0, None

    def __enter__(self) -> Datasets:
        with write_errors(self.name):
            self.fd = os.open(self.path, os.O_WRONLY)
        self.syncing = _BackgroundSync(self.fd)
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:  # an error on the way out keeps its own exception
                with write_errors(self.name):
                    self.syncing.finish()
                    datasync(self.fd)  # the data; the size and metadata: rank 0's commit
        finally:
            self.syncing.join()  # no sync of a closed (or reused) descriptor
            os.close(self.fd)

    def put(self, name: str, first: int, rows: np.ndarray) -> None:
        """Rows ``first:first + len(rows)`` of dataset ``name``."""
        extent = self.extents[name]
        rows = np.ascontiguousarray(rows, dtype=extent.dtype)
        if rows.size == 0:
            return
        if first < 0 or first + len(rows) > extent.shape[0] or rows.shape[1:] != extent.shape[1:]:
            raise MpigdError("the input changed while converting: more rows than counted")
        with write_errors(self.name):
            for at, start, count in extent.spans(first, len(rows)):
                view = memoryview(rows[start : start + count]).cast("B")
                while view:
                    done = os.pwrite(self.fd, view, at)
                    view, at = view[done:], at + done
        self.unsynced += rows.nbytes
        if self.unsynced >= SYNC_BYTES and self.syncing.start():
            self.unsynced = 0


def create_datasets(path: str, shapes: dict, attrs: dict) -> dict[str, Extent]:
    """Create ``path`` with a dataset for each ``name: (shape, dtype)`` of ``shapes`` (a
    ``group/name`` makes the group), chunked in blocks of whole rows of about
    ``CHUNK_BYTES`` as every output of mpigd, every chunk allocated now and never
    filled; set ``attrs`` (``""`` for the file's, else a group's or dataset's); close it
    and return each dataset's :class:`Extent`. The bytes do not depend on who writes
    the values later. Collective: no."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    extents = {}
    with h5py.File(path, "w") as f:
        for name, (shape, dtype) in shapes.items():
            dtype = np.dtype(dtype)
            row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
            rows = rows_per_block(row_bytes, CHUNK_BYTES, shape[0])
            chunks = (rows, *shape[1:]) if shape[0] > 0 else None
            ds = f.create_dataset(
                name, shape, dtype=dtype, chunks=chunks, dcpl=dcpl, track_times=False
            )
            extents[name] = Extent(tuple(shape), dtype, max(rows, 1), _chunk_offsets(ds, rows))
        for name, values in attrs.items():
            (f if name == "" else f[name]).attrs.update(values)
    return extents


def _chunk_offsets(ds: h5py.Dataset, rows: int) -> tuple[int, ...]:
    """The byte offset of each chunk of ``ds``, in row order."""
    if ds.chunks is None:
        return (ds.id.get_offset() or 0,)
    offsets = [0] * ds.id.get_num_chunks()
    for i in range(len(offsets)):
        info = ds.id.get_chunk_info(i)
        offsets[info.chunk_offset[0] // rows] = info.byte_offset
    return tuple(offsets)
