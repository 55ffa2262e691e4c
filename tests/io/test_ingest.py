"""The output side of text conversion (mpigd.io.ingest): datasets allocated in full and
written by byte offset, synced to the disk in the background while rows keep coming, a
failed background sync reported, never lost; a failed write or sync is one error naming
the output."""

from __future__ import annotations

import errno
import os
import threading

import h5py
import numpy as np
import pytest

from mpigd.errors import MpigdError
from mpigd.io import ingest


def written(path, monkeypatch, parts, sync=ingest.datasync):
    """Write ``parts`` (first row, rows) into ``X`` of a new file at ``path``, a
    background sync started after every write; the calls of ``sync``."""
    calls = []

    def spy(fd):
        calls.append(fd)
        return sync(fd)

    monkeypatch.setattr(ingest, "SYNC_BYTES", 1)
    monkeypatch.setattr(ingest, "datasync", spy)
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
    def failing_in_the_background(fd):  # the last sync, on the way out, succeeds
        if threading.current_thread() is not threading.main_thread():
            raise OSError(errno.EIO, "write-back failed")
        return os.fsync(fd)

    with pytest.raises(MpigdError, match=r"cannot write .*out\.h5: .*write-back failed"):
        written(tmp_path / "out.h5", monkeypatch, [(0, np.ones((2, 3)))], failing_in_the_background)


def test_a_full_disk_while_writing_names_the_output_not_its_temporary_name(tmp_path, monkeypatch):
    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    extents = ingest.create_datasets(str(tmp_path / ".out.h5.tmp"), {"X": ((4, 3), "f8")}, {})
    with ingest.Datasets(str(tmp_path / ".out.h5.tmp"), extents, "out.h5") as out:
        monkeypatch.setattr(ingest.os, "pwrite", full)
        with pytest.raises(MpigdError) as raised:
            out.put("X", 0, np.ones((2, 3)))
    assert str(raised.value) == "cannot write out.h5: no space left on its device"


def test_an_error_while_writing_is_not_replaced_by_a_failed_sync(tmp_path, monkeypatch):
    def failing(fd):
        raise OSError(errno.EIO, "write-back failed")

    monkeypatch.setattr(ingest, "datasync", failing)
    extents = ingest.create_datasets(str(tmp_path / "out.h5"), {"X": ((4, 3), "float64")}, {})
    with pytest.raises(MpigdError, match="more rows than counted"):
        with ingest.Datasets(str(tmp_path / "out.h5"), extents) as out:
            monkeypatch.setattr(ingest, "SYNC_BYTES", 1)
            out.put("X", 0, np.ones((2, 3)))  # a background sync starts, and fails
            out.put("X", 3, np.ones((2, 3)))  # beyond the counted rows
