"""The command line in this process (one rank): exit codes, messages, files."""

import h5py
import numpy as np
import pytest
from conftest import random_problem, write_h5

from mpigd import load_model
from mpigd.cli import main


@pytest.fixture
def data(tmp_path):
    return write_h5(tmp_path / "d.h5", *random_problem("linear", 200, 3))


def test_train_and_reload(data, tmp_path, capsys):
    out = tmp_path / "m.h5"
    assert main(["train", str(data), "--model", "linear", "--out", str(out), "--l2", "0.1"]) == 0
    stdout = capsys.readouterr().out
    assert "converged:" in stdout and "model written to" in stdout
    model = load_model(out)
    assert model.info["l2"] == 0.1 and model.info["ranks"] == 1
    assert model.info["optimizer"] == "normal" and model.info["lr"] == "default"
    assert len(model.history) == model.info["iterations"] + 1


@pytest.mark.parametrize(
    "options, message",
    [
        (["--l2", "-1"], "l2 must be a finite number >= 0, got -1.0"),
        (["--lr", "0"], "lr must be a finite number > 0, got 0.0"),
        (["--max-iter", "0"], "max_iter must be >= 1, got 0"),
        (["--tol", "-1"], "tol must be >= 0"),
        (["--y-key", "label"], "no dataset 'label'"),
    ],
)
def test_bad_options_give_one_line_and_status_2(data, tmp_path, capsys, options, message):
    argv = ["train", str(data), "--model", "linear", "--out", str(tmp_path / "m.h5"), *options]
    assert main(argv) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("mpigd: error: ") and message in stderr
    assert stderr.count("\n") == 1
    assert not (tmp_path / "m.h5").exists()


def test_divergence_is_an_error_and_writes_nothing(data, tmp_path, capsys):
    out = tmp_path / "m.h5"
    argv = ["train", str(data), "--model", "linear", "--optimizer", "gd", "--lr", "100"]
    assert main([*argv, "--out", str(out)]) == 3
    assert "training diverged" in capsys.readouterr().err
    assert not out.exists()


def test_non_convergence_is_a_warning(data, tmp_path, capsys):
    out = tmp_path / "m.h5"
    argv = ["train", str(data), "--model", "linear", "--optimizer", "gd", "--max-iter", "1"]
    argv += ["--out", str(out)]
    with pytest.warns(UserWarning, match="not converged: reached max_iter=1"):
        assert main(argv) == 0
    assert load_model(out).info["converged"] is False


def test_unknown_model_is_a_usage_error(data, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(data), "--model", "poisson", "--out", str(tmp_path / "m.h5")])
    assert exit_info.value.code == 2


def test_bad_thread_count_from_the_environment(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MPIGD_NUM_THREADS", "0")
    assert main(["train", str(data), "--model", "linear", "--out", str(tmp_path / "m.h5")]) == 2
    assert "MPIGD_NUM_THREADS='0' is not a whole number >= 1" in capsys.readouterr().err


def test_data_make(tmp_path):
    out = tmp_path / "s.h5"
    argv = ["data", "make", str(out), "--rows", "1000", "--features", "4", "--quiet"]
    assert main([*argv, "--dtype", "float32", "--model", "linear"]) == 0
    with h5py.File(out) as f:
        assert f["X"].shape == (1000, 4) and f["X"].dtype == np.float32
        assert f.attrs["kind"] == "linear"


@pytest.mark.parametrize(("rank", "says"), [("0", True), ("2", False)])
def test_launcher_world_mismatch_stops_before_work(data, tmp_path, monkeypatch, capsys, rank, says):
    """PMI_SIZE=3 but a world of 1: exit 2, explained by the launcher's rank 0 only."""
    monkeypatch.setenv("PMI_SIZE", "3")
    monkeypatch.setenv("PMI_RANK", rank)
    out = tmp_path / "m.h5"
    assert main(["train", str(data), "--model", "linear", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert ("mpiexec (PMI) started 3 processes" in err) == says
    assert not out.exists()
