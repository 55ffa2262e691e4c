"""File checks and slice reading, on one process."""

import h5py
import numpy as np
import pytest
from conftest import write_h5

from mpigd.errors import MpigdError
from mpigd.io.dataset import fingerprint, inspect_dataset, memory_problem, read_block


@pytest.fixture
def good(tmp_path):
    rng = np.random.default_rng(0)
    return write_h5(tmp_path / "d.h5", rng.standard_normal((11, 3)), rng.random(11))


def test_describes_a_valid_file(good):
    info = inspect_dataset(good)
    assert (info.n_rows, info.n_features, info.x_dtype) == (11, 3, np.float64)


def test_blocks_of_all_ranks_rebuild_the_dataset(good):
    info = inspect_dataset(good)
    blocks = [read_block(info, rank, 4) for rank in range(4)]
    with h5py.File(good) as f:
        np.testing.assert_array_equal(np.vstack([b.X for b in blocks]), f["X"][()])
        np.testing.assert_array_equal(np.concatenate([b.y for b in blocks]), f["y"][()])
    assert [b.X.shape[0] for b in blocks] == [3, 3, 3, 2]


def test_more_ranks_than_rows_gives_empty_blocks(good):
    block = read_block(inspect_dataset(good), 15, 16)
    assert block.X.shape == (0, 3) and block.y.shape == (0,)


def test_dtypes_float32_kept_integers_widened_column_labels_flattened(tmp_path):
    path = write_h5(tmp_path / "d.h5", np.ones((4, 2), np.float32), np.ones((4, 1), np.int8))
    block = read_block(inspect_dataset(path), 0, 1)
    assert block.X.dtype == np.float32 and block.y.dtype == np.float64 and block.y.shape == (4,)
    path = write_h5(tmp_path / "i.h5", np.arange(8, dtype=np.int32).reshape(4, 2), np.ones(4))
    block = read_block(inspect_dataset(path), 1, 2)
    assert block.X.dtype == np.float64
    np.testing.assert_array_equal(block.X, [[4, 5], [6, 7]])


def test_non_finite_values_are_reported_with_their_rows(tmp_path):
    X = np.ones((6, 2))
    X[4, 1] = np.nan
    info = inspect_dataset(write_h5(tmp_path / "d.h5", X, np.ones(6)))
    read_block(info, 0, 2)  # rows 0:3 are clean
    with pytest.raises(MpigdError, match=r"'X' holds 1 NaN or infinite values in rows 3:6"):
        read_block(info, 1, 2)


def bad_file(tmp_path, **datasets):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            if isinstance(value, str):  # "group"
                f.create_group(key)
            else:
                f[key] = value
    return path


@pytest.mark.parametrize(
    "datasets, keys, message",
    [
        ({"X": np.ones((3, 2))}, ("X", "y"), r"no dataset 'y' \(the file has: X\)"),
        ({"X": np.ones((3, 2)), "y": "group"}, ("X", "y"), "'y' is a group"),
        ({"X": np.ones(3), "y": np.ones(3)}, ("X", "y"), "'X' must be 2-D"),
        ({"X": np.ones((3, 2, 1)), "y": np.ones(3)}, ("X", "y"), "'X' must be 2-D"),
        ({"X": np.ones((0, 2)), "y": np.ones(0)}, ("X", "y"), "needs rows and features"),
        ({"X": np.ones((3, 0)), "y": np.ones(3)}, ("X", "y"), "needs rows and features"),
        ({"X": np.ones((3, 2)), "y": np.ones(4)}, ("X", "y"), "'y' has 4 rows but 'X' has 3"),
        ({"X": np.ones((3, 2)), "y": np.ones((3, 2))}, ("X", "y"), "'y' must be 1-D"),
        ({"X": np.ones((3, 2)) * 1j, "y": np.ones(3)}, ("X", "y"), "complex dtype"),
        ({"X": np.ones((3, 2)), "y": np.array([b"a", b"b", b"c"])}, ("X", "y"), "non-numeric"),
        ({"A": np.ones((3, 2)), "b": np.ones(3)}, ("A", "c"), "no dataset 'c'"),
    ],
)
def test_bad_layouts_give_one_clear_message(tmp_path, datasets, keys, message):
    with pytest.raises(MpigdError, match=message):
        inspect_dataset(bad_file(tmp_path, **datasets), *keys)


def test_missing_and_non_hdf5_files(tmp_path):
    with pytest.raises(MpigdError, match="data file not found"):
        inspect_dataset(tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("x,y\n1,2\n")
    with pytest.raises(MpigdError, match="not an HDF5 file"):
        inspect_dataset(tmp_path / "text.h5")
    with pytest.raises(MpigdError, match="is a folder"):
        inspect_dataset(tmp_path)


def test_the_data_file_is_opened_read_only(good):
    good.chmod(0o444)
    info = inspect_dataset(good)
    read_block(info, 0, 1)
    with h5py.File(good) as f:  # still intact
        assert f["X"].shape == (11, 3)


def test_unreadable_file_names_the_reason(good, monkeypatch):
    # Tests often run as root, who can read any file, so the refusal is simulated.
    def refuse(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(h5py, "is_hdf5", refuse)
    with pytest.raises(MpigdError, match=r"cannot read data file .*: Permission denied"):
        inspect_dataset(good)


def test_memory_estimate_says_how_many_ranks_would_fit(good):
    info = inspect_dataset(good)  # 11 rows x 3 float64 features + label: 32 bytes a row
    assert memory_problem(info, 0, 2, budget=6 * 32) is None
    message = memory_problem(info, 0, 1, budget=4 * 32)
    assert "blocks of up to 11 rows need 352.0 B of memory at 1 rank but" in message
    assert "use at least 3 ranks" in message


def test_fingerprint_tells_datasets_apart(tmp_path, good):
    same = fingerprint(inspect_dataset(good))
    assert fingerprint(inspect_dataset(good)) == same
    with h5py.File(good) as f:
        X, y = f["X"][()], f["y"][()]
    X[-1, 0] += 1e-9
    changed = fingerprint(inspect_dataset(write_h5(tmp_path / "c.h5", X, y)))
    assert changed["data_shape"] == same["data_shape"]
    assert changed["data_sample_sha256"] != same["data_sample_sha256"]
