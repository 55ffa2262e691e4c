"""mpigd data split (a seeded shuffle in bounded memory) and data info (in parallel)."""

import json
import math

import h5py
import numpy as np
import pytest
from conftest import run_mpi, write_h5

from mpigd.cli import main
from mpigd.errors import MpigdError
from mpigd.io import split as split_module
from mpigd.io.split import split


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(2)
    m = 1009
    X = np.column_stack([np.arange(m), rng.standard_normal((m, 3))])  # column 0: row id
    return write_h5(tmp_path / "d.h5", X, 2.0 * np.arange(m), weights=np.arange(m) + 0.5)


def rows_of(path):
    with h5py.File(path) as f:
        return f["X"][:], f["y"][:], f["weights"][:]


@pytest.mark.parametrize(
    "bucket_bytes", [2**30, pytest.param(4096, marks=pytest.mark.slow)]
)  # one bucket; about 10 buckets
def test_split_is_a_seeded_permutation(data, tmp_path, monkeypatch, bucket_bytes):
    monkeypatch.setattr(split_module, "BUCKET_BYTES", bucket_bytes)
    monkeypatch.setattr(split_module, "BLOCK_BYTES", 1000)
    n_train, n_test = split(data, tmp_path / "a.h5", tmp_path / "b.h5", test_fraction=0.3, seed=4)
    assert (n_train, n_test) == (1009 - math.ceil(0.3 * 1009), math.ceil(0.3 * 1009))
    X_train, y_train, w_train = rows_of(tmp_path / "a.h5")
    X_test, y_test, w_test = rows_of(tmp_path / "b.h5")
    assert len(X_test) == n_test and len(X_train) == n_train
    ids = np.concatenate([X_train[:, 0], X_test[:, 0]])
    np.testing.assert_array_equal(np.sort(ids), np.arange(1009))  # every row exactly once
    assert not np.array_equal(ids, np.arange(1009))  # shuffled
    # every dataset with one entry per row moved alike
    np.testing.assert_array_equal(y_train, 2 * X_train[:, 0])
    np.testing.assert_array_equal(y_test, 2 * X_test[:, 0])
    np.testing.assert_array_equal(w_train, X_train[:, 0] + 0.5)
    np.testing.assert_array_equal(w_test, X_test[:, 0] + 0.5)
    # same seed, same files; another seed, another order
    split(data, tmp_path / "c.h5", tmp_path / "d2.h5", test_fraction=0.3, seed=4)
    np.testing.assert_array_equal(rows_of(tmp_path / "c.h5")[0], X_train)
    split(data, tmp_path / "e.h5", tmp_path / "f.h5", test_fraction=0.3, seed=5)
    assert not np.array_equal(rows_of(tmp_path / "e.h5")[0], X_train)


@pytest.mark.slow
def test_bucket_shuffle_is_uniform(tmp_path, monkeypatch):
    """Over many seeds, with 3 buckets, each row lands in the test set a quarter of the
    time and at every test position about equally often."""
    monkeypatch.setattr(split_module, "BUCKET_BYTES", 8 * 8)  # 8 rows of one float64
    monkeypatch.setattr(split_module, "BLOCK_BYTES", 5 * 8)
    path = write_h5(tmp_path / "d.h5", np.arange(20.0)[:, None], np.zeros(20))
    seen = np.zeros((20, 5))
    for seed in range(400):
        split(path, tmp_path / "a.h5", tmp_path / "b.h5", test_fraction=0.25, seed=seed)
        with h5py.File(tmp_path / "b.h5") as f:
            seen[f["X"][:, 0].astype(int), np.arange(5)] += 1
    expected = 400 / 20  # per (row, test position)
    assert seen.sum() == 400 * 5
    assert np.abs(seen.sum(axis=1) / 400 - 0.25).max() < 0.12
    assert np.abs(seen - expected).max() < 5 * np.sqrt(expected)


def test_split_refuses_an_empty_side(data, tmp_path):
    with pytest.raises(MpigdError, match="leaves an empty training set"):
        split(data, tmp_path / "a.h5", tmp_path / "b.h5", test_fraction=0.9999)
    with pytest.raises(MpigdError, match="between 0 and 1"):
        split(data, tmp_path / "a.h5", tmp_path / "b.h5", test_fraction=1.5)
    assert not (tmp_path / "a.h5").exists() and not (tmp_path / "b.h5").exists()


def test_split_cli_default_names(data, tmp_path, capsys):
    assert main(["data", "split", str(data), "--test-fraction", "0.1", "--quiet"]) == 0
    assert (tmp_path / "d-train.h5").exists() and (tmp_path / "d-test.h5").exists()


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_info_statistics_equal_numpy(tmp_path, ranks):
    rng = np.random.default_rng(8)
    X = rng.standard_normal((1009, 5)) * [1, 10, 100, 1000, 1e-3]
    X[17, 2] = np.nan
    y = rng.integers(0, 3, 1009).astype(float)
    data = write_h5(tmp_path / "d.h5", X, y)
    done = run_mpi(ranks, "-m", "mpigd", "data", "info", data, "--json", tmp_path / "i.json")
    assert done.returncode == 0, done.stderr
    assert "NaN/inf" in done.stdout
    info = json.loads((tmp_path / "i.json").read_text())
    stats = info["feature_stats"]
    np.testing.assert_allclose(stats["min"], np.nanmin(X, axis=0), rtol=0)
    np.testing.assert_allclose(stats["max"], np.nanmax(X, axis=0), rtol=0)
    np.testing.assert_allclose(stats["mean"], np.nansum(X, axis=0) / 1009, rtol=1e-12)
    assert stats["non_finite"] == [0, 0, 1, 0, 0]
    assert info["classes"] == {str(k): int((y == k).sum()) for k in range(3)}
    assert info["rows"] == 1009 and info["datasets"]["X"]["dtype"] == "float64"
