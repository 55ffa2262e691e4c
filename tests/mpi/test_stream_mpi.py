"""Streaming under real mpiexec: a streamed run trains the model the in-memory run trains
(dense, float32, CSR, weights, standardisation, softmax, Newton-CG and L-BFGS, fewer rows
than ranks) with every rank bit-identical, stays within its memory budget on a file
three times the ranks' total budget, and a file cut between passes ends every rank with
one error."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
from conftest import random_problem, run_mpi, sparse_problem, write_csr, write_h5

from mpigd.io.budget import STREAM_ENV
from mpigd.kernels import compiled


def _datasets(folder):
    X, y = random_problem("logistic", 3001, 12, seed=11)
    w = np.random.default_rng(12).random(len(y))
    write_h5(folder / "dense.h5", X, y, w=w)
    with h5py.File(folder / "f32.h5", "w") as f:
        f.create_dataset("X", data=X.astype(np.float32), chunks=(101, 12))
        f["y"] = y
    Xs, ys = sparse_problem("logistic", 3001, 60, seed=13)
    write_csr(folder / "csr.h5", Xs, ys)
    classes = np.random.default_rng(14).integers(0, 3, len(y)).astype(np.float64)
    write_h5(folder / "three.h5", X, classes)
    write_h5(folder / "two.h5", X[:2], y[:2])  # fewer rows than ranks at P = 3
    common = {"l2": 1e-2, "tol": 1e-9, "ftol": 0.0}
    return [
        {"name": "dense", "data": "dense.h5", "model": "logistic", "weight_key": "w",
         "standardize": True, "optimizer": "newton", **common},
        {"name": "lbfgs", "data": "dense.h5", "model": "linear", "optimizer": "lbfgs", **common},
        {"name": "f32", "data": "f32.h5", "model": "logistic", "optimizer": "lbfgs", **common},
        {"name": "csr", "data": "csr.h5", "model": "logistic", "optimizer": "newton", **common},
        {"name": "csr-lbfgs", "data": "csr.h5", "model": "logistic", "optimizer": "lbfgs",
         **common},
        {"name": "softmax", "data": "three.h5", "model": "softmax", "optimizer": "lbfgs",
         "standardize": True, **common},
        {"name": "two", "data": "two.h5", "model": "logistic", "optimizer": "newton",
         "l2": 1.0, "tol": 1e-9},
    ]  # fmt: skip


@pytest.mark.parametrize("ranks", [2, 3])
def test_streamed_runs_train_the_in_memory_model(tmp_path, ranks):
    runs = _datasets(tmp_path)
    for run in runs:
        run["data"] = str(tmp_path / run["data"])
    spec = tmp_path / "spec.json"
    results = {}
    for how, env in (("memory", {}), ("streamed", {STREAM_ENV: "20K"})):
        spec.write_text(json.dumps(runs))
        out = tmp_path / f"{how}.npz"
        proc = run_mpi(ranks, "tests/mpi/mpi_fit.py", spec, out, env=env)
        assert proc.returncode == 0, proc.stderr
        assert ("streams them from disk" in proc.stderr) == (how == "streamed"), proc.stderr
        results[how] = dict(np.load(out))
    for run in runs:
        name = run["name"]
        held, streamed = (results[how][f"{name}/theta"] for how in ("memory", "streamed"))
        assert (streamed == streamed[0]).all(), f"{name}: ranks differ"
        # Where the blocks' sums are added in another order than one pass's, the runs
        # part at rounding level and both stop at the gradient tolerance (1e-9, l2 = 1e-2)
        loss = {how: float(results[how][f"{name}/loss"]) for how in results}
        assert loss["streamed"] == pytest.approx(loss["memory"], rel=1e-12, abs=0), name
        assert np.abs(streamed[0] - held[0]).max() <= 1e-7 * np.abs(held[0]).max(), name
        if name in SAME_BITS and compiled.name() == "compiled":
            np.testing.assert_array_equal(streamed, held, err_msg=name)


#: Runs whose evaluations are loss and gradient sums only, by the compiled sweep, in
#: blocks of whole multiples of its 64 rows (20 KiB: 192 rows of 12 float64 values, 384
#: of float32, about 1,700 CSR values): the same bits streamed as in memory. The others
#: take Newton's curvature sums (NumPy), or standardise, whose column sums come in 2 MiB
#: blocks (a streamed block of 20 KiB is part of one).
SAME_BITS = {"lbfgs", "f32", "csr-lbfgs"}


def _big_file(path, rows: int, n: int) -> None:
    """A float64 logistic problem written a block at a time (the test stays small)."""
    rng = np.random.default_rng(21)
    w = rng.standard_normal(n) / np.sqrt(n)
    with h5py.File(path, "w") as f:
        X = f.create_dataset("X", (rows, n), dtype=np.float64)
        y = f.create_dataset("y", (rows,), dtype=np.float64)
        step = 1 << 16
        for first in range(0, rows, step):
            block = rng.standard_normal((min(step, rows - first), n))
            X[first : first + len(block)] = block
            y[first : first + len(block)] = rng.random(len(block)) < 1 / (1 + np.exp(-block @ w))


@pytest.mark.slow
def test_a_file_three_times_the_budget_streams_within_it(tmp_path):
    budget = 160 << 20
    path = tmp_path / "big.h5"
    _big_file(path, 1 << 20, 128)  # 1 GiB: 3.2 times two ranks' budgets
    assert os.path.getsize(path) >= 3 * 2 * budget
    run = {"name": "big", "data": str(path), "model": "logistic", "optimizer": "lbfgs",
           "l2": 1e-3, "max_iter": 4, "memory": budget}  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps([run]))
    proc = run_mpi(2, "tests/mpi/mpi_fit.py", tmp_path / "spec.json", tmp_path / "out.npz")
    assert proc.returncode == 0, proc.stderr
    assert "do not fit a budget of 160.0 MiB a rank" in proc.stderr
    saved = np.load(tmp_path / "out.npz")
    assert (saved["big/peak_rss"] <= budget).all(), saved["big/peak_rss"] / 2**20


def test_a_file_cut_between_passes_ends_every_rank_with_one_error(tmp_path):
    X, y = random_problem("logistic", 3000, 10, seed=31)
    path = write_h5(tmp_path / "cut.h5", X, y)
    out = tmp_path / "outcome"
    proc = run_mpi(3, "tests/mpi/mpi_stream_cut.py", path, out, env={STREAM_ENV: "16K"})
    assert proc.returncode == 0, proc.stderr
    messages = {(tmp_path / f"outcome.{rank}").read_text() for rank in range(3)}
    assert len(messages) == 1, messages  # the same error, agreed, on every rank
    (message,) = messages
    assert message.startswith("MpigdError: ") and "cut.h5" in message, message
    assert "failed" in message, message


def test_cross_validation_streams_to_the_in_memory_result(tmp_path):
    X, y = random_problem("logistic", 2000, 8, seed=41)
    write_h5(tmp_path / "d.h5", X, y)
    scores = {}
    for how, env in (("memory", {}), ("streamed", {STREAM_ENV: "8K"})):
        argv = ["-m", "mpigd", "cv", tmp_path / "d.h5", "--model", "logistic", "--folds", "3"]
        argv += ["--l2-path", "1:0.01:3", "--standardize", "--metric", "roc_auc"]
        argv += ["--out", tmp_path / f"{how}.h5", "--json", tmp_path / f"{how}.json"]
        proc = run_mpi(3, *argv, env=env)
        assert proc.returncode == 0, proc.stderr
        assert ("streams them from disk" in proc.stderr) == (how == "streamed"), proc.stderr
        scores[how] = json.loads((tmp_path / f"{how}.json").read_text())
    held, streamed = scores["memory"], scores["streamed"]
    assert streamed["chosen"] == held["chosen"]
    np.testing.assert_allclose(streamed["val"], held["val"], rtol=1e-9)
    with h5py.File(tmp_path / "memory.h5") as a, h5py.File(tmp_path / "streamed.h5") as b:
        np.testing.assert_allclose(b["coef"][:], a["coef"][:], rtol=1e-7, atol=1e-12)
