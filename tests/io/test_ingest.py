"""The output side of text conversion (mpigd.io.ingest): datasets allocated in full and
written by byte offset, synced to the disk in the background while rows keep coming, a
failed background sync reported, never lost."""

from __future__ import annotations

import errno
import os

import h5py
import numpy as np
import pytest

from mpigd.io import ingest


def written(path, monkeypatch, parts, sync=os.fdatasync):
    """Write ``parts`` (first row, rows) into ``X`` of a new file at ``path``, a
    background sync started after every write; the calls of ``sync``."""
    calls = []

    def spy(fd):
        calls.append(fd)
        return sync(fd)

    monkeypatch.setattr(ingest, "SYNC_BYTES", 1)
    monkeypatch.setattr(ingest.os, "fdatasync", spy)
    extents = ingest.create_datasets(str(path), {"X": ((10, 3), "float64")}, {})
    with ingest.Datasets(str(path), extents) as out:
        for first, rows in parts:
            out.put("X", first, rows)
            out.syncing.thread.join()  # each write its own sync
    return calls


def test_rows_written_in_any_order_with_background_syncs_read_back(tmp_path, monkeypatch):
    X = np.arange(30.0).reshape(10, 3)
    parts = [(6, X[6:]), (0, X[:2]), (2, X[2:6])]
    calls = written(tmp_path / "out.h5", monkeypatch, parts)
    assert len(calls) == len(parts) + 1  # one a write, in the background, and the last
    with h5py.File(tmp_path / "out.h5") as f:
        assert np.array_equal(f["X"][:], X)


def test_a_failed_background_sync_is_raised_when_the_datasets_close(tmp_path, monkeypatch):
    def failing(fd):
        raise OSError(errno.EIO, "write-back failed")

    with pytest.raises(OSError, match="write-back failed"):
        written(tmp_path / "out.h5", monkeypatch, [(0, np.ones((2, 3)))], sync=failing)
