"""Line-aligned byte ranges (mpigd.io.ranges), every rank simulated in one process: the
ranks' lines, in rank order, are the inputs' lines, each exactly once, for any number of
ranks, whatever the cuts hit (a line split across ranges, CRLF, no final newline, blank
lines, one line longer than a range, more ranks than lines, compressed parts)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from mpigd.errors import MpigdError
from mpigd.io.ranges import expand_inputs, line_bounds, piece_blocks, rank_pieces


def rank_lines(paths, ranks: int, block_bytes: int) -> list[list[bytes]]:
    """Each rank's blocks joined, split into (path, line) pairs, in order."""
    sizes = [len(open(p, "rb").read()) for p in paths]
    out = []
    for rank in range(ranks):
        lines = []
        for piece in rank_pieces(paths, sizes, rank, ranks):
            bounds = line_bounds(piece, sizes[piece.file])
            text = b"".join(piece_blocks(piece, bounds, block_bytes))
            blocks = [bytes(block) for block in piece_blocks(piece, bounds, block_bytes)]
            assert all(block.endswith(b"\n") for block in blocks[:-1])  # whole lines
            lines += [(piece.path, line) for line in text.splitlines(keepends=True)]
        out.append(lines)
    return out


def texts(seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    pieces = []
    for _ in range(3):
        lines = []
        for _ in range(int(rng.integers(0, 40))):
            kind = rng.integers(0, 6)
            body = b"x" * int(rng.integers(0, 300 if kind == 0 else 12))
            lines.append(body + (b"\r\n" if kind == 1 else b"\n"))
        text = b"".join(lines)
        if text and rng.random() < 0.5:
            text = text[:-1]  # no final newline
        pieces.append(text)
    return pieces


@pytest.mark.parametrize("seed", range(12))
def test_every_line_is_read_once_in_order_for_any_rank_count(tmp_path, seed):
    paths = []
    for i, text in enumerate(texts(seed)):
        path = tmp_path / f"part-{i:05d}{'.gz' if i == 1 and seed % 2 else ''}"
        path.write_bytes(gzip.compress(text) if path.suffix == ".gz" else text)
        paths.append(str(path))
    expected = [
        (p, line) for p, t in zip(paths, texts(seed), strict=True) for line in t.splitlines(True)
    ]
    for ranks in (1, 2, 3, 7, 64):
        for block_bytes in (5, 64, 2**20):
            got = rank_lines(paths, ranks, block_bytes)
            assert [line for lines in got for line in lines] == expected, (ranks, block_bytes)


def test_a_compressed_file_goes_whole_to_one_rank(tmp_path):
    for i in range(4):
        (tmp_path / f"p{i}.gz").write_bytes(gzip.compress(b"a\n" * 100))
    paths = expand_inputs([str(tmp_path / "p*.gz")])
    sizes = [len(open(p, "rb").read()) for p in paths]
    owners = [[p.path for p in rank_pieces(paths, sizes, r, 2)] for r in range(2)]
    assert owners == [paths[:2], paths[2:]]


def test_a_line_longer_than_the_ranges_belongs_to_the_rank_where_it_starts(tmp_path):
    path = tmp_path / "long.txt"
    path.write_bytes(b"a\n" + b"y" * 1000 + b"\nb\n")
    got = rank_lines([str(path)], 5, 64)
    assert [len(lines) for lines in got] == [2, 0, 0, 0, 1]


def test_globs_expand_in_sorted_order_and_bad_inputs_are_named(tmp_path):
    for name in ("part-00001", "part-00000", "part-00010"):
        (tmp_path / name).write_text("1 1:1\n")
    got = expand_inputs([str(tmp_path / "part-*")])
    assert [p.rsplit("/", 1)[1] for p in got] == ["part-00000", "part-00001", "part-00010"]
    with pytest.raises(MpigdError, match="no input file matches"):
        expand_inputs([str(tmp_path / "nothing-*")])
    with pytest.raises(MpigdError, match="input file not found"):
        expand_inputs([str(tmp_path / "absent.svm")])
    with pytest.raises(MpigdError, match="is a folder"):
        expand_inputs([str(tmp_path)])
    with pytest.raises(MpigdError, match="given twice"):
        expand_inputs([str(tmp_path / "part-00000"), str(tmp_path / "part-0000[0]")])


def test_a_block_kept_is_never_read_into_again_and_dropped_ones_are_reused(tmp_path):
    text = b"".join(b"%d %s\n" % (i, b"y" * (i % 50)) for i in range(20_000))
    path = tmp_path / "a.txt"
    path.write_bytes(text)
    piece = rank_pieces([str(path)], [len(text)], 0, 1)[0]
    bounds = line_bounds(piece, len(text))
    kept = list(piece_blocks(piece, bounds, 4096))  # every view alive at once
    assert len(kept) > 100 and b"".join(kept) == text
    assert len({id(block.obj) for block in kept}) == len(kept)
    buffers, joined = [], []  # the buffers themselves (not views): ids are not reused
    for block in piece_blocks(piece, bounds, 4096):  # each dropped for the next
        if not any(block.obj is buffer for buffer in buffers):
            buffers.append(block.obj)
        joined.append(bytes(block))
    assert b"".join(joined) == text and len(buffers) <= 3
