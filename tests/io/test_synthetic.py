import h5py
import numpy as np
import pytest

from mpigd.errors import MpigdError
from mpigd.io.synthetic import GENERATION_ROWS, make_dataset


def read(path):
    with h5py.File(path) as f:
        return f["X"][()], f["y"][()], dict(f.attrs)


def test_same_seed_same_file_any_dtype(tmp_path):
    make_dataset(tmp_path / "a.h5", 500, 4, seed=3)
    make_dataset(tmp_path / "b.h5", 500, 4, seed=3)
    make_dataset(tmp_path / "c.h5", 500, 4, seed=3, dtype="float32")
    make_dataset(tmp_path / "d.h5", 500, 4, seed=4)
    (Xa, ya, _), (Xb, yb, _), (Xc, yc, _), (Xd, _, _) = (
        read(tmp_path / f"{name}.h5") for name in "abcd"
    )
    np.testing.assert_array_equal(Xa, Xb)
    np.testing.assert_array_equal(ya, yb)
    assert Xc.dtype == np.float32
    np.testing.assert_array_equal(Xc, Xa.astype(np.float32))
    np.testing.assert_array_equal(yc, ya)
    assert not np.array_equal(Xa, Xd)
    assert set(np.unique(ya)) <= {0.0, 1.0}


def test_linear_data_follows_the_stored_true_model_across_blocks(tmp_path):
    rows = GENERATION_ROWS + 1000  # spans two generation blocks
    make_dataset(tmp_path / "l.h5", rows, 3, kind="linear", noise=0.01, seed=1)
    X, y, attrs = read(tmp_path / "l.h5")
    residual = y - X @ attrs["coef_true"] - attrs["intercept_true"]
    assert residual.std() == pytest.approx(0.01, rel=0.05)
    assert not np.array_equal(X[:1000], X[GENERATION_ROWS:])  # blocks use distinct streams


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        make_dataset(tmp_path / "x.h5", 0, 3)
    with pytest.raises(ValueError):
        make_dataset(tmp_path / "x.h5", 10, 3, kind="gamma")


def test_sparse_synthetic_data_has_skewed_columns_and_trains(tmp_path):
    import subprocess
    import sys

    from mpigd.io.dataset import inspect_dataset, read_block

    out = tmp_path / "s.h5"
    make_dataset(out, 20_000, 2000, kind="logistic", seed=3, density=0.005, dtype="float32")
    info = inspect_dataset(out)
    X, y = read_block(info, 0, 1).X, read_block(info, 0, 1).y
    per_row = X.getnnz(axis=1).mean()
    assert info.csr is not None and X.dtype == np.float32 and 8 < per_row <= 10
    columns = X.getnnz(axis=0)
    assert columns[:10].sum() > 20 * columns[-10:].sum()  # popular columns come first
    with h5py.File(out) as f:
        z = X @ f.attrs["coef_true"] + f.attrs["intercept_true"]
    assert 0.2 < y.mean() < 0.8
    model = tmp_path / "m.h5"
    argv = ["train", out, "--model", "logistic", "--l2", "1e-4", "--out", model, "--quiet"]
    done = subprocess.run([sys.executable, "-m", "mpigd", *map(str, argv)], capture_output=True)
    assert done.returncode == 0, done.stderr
    from mpigd import load_model

    accuracy = np.mean(load_model(model).predict(X) == y)
    assert accuracy > 0.75, accuracy
    assert np.corrcoef(z, load_model(model).decision_function(X))[0, 1] > 0.8


def test_flat_popularity_spreads_values_evenly_over_the_columns(tmp_path):
    from mpigd.io.dataset import inspect_dataset, read_block

    out = tmp_path / "flat.h5"
    make_dataset(out, 20_000, 200, seed=5, density=0.05, popularity="flat")
    X = read_block(inspect_dataset(out), 0, 1).X
    columns = X.getnnz(axis=0)
    assert columns.min() > 0.8 * columns.mean() and columns.max() < 1.2 * columns.mean()
    with pytest.raises(MpigdError, match="popularity must be one of zipf, flat"):
        make_dataset(tmp_path / "x.h5", 10, 3, density=0.5, popularity="hashed")
