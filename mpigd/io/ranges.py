"""Text inputs as one stream of lines, split into line-aligned byte ranges, one per rank.

The inputs (several files or globs, in the order given) are laid end to end and cut into
P equal byte ranges; a line belongs to the range that holds its first byte, so that no
line is lost or read twice at a boundary, and rank r's lines come before rank r + 1's.
A rank finds where its lines start and end on its own, by looking for the first newline
at or after each cut: no communication, and no rank reads more of another's range than
the rest of a line. A compressed file (``.gz``, ``.bz2``, ``.xz``) cannot be entered in
the middle: it goes whole to the rank whose range holds its first byte, which balances
whole files by size.

A range is read in blocks of whole lines of about :data:`BLOCK_BYTES` (a longer line is
one block), so memory holds a few blocks whatever the input's size.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import lzma
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..errors import MpigdError
from .parse import count_newlines

#: Readers of compressed inputs, by suffix.
COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
#: Bytes of text in one block of lines.
BLOCK_BYTES = 8 * 2**20
#: Bytes read at a time while looking for a newline.
_PROBE = 64 * 2**10


def is_compressed(path: str) -> bool:
    """Whether ``path`` is read through a decompressor (by its suffix). Collective: no."""
    return os.path.splitext(path)[1].lower() in COMPRESSED


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """The input files: each pattern is a file, or a glob whose matches come in sorted
    order (``part-00000``, ``part-00001``, ...); an :class:`MpigdError` for a pattern
    that names nothing, a folder, or a file given twice. Collective: no."""
    paths: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise MpigdError(f"no input file matches {pattern!r}")
        for path in matches:
            if os.path.isdir(path):
                raise MpigdError(f"input is a folder, not a file: {path}")
            if not os.path.isfile(path):
                raise MpigdError(f"input file not found: {path}")
        paths += matches
    seen = set()
    for path in paths:
        key = os.path.realpath(path)
        if key in seen:
            raise MpigdError(f"input {path} is given twice")
        seen.add(key)
    return paths


@dataclass(frozen=True)
class Piece:
    """Part of one input that a rank reads: the lines that start in ``[start, stop)``
    (the whole file when compressed)."""

    file: int  # index into the inputs
    path: str
    start: int
    stop: int
    compressed: bool


def rank_pieces(paths: Sequence[str], sizes: Sequence[int], rank: int, size: int) -> list[Piece]:
    """Rank ``rank``'s pieces of the inputs, of ``sizes`` bytes each, out of ``size``
    ranks: its equal share of the bytes laid end to end. Collective: no."""
    total = sum(sizes)
    low, high = total * rank // size, total * (rank + 1) // size
    pieces, offset = [], 0
    for file, (path, n_bytes) in enumerate(zip(paths, sizes, strict=True)):
        begin, end = offset, offset + n_bytes
        offset = end
        if n_bytes == 0:
            continue
        if is_compressed(path):
            if low <= begin < high:
                pieces.append(Piece(file, path, 0, n_bytes, True))
        elif begin < high and low < end:
            pieces.append(Piece(file, path, max(low, begin) - begin, min(high, end) - begin, False))
    return pieces


def line_start(f, cut: int, n_bytes: int) -> int:
    """The first line start at or after byte ``cut`` of an open binary file of
    ``n_bytes``: ``cut`` itself when a line starts there, else the byte after the next
    newline (``n_bytes`` when none follows). Collective: no."""
    if cut <= 0:
        return 0
    position = cut - 1  # a line starts at cut exactly when the byte before is a newline
    f.seek(position)
    while position < n_bytes:
        probe = f.read(_PROBE)
        if not probe:
            break
        found = probe.find(b"\n")
        if found >= 0:
            return position + found + 1
        position += len(probe)
    return n_bytes


def line_bounds(piece: Piece, n_bytes: int) -> tuple[int, int]:
    """The byte range of ``piece``'s whole lines in its file of ``n_bytes``: from the
    first line start at or after its start to the first at or after its stop.
    Collective: no."""
    if piece.compressed:
        return 0, n_bytes
    with open(piece.path, "rb") as f:
        return line_start(f, piece.start, n_bytes), line_start(f, piece.stop, n_bytes)


class _Buffers:
    """Read buffers, each used again once no view of it is alive, so that a block is read
    into memory already mapped rather than into fresh pages to fault in and zero. A
    bytearray cannot be resized while a view of it exists: that is how a buffer still in
    use (by this reader's caller, or by whatever it kept) is told apart, and it is never
    overwritten."""

    SLACK = 2**16  # room for the carried-over part of a line, in a buffer of a block
    KEEP = 3  # buffers kept for use again

    def __init__(self, block_bytes: int):
        self.size, self.pool = block_bytes + self.SLACK, []

    def get(self, n_bytes: int) -> bytearray:
        """A buffer of at least ``n_bytes`` that nothing else views."""
        for buffer in self.pool:
            if len(buffer) >= n_bytes and _unviewed(buffer):
                return buffer
        buffer = bytearray(max(n_bytes, self.size))
        if len(self.pool) < self.KEEP and len(buffer) == self.size:
            self.pool.append(buffer)
        return buffer


def _unviewed(buffer: bytearray) -> bool:
    """Whether no view of ``buffer`` exists: it can be shrunk by a byte and grown back."""
    try:
        del buffer[-1]
    except BufferError:
        return False
    buffer.append(0)
    return True


def _blocks_of(f, limit: int | None, block_bytes: int) -> Iterator[memoryview]:
    """Blocks of whole lines from ``f``'s position: ``limit`` bytes (None: to the end),
    cut after the last newline of each read; a line longer than a block is read whole.
    Each block is a view of a buffer that is not read into again while any view of it is
    alive; read into without a copy."""
    carry, remaining, buffers = b"", limit, _Buffers(block_bytes)
    while True:
        want = block_bytes if remaining is None else min(block_bytes, remaining)
        buffer = buffers.get(len(carry) + want)
        view = memoryview(buffer)
        view[: len(carry)] = carry
        got = f.readinto(view[len(carry) : len(carry) + want]) if want > 0 else 0
        got = got or 0
        if remaining is not None:
            remaining -= got
        data = view[: len(carry) + got]
        del view  # this reader keeps no view of its own: only its caller's keep a buffer busy
        if not got:
            if carry:
                yield data
            return
        cut = buffer.rfind(b"\n", 0, len(data)) + 1
        if cut == 0:
            carry = bytes(data)  # no newline yet: one line longer than a block
            continue
        carry = bytes(data[cut:])
        block, data = data[:cut], None
        yield block
        del block


def piece_blocks(piece: Piece, bounds: tuple[int, int], block_bytes: int = BLOCK_BYTES):
    """Blocks of whole lines of ``piece`` (``bounds`` from :func:`line_bounds`); the
    last line may lack its newline at the end of a file. Collective: no."""
    start, stop = bounds
    if piece.compressed:
        opener = COMPRESSED[os.path.splitext(piece.path)[1].lower()]
        with opener(piece.path, "rb") as f:
            yield from _blocks_of(f, None, block_bytes)
        return
    if stop <= start:
        return
    with open(piece.path, "rb") as f:
        f.seek(start)
        yield from _blocks_of(f, stop - start, block_bytes)


def count_lines(piece: Piece, bounds: tuple[int, int]) -> int:
    """Newlines in ``piece``'s lines: the line number of its first line, less one, for
    the piece after it in the same file. Collective: no."""
    return sum(count_newlines(block) for block in piece_blocks(piece, bounds))
