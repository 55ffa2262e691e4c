"""Training, cross-validation, evaluation and prediction straight from text, under real
mpiexec (one launch a rank count): the same model as from the converted file (to 1e-10),
the same scores and predictions, ``--cache`` writing the file ``data convert`` writes,
and text options on an HDF5 file refused."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from conftest import run_mpi_commands

from mpigd import load_model
from mpigd.errors import EXIT_INPUT

RANKS = [1, 2, 3]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("text")
    rng = np.random.default_rng(4)
    X = rng.normal(size=(997, 12)) * (rng.random((997, 12)) < 0.4)
    y = np.where(X @ rng.normal(size=12) + 0.3 * rng.normal(size=997) > 0, 1, -1)
    with open(d / "train.svm", "w") as f:
        for row, label in zip(X, y, strict=True):
            pairs = " ".join(f"{j + 1}:{v:.9g}" for j, v in enumerate(row) if v != 0)
            f.write(f"{label:+d} {pairs}\n")
    header = ",".join([f"f{j}" for j in range(12)] + ["y"])
    np.savetxt(d / "train.csv", np.column_stack([X, y > 0]), delimiter=",", fmt="%.9g",
               header=header, comments="")  # fmt: skip
    return d


def commands(d, out):
    train = ["--model", "logistic", "--labels", "auto", "--l2", "1e-3", "--quiet"]
    return {
        "convert": (["data", "convert", d / "train.svm", out / "svm.h5"], 0),
        "text": (
            [
                "train",
                d / "train.svm",
                *train,
                "--out",
                out / "m-text.h5",
                "--cache",
                out / "cache.h5",
            ],
            0,
        ),
        "file": (["train", out / "svm.h5", *train, "--out", out / "m-file.h5"], 0),
        "csv": (["train", d / "train.csv", "--label", "y", *train, "--out", out / "m-csv.h5"], 0),
        "cv": (
            [
                "cv",
                d / "train.svm",
                "--model",
                "logistic",
                "--labels",
                "auto",
                "--folds",
                "3",
                "--l2-path",
                "1e-1:1e-3:3",
                "--out",
                out / "m-cv.h5",
                "--quiet",
            ],
            0,
        ),
        "evaluate-text": (
            [
                "evaluate",
                out / "m-text.h5",
                d / "train.svm",
                "--json",
                out / "e-text.json",
                "--quiet",
            ],
            0,
        ),
        "evaluate-file": (
            [
                "evaluate",
                out / "m-text.h5",
                out / "svm.h5",
                "--json",
                out / "e-file.json",
                "--quiet",
            ],
            0,
        ),
        "predict-text": (
            ["predict", out / "m-text.h5", d / "train.svm", "--out", out / "p-text.h5", "--quiet"],
            0,
        ),
        "predict-file": (
            ["predict", out / "m-text.h5", out / "svm.h5", "--out", out / "p-file.h5", "--quiet"],
            0,
        ),
        "label-on-hdf5": (
            ["train", out / "svm.h5", *train, "--label", "y", "--out", out / "never.h5"],
            EXIT_INPUT,
        ),
    }


@pytest.fixture(scope="module")
def runs(inputs, tmp_path_factory):
    done = {}
    for ranks in RANKS:
        out = tmp_path_factory.mktemp(f"p{ranks}")
        todo = commands(inputs, out)
        outcomes = out / "outcomes.json"
        proc = run_mpi_commands(
            ranks, [argv for argv, _ in todo.values()], out / "c.json", outcomes
        )
        assert proc.returncode == 0, proc.stderr
        done[ranks] = out, dict(zip(todo, json.loads(outcomes.read_text()), strict=True))
    return done


def test_every_command_ends_as_expected(inputs, runs):
    for ranks, (out, outcomes) in runs.items():
        for name, (_, status) in commands(inputs, out).items():
            assert set(outcomes[name]["status"]) == {status}, (ranks, name, outcomes[name])
        message = "".join(outcomes["label-on-hdf5"]["stderr"])
        assert "--label is for text data" in message and not (out / "never.h5").exists()


def test_text_trains_the_model_of_its_converted_file(runs):
    for out, _ in runs.values():
        text, file = load_model(out / "m-text.h5"), load_model(out / "m-file.h5")
        csv = load_model(out / "m-csv.h5")
        for other in (file, csv):
            np.testing.assert_allclose(text.coef, other.coef, rtol=1e-10, atol=1e-12)
            assert text.intercept == pytest.approx(other.intercept, rel=1e-10, abs=1e-12)
        assert list(text.arrays["classes"]) == [-1, 1]
        assert load_model(out / "m-cv.h5").info["l2"] in (1e-1, 1e-2, 1e-3)


def test_the_cache_is_the_converted_file(runs):
    for ranks, (out, _) in runs.items():
        with h5py.File(out / "cache.h5") as a, h5py.File(out / "svm.h5") as b:
            for key in ("X/data", "X/indices", "X/indptr", "y"):
                np.testing.assert_array_equal(a[key][:], b[key][:], err_msg=f"{ranks} {key}")


def test_scores_and_predictions_from_text_equal_those_from_the_file(runs):
    for ranks, (out, _) in runs.items():
        text = json.loads((out / "e-text.json").read_text())
        file = json.loads((out / "e-file.json").read_text())
        for key in ("accuracy", "log_loss", "roc_auc"):
            assert text[key] == pytest.approx(file[key], rel=1e-12), (ranks, key)
        with h5py.File(out / "p-text.h5") as a, h5py.File(out / "p-file.h5") as b:
            np.testing.assert_array_equal(a["prediction"][:], b["prediction"][:])
            np.testing.assert_allclose(a["probability"][:], b["probability"][:], rtol=1e-12)
