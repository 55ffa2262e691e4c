"""The command line in this process (one rank): exit codes, messages, files."""

import warnings

import h5py
import numpy as np
import pytest
from conftest import random_problem, sparse_problem, write_csr, write_h5

from mpigd import load_model
from mpigd.cli import main
from mpigd.io.budget import STREAM_ENV


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
        main(["train", str(data), "--model", "probit", "--out", str(tmp_path / "m.h5")])
    assert exit_info.value.code == 2


def test_bad_thread_count_from_the_environment(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MPIGD_NUM_THREADS", "0")
    assert main(["train", str(data), "--model", "linear", "--out", str(tmp_path / "m.h5")]) == 2
    assert "MPIGD_NUM_THREADS='0' is not a whole number from 1 to 4096" in capsys.readouterr().err


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


# -------------------------------------------------------- a CLI that explains itself


def test_train_help_names_every_model_and_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Poisson, Gamma, Tweedie, Huber or a linear SVM" in text
    assert "--model {linear,logistic,softmax,poisson,gamma,tweedie,huber,svm}" in text
    assert "--power P tweedie's power, 1 < P < 2 (default: 1.5)" in text
    for shown in (
        "(default: 0.0)",
        "(default: 1e-06)",
        "(default: 1e-12)",
        "(default: 50)",
        "(default: 1024)",
        "(default: 10)",
        "(default: index)",
        "(default: from zeros)",
    ):
        assert shown in text, shown


def test_one_rank_is_singular_and_an_immediate_error_is_the_only_line(data, tmp_path, capsys):
    assert main(["train", str(data), "--model", "linear", "--out", str(tmp_path / "m.h5")]) == 0
    assert ", 1 rank (" in capsys.readouterr().out
    argv = [
        "train",
        str(tmp_path / "missing.h5"),
        "--model",
        "linear",
        "--out",
        str(tmp_path / "n"),
    ]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1


def _png_size(path) -> tuple[int, int]:
    head = open(path, "rb").read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_plot_draws_the_training_curve(data, tmp_path, capsys):
    model = tmp_path / "m.h5"
    assert main(["train", str(data), "--model", "linear", "--optimizer", "lbfgs",
                 "--out", str(model)]) == 0  # fmt: skip
    assert len(load_model(model).arrays["grad_norm_history"]) == load_model(model).info[
        "iterations"]  # fmt: skip
    assert main(["plot", str(model), "--out", str(tmp_path / "curve.png")]) == 0
    width, height = _png_size(tmp_path / "curve.png")
    assert width >= 800 and height >= 300
    assert main(["plot", str(data), "--out", str(tmp_path / "no.png")]) == 2
    assert "not an mpigd model file" in capsys.readouterr().err
    assert not (tmp_path / "no.png").exists()


def test_any_label_values_round_trip_through_the_files(tmp_path, capsys):
    X, y = random_problem("logistic", 300, 3, seed=5)
    data = write_h5(tmp_path / "pm.h5", X, 2 * y - 1)  # LIBSVM's -1/+1
    model, out = tmp_path / "m.h5", tmp_path / "p.h5"
    assert main(["train", str(data), "--model", "logistic", "--out", str(model)]) == 2
    assert "labels must be 0 or 1" in capsys.readouterr().err
    argv = ["train", str(data), "--model", "logistic", "--labels", "auto", "--out", str(model)]
    assert main(argv) == 0
    np.testing.assert_array_equal(load_model(model).arrays["classes"], [-1.0, 1.0])
    assert main(["predict", str(model), str(data), "--out", str(out)]) == 0
    with h5py.File(out) as f:
        assert set(np.unique(f["prediction"][:])) == {-1.0, 1.0}
    capsys.readouterr()
    assert main(["evaluate", str(model), str(data)]) == 0
    text = capsys.readouterr().out
    assert "true / predicted" in text and text.count("-1") >= 2
    other = write_h5(tmp_path / "other.h5", X, y + 5)
    assert main(["evaluate", str(model), str(other)]) == 2
    assert "labels must be the model's classes (-1, 1)" in capsys.readouterr().err


def test_libsvm_says_which_index_base_it_assumed(tmp_path, capsys):
    source = tmp_path / "d.svm"
    source.write_text("+1 1:0.5 3:1\n-1 2:1.5\n")
    with pytest.warns(UserWarning, match="read as 1-based .* convert again with --zero-based"):
        assert main(["data", "convert", str(source), str(tmp_path / "d.h5")]) == 0
    source.write_text("+1 0:0.5 3:1\n-1 2:1.5\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0-based for sure: nothing to say
        assert main(["data", "convert", str(source), str(tmp_path / "e.h5")]) == 0


def test_a_closed_output_pipe_ends_quietly_with_sigpipe_status(data):
    import os
    import signal
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line: `mpigd ... | head -0`
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mpigd", "data", "info", str(data)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 128 + signal.SIGPIPE, proc.stderr
    assert proc.stderr == "", proc.stderr


@pytest.mark.parametrize(
    "model, features, layout, chosen",
    [
        ("logistic", 2500, "csr", "newton"),  # wide sparse: preconditioned Newton-CG
        ("logistic", 2500, "dense", "lbfgs"),
        ("logistic", 30, "csr", "lbfgs"),  # narrow: Newton would form the Hessian
        ("logistic", 30, "dense", "lbfgs"),
        ("logistic", 30, "streamed", "newton"),  # fewer passes over the disk
        ("logistic", 100, "streamed", "lbfgs"),  # the Hessian's sums would cost more
        ("softmax", 30, "streamed", "lbfgs"),
        ("linear", 5000, "csr", "newton"),  # beyond the normal equations' width
        ("linear", 30, "csr", "normal"),
        ("linear", 30, "streamed", "normal"),  # one pass
    ],
)
def test_auto_picks_the_optimizer_by_layout_and_width(
    tmp_path, monkeypatch, model, features, layout, chosen
):
    if layout == "streamed":
        monkeypatch.setenv(STREAM_ENV, "64K")
    X, y = sparse_problem(model, 300, features, seed=1)
    path = tmp_path / "d.h5"
    if layout == "csr":
        write_csr(path, X, y)
    else:
        write_h5(path, X.toarray(), y)
    out = tmp_path / "m.h5"
    argv = ["train", str(path), "--model", model, "--l2", "1e-3", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    info = load_model(out).info
    assert info["optimizer"] == chosen
    assert bool(info.get("streamed", False)) == (layout == "streamed")


def test_a_rank_reports_a_stop_only_after_the_one_before_could_end_the_job():
    """A rank that reports an interrupt or a missed deadline waits ABORT_FLUSH before its
    abort; the next rank in line must not report inside that window (two lines)."""
    from mpigd.parallel import ABORT_FLUSH, INTERRUPT_STAGGER, _Deadline

    assert INTERRUPT_STAGGER > ABORT_FLUSH and _Deadline.STAGGER > ABORT_FLUSH
