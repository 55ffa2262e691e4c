"""Model files: contents, prediction, atomic writes."""

import os
import signal
import stat
import weakref
from pathlib import Path

import h5py
import numpy as np
import pytest

from mpigd.cli.guard import run_guarded
from mpigd.errors import Interrupted, MpigdError
from mpigd.io.outputs import atomic_path, output_problem
from mpigd.model import LinearModel, load_model


def test_round_trip_keeps_coefficients_record_and_history(tmp_path):
    model = LinearModel(
        "logistic",
        np.array([1.5, -2.0]),
        0.25,
        {"iterations": 7, "converged": True, "optimizer": "gd"},
        {"loss_history": np.array([0.7, 0.5, 0.4])},
    )
    model.save(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5")
    assert loaded.kind == "logistic" and loaded.intercept == 0.25
    np.testing.assert_array_equal(loaded.coef, model.coef)
    np.testing.assert_array_equal(loaded.history, model.history)
    assert loaded.info == {"iterations": 7, "converged": True, "optimizer": "gd"}


def test_predictions():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    linear = LinearModel("linear", np.array([2.0, -1.0]), 0.5)
    np.testing.assert_array_equal(linear.predict(X), [2.5, -0.5, 0.5])
    logistic = LinearModel("logistic", np.array([2.0, -1.0]), 0.0)
    np.testing.assert_array_equal(logistic.predict(X), [1, 0, 0])
    np.testing.assert_allclose(logistic.predict_proba(X), 1 / (1 + np.exp([-2.0, 1.0, 0.0])))
    with pytest.raises(ValueError):
        linear.predict_proba(X)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "m.h5"
    target.write_bytes(b"previous good model")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"half a model")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"previous good model"
    assert os.listdir(tmp_path) == ["m.h5"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_lost_in_a_finaliser_still_stops_the_commit_and_the_command(tmp_path):
    # Python only prints an exception raised in a weakref callback or __del__: a SIGTERM
    # that lands there must still leave no output and end the command as interrupted.
    class Thing:
        pass

    def signal_lost_in_a_finaliser():
        thing = Thing()
        ref = weakref.ref(thing, lambda _: Interrupted.on_signal(signal.SIGTERM, None))
        del thing  # the handler's exception is swallowed here
        assert ref() is None

    def writes_a_model():
        with atomic_path(tmp_path / "m.h5") as tmp:
            Path(tmp).write_bytes(b"a whole model")
            signal_lost_in_a_finaliser()
        return 0

    def writes_nothing():
        signal_lost_in_a_finaliser()
        return 0

    try:
        for command in (writes_a_model, writes_nothing):
            assert run_guarded(command, SelfComm()) == 128 + signal.SIGTERM
            assert os.listdir(tmp_path) == []
            assert Interrupted.pending is None  # reported once
    finally:
        Interrupted.pending = None


class SelfComm:
    rank, size = 0, 1


def test_a_signal_superseded_by_an_error_does_not_fail_the_next_command():
    def command():
        try:
            Interrupted.on_signal(signal.SIGTERM, None)
        finally:
            raise MpigdError("closing the file failed")  # replaces the Interrupted

    try:
        assert run_guarded(command, SelfComm()) == MpigdError.exit_status
        assert run_guarded(lambda: 0, SelfComm()) == 0
        assert Interrupted.pending is None
    finally:
        Interrupted.pending = None


def test_outputs_get_the_usual_permissions(tmp_path):
    LinearModel("linear", np.ones(1), 0.0).save(tmp_path / "m.h5")
    mode = stat.S_IMODE((tmp_path / "m.h5").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_output_problems_are_named(tmp_path):
    assert output_problem(tmp_path / "m.h5") is None
    assert "is a folder" in output_problem(tmp_path)
    assert "does not exist" in output_problem(tmp_path / "no" / "m.h5")


def test_loading_something_else_is_a_clear_error(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["X"] = np.ones((2, 2))
    with pytest.raises(MpigdError, match="cannot read model file"):
        load_model(tmp_path / "d.h5")
    with pytest.raises(MpigdError, match="model file not found"):
        load_model(tmp_path / "missing.h5")


def test_writing_turns_os_errors_into_one_clear_error_and_keeps_the_old_file(tmp_path):
    from mpigd.io.outputs import writing

    path = tmp_path / "out.json"
    path.write_text("old")
    with pytest.raises(
        MpigdError, match=f"cannot write result {path}: no space left on its device"
    ):
        with writing(path, "result") as tmp:
            Path(tmp).write_text("partial")
            raise OSError(28, "No space left on device")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.json"]
    with pytest.raises(MpigdError, match="cannot write"):
        with writing(tmp_path / "missing-folder" / "x.h5"):
            pass
    with writing(path) as tmp:
        Path(tmp).write_text("new")
    assert path.read_text() == "new"


def test_a_write_error_names_the_output_not_the_temporary_file(tmp_path, monkeypatch):
    from mpigd.io import outputs

    path = tmp_path / "out.h5"

    def failing_rename(src, dst):
        raise OSError(5, "Input/output error", str(src), None, str(dst))

    monkeypatch.setattr(outputs.os, "replace", failing_rename)
    with pytest.raises(MpigdError) as raised:
        with outputs.writing(path) as tmp:
            Path(tmp).write_text("new")
    assert str(raised.value) == f"cannot write {path}: [Errno 5] Input/output error"
    assert os.listdir(tmp_path) == []  # the temporary file removed


def test_a_folder_sync_failing_after_the_rename_says_the_output_is_written(tmp_path, monkeypatch):
    from mpigd.io import outputs

    path, real_fsync = tmp_path / "out.json", os.fsync

    def folder_fails(fd):
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(5, "Input/output error")
        return real_fsync(fd)

    monkeypatch.setattr(outputs.os, "fsync", folder_fails)
    with pytest.raises(MpigdError, match=r"out\.json is written, but syncing its folder failed"):
        with outputs.writing(path) as tmp:
            Path(tmp).write_text("new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["out.json"]


def test_outputs_never_name_inputs_or_each_other(tmp_path, monkeypatch):
    from mpigd.io.outputs import clash_problem

    data = tmp_path / "d.h5"
    data.write_bytes(b"data")
    (tmp_path / "soft.h5").symlink_to(data)
    os.link(data, tmp_path / "hard.h5")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    inputs = {"the data file": data, "--resume": tmp_path / "ck.h5"}
    for alias in (data, tmp_path / "soft.h5", tmp_path / "hard.h5", Path("../d.h5")):
        problem = clash_problem({"--out": alias}, inputs)
        assert problem is not None and "is an input file, the data file" in problem
    assert "are the same file" in clash_problem(
        {"--out": tmp_path / "x.h5", "--checkpoint": Path("../x.h5")}, inputs
    )
    outputs = {"--out": tmp_path / "m.h5", "--checkpoint": tmp_path / "ck.h5"}
    assert "is an input file, --resume" in clash_problem(outputs, inputs)
    assert clash_problem(outputs, inputs, may_share=[("--checkpoint", "--resume")]) is None
    assert clash_problem({"--out": tmp_path / "m.h5", "--json": None}, inputs) is None


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_lost_in_a_finaliser_stops_training_and_cv_at_the_next_evaluation(tmp_path):
    from conftest import random_problem, write_h5
    from mpi4py import MPI

    import mpigd
    from mpigd.kernels.losses import make_loss
    from mpigd.selection.objective import FoldObjectives

    class Thing:
        pass

    def lose_a_signal(progress):
        if progress.nit == 2:
            thing = Thing()
            ref = weakref.ref(thing, lambda _: Interrupted.on_signal(signal.SIGTERM, None))
            del thing
            assert ref() is None
        seen.append(progress.nit)

    data = write_h5(tmp_path / "d.h5", *random_problem("logistic", 500, 3))
    seen = []
    try:
        with pytest.raises(Interrupted):
            mpigd.fit(data, "logistic", comm=MPI.COMM_SELF, optimizer="gd", lr=0.1,
                      max_iter=1000, tol=0, ftol=0, callback=lose_a_signal)  # fmt: skip
        assert seen == [1, 2]  # stopped at the next iteration, not after 1000
        X, y = random_problem("logistic", 50, 2)
        folds = FoldObjectives(MPI.COMM_SELF, X, y, make_loss("logistic"), np.arange(50) % 2,
                               2, stop_flag=lambda: Interrupted.pending is not None)  # fmt: skip
        with pytest.raises(Interrupted):
            folds({0: np.zeros(3)})
    finally:
        Interrupted.pending = None
