import h5py
import numpy as np
import pytest

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
        make_dataset(tmp_path / "x.h5", 10, 3, kind="poisson")
