"""Rows streamed from disk (mpigd.io.stream): the blocks are the file's rows, every
evaluation over them equals the one over the same rows in memory, and a read that fails
mid-pass or a budget too small for one block is one clear error. In-process (one rank);
tests/mpi/test_mpi.py runs streaming under mpiexec."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import random_problem, sparse_problem, write_csr, write_h5
from mpi4py import MPI

from mpigd.errors import MpigdError
from mpigd.io.budget import STREAM_ENV, block_bytes
from mpigd.io.dataset import inspect_dataset, rank_range, read_block
from mpigd.io.stream import StreamedRows, chunks, read_streamed
from mpigd.kernels import compiled
from mpigd.kernels.losses import make_loss
from mpigd.objective import Objective
from mpigd.partition import SWEEP_ROWS
from mpigd.scaling import standardization


def _files(tmp_path):
    """Dense float64 (contiguous: read with preadv), float32 chunked (through h5py),
    integer (converted by HDF5) and CSR files of the same rows, with weights."""
    X, y = random_problem("logistic", 1001, 9, seed=3)
    w = np.random.default_rng(4).random(len(y))
    paths = {"f64": write_h5(tmp_path / "f64.h5", X, y, w=w)}
    with h5py.File(tmp_path / "f32.h5", "w") as f:
        f.create_dataset("X", data=X.astype(np.float32), chunks=(37, 9))
        f["y"], f["w"] = y, w
    paths["f32"] = tmp_path / "f32.h5"
    paths["int"] = write_h5(tmp_path / "int.h5", np.round(4 * X).astype(np.int16), y, w=w)
    Xs, ys = sparse_problem("logistic", 1001, 40, seed=5)
    paths["csr"] = write_csr(tmp_path / "csr.h5", Xs, ys)
    with h5py.File(paths["csr"], "a") as f:
        f["w"] = w
    return paths


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return _files(tmp_path_factory.mktemp("stream"))


def _dense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


@pytest.mark.parametrize("kind", ["f64", "f32", "int", "csr"])
@pytest.mark.parametrize("rank", [0, 2])
def test_blocks_are_the_rows_read_in_memory(files, kind, rank):
    info = inspect_dataset(files[kind], weight_key="w")
    held = read_block(info, rank, 3)
    streamed = read_streamed(info, *rank_range(info, rank, 3), block=700)  # a few rows a block
    assert (streamed.start, streamed.stop) == (held.start, held.stop)
    np.testing.assert_array_equal(streamed.y, held.y)
    np.testing.assert_array_equal(streamed.weights, held.weights)
    blocks = [(rows, _dense(X_b).copy()) for rows, X_b in chunks(streamed.X)]
    assert len(blocks) > 3
    assert [rows.start for rows, _ in blocks] == sorted({rows.start for rows, _ in blocks})
    for rows, X_b in blocks:
        assert X_b.dtype == _dense(held.X).dtype
        np.testing.assert_array_equal(X_b, _dense(held.X)[rows])
    assert streamed.X.passes == 2  # the checking pass, and this one
    assert streamed.X.bytes_read == 2 * streamed.X.pass_bytes


def _objectives(info, loss, block, *, weighted, standardize):
    """The same rows, in memory and streamed in blocks of ``block`` bytes."""
    comm = MPI.COMM_SELF
    out = []
    for local in (read_block(info, 0, 1), read_streamed(info, 0, info.n_rows, block)):
        weights = local.weights if weighted else None
        scaling = None
        if standardize:
            scaling = standardization(comm, local.X, np.zeros(info.n_features))
        objective = Objective(
            comm, local.X, local.y, loss, l2=0.1, weights=weights, scaling=scaling
        )
        out.append(objective)
    return out


@pytest.mark.parametrize("kind", ["f64", "f32", "csr"])
@pytest.mark.parametrize("weighted", [False, True])
def test_every_evaluation_equals_the_in_memory_one(files, kind, weighted):
    info = inspect_dataset(files[kind], weight_key="w")
    held, streamed = _objectives(
        info, make_loss("logistic"), 900, weighted=weighted, standardize=kind != "csr"
    )
    theta = np.random.default_rng(0).standard_normal(held.size) * 0.3
    v = np.random.default_rng(1).standard_normal(held.size)
    f0, g0 = held(theta)
    f1, g1 = streamed(theta)
    assert f1 == pytest.approx(f0, rel=1e-13)
    close = {"rtol": 1e-12, "atol": 1e-14}
    np.testing.assert_allclose(g1, g0, **close)
    np.testing.assert_allclose(streamed.hessp(theta, v), held.hessp(theta, v), **close)
    np.testing.assert_allclose(streamed.hess_diagonal(theta), held.hess_diagonal(theta), **close)
    np.testing.assert_allclose(streamed.hessian(theta)[2], held.hessian(theta)[2], **close)
    assert streamed.X_local.passes > 1 and held.n_evals == streamed.n_evals


@pytest.mark.skipif(compiled.name() != "compiled", reason="the NumPy kernels' sums follow BLAS")
@pytest.mark.parametrize("kind", ["f64", "f32", "csr"])
@pytest.mark.parametrize("weighted", [False, True])
def test_streamed_sums_are_the_in_memory_bits(files, kind, weighted):
    """Blocks of whole multiples of SWEEP_ROWS rows (here 4 to 6 blocks, the last one
    short): the compiled sweep continues one block's sums with the next, so the loss and
    gradient are those of one sweep over the rows in memory, bit for bit."""
    info = inspect_dataset(files[kind], weight_key="w")
    row_bytes = 4 * 9 if kind == "f32" else 8 * 9
    block = 3 * SWEEP_ROWS * row_bytes + row_bytes // 2  # not a multiple of the rows
    if kind == "csr":
        block = 2 * 12 * SWEEP_ROWS * 9  # about two sweeps' blocks of values
    held, streamed = _objectives(
        info, make_loss("logistic"), block, weighted=weighted, standardize=False
    )
    _assert_same_bits(held, streamed)


def _assert_same_bits(held, streamed):
    bounds = streamed.X_local.bounds
    assert len(bounds) > 3 and all(lo % SWEEP_ROWS == 0 for lo, _ in bounds)
    theta = np.random.default_rng(0).standard_normal(held.size) * 0.3
    (f0, g0), (f1, g1) = held(theta), streamed(theta)
    assert f1 == f0
    np.testing.assert_array_equal(g1, g0)


@pytest.mark.skipif(compiled.name() != "compiled", reason="the NumPy kernels' sums follow BLAS")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_streamed_blocks_of_whole_column_sum_blocks_standardise_to_the_same_bits(tmp_path, dtype):
    """Standardisation's mean and spread are column sums over float64 blocks of about 2
    MiB (here 384 rows of 600 features); streamed in blocks of two of them, the scaling,
    and so every evaluation, has the in-memory bits."""
    X, y = random_problem("logistic", 3000, 600, seed=8)
    info = inspect_dataset(write_h5(tmp_path / "wide.h5", X.astype(dtype), y))
    block = 2 * 384 * 600 * np.dtype(dtype).itemsize + 100
    held, streamed = _objectives(
        info, make_loss("logistic"), block, weighted=False, standardize=True
    )
    np.testing.assert_array_equal(streamed.scaling.mean, held.scaling.mean)
    np.testing.assert_array_equal(streamed.scaling.std, held.scaling.std)
    _assert_same_bits(held, streamed)


def test_softmax_streamed_equals_in_memory(tmp_path):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((500, 6))
    y = rng.integers(0, 4, 500).astype(np.float64)
    info = inspect_dataset(write_h5(tmp_path / "k.h5", X, y))
    loss = make_loss("softmax", 4)
    held, streamed = _objectives(info, loss, 300, weighted=False, standardize=True)
    theta = rng.standard_normal(held.size)
    f0, g0 = held(theta)
    f1, g1 = streamed(theta)
    assert f1 == pytest.approx(f0, rel=1e-13)
    np.testing.assert_allclose(g1, g0, rtol=1e-12, atol=1e-14)


def test_a_read_that_fails_mid_pass_names_the_rows(files, tmp_path):
    path = tmp_path / "cut.h5"
    path.write_bytes(files["f64"].read_bytes())
    info = inspect_dataset(path)
    X = StreamedRows(info, 0, info.n_rows, 8 * 9 * 50)
    blocks = X.blocks()
    assert next(blocks)[1].shape == (50, 9)  # a pass that starts well
    os.truncate(path, os.path.getsize(path) // 2)  # the file cut under the running pass
    with pytest.raises(MpigdError, match=r"reading rows \d+:\d+ of .*cut\.h5 failed: .*early"):
        for _ in blocks:
            pass
    with pytest.raises(MpigdError, match=r"opening .*cut\.h5 for a pass over its rows failed"):
        next(X.blocks())  # the next pass


def test_a_csr_pass_reads_each_region_through_its_own_descriptor(files, monkeypatch):
    """Values and column indices lie in two regions of the file: one descriptor each, so
    that the kernel reads ahead in both; an open that fails leaves nothing open."""
    from mpigd.io import stream

    info = inspect_dataset(files["csr"])
    rows = StreamedRows(info, 0, info.n_rows, 400)
    read_by = {}
    real_preadv = os.preadv

    def spy(fd, buffers, offset):
        read_by.setdefault(fd, []).append(offset)
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(stream.os, "preadv", spy)
    with stream._Source(rows) as source:
        assert len(source.fds) == 2
        for lo, hi in rows.bounds:
            source.fill(rows, stream._buffers(rows), lo, hi)
    assert sorted(read_by) == sorted(source.fds)
    offsets = list(read_by.values())
    assert max(offsets[0]) < min(offsets[1]) or max(offsets[1]) < min(offsets[0])  # apart
    monkeypatch.undo()
    opened, real_open = [], os.open

    def second_open_fails(path, flags):
        if opened:
            raise OSError(24, "Too many open files")
        opened.append(real_open(path, flags))
        return opened[-1]

    monkeypatch.setattr(stream.os, "open", second_open_fails)
    with pytest.raises(OSError, match="Too many open files"):
        stream._Source(rows)
    with pytest.raises(OSError):  # closed by the failed open's clean-up
        os.fstat(opened[0])


def test_an_objective_pass_that_fails_is_an_error_not_a_hang(files, tmp_path):
    path = tmp_path / "gone.h5"
    path.write_bytes(files["csr"].read_bytes())
    info = inspect_dataset(path)
    local = read_streamed(info, 0, info.n_rows, 400)
    objective = Objective(MPI.COMM_SELF, local.X, local.y, make_loss("logistic"))
    objective(np.zeros(objective.size))
    os.remove(path)
    with pytest.raises(MpigdError, match=r"gone\.h5"):
        objective(np.ones(objective.size))


def test_a_budget_below_one_block_is_refused(files):
    info = inspect_dataset(files["f64"])
    assert block_bytes(info, 64 << 20, 10 << 20) > 1 << 16
    with pytest.raises(MpigdError, match=r"too little to stream .*f64\.h5.*--memory"):
        block_bytes(info, 20 << 20, 19 << 20)


@pytest.mark.parametrize("kind", ["f64", "csr"])
def test_evaluate_and_predict_stream_to_the_same_bits(files, kind, tmp_path, monkeypatch):
    from mpigd import fit
    from mpigd.evaluation.scoring import evaluate, predict

    model = fit(files[kind], "logistic", l2=0.1).model
    outputs = {}
    for how in ("memory", "streamed"):
        if how == "streamed":
            monkeypatch.setenv(STREAM_ENV, "5K")
        scores = evaluate(files[kind], model)
        predict(files[kind], model, tmp_path / f"{how}.h5")
        with h5py.File(tmp_path / f"{how}.h5") as f:
            outputs[how] = (scores, f["probability"][:])
    assert outputs["streamed"][0] == outputs["memory"][0]
    np.testing.assert_array_equal(outputs["streamed"][1], outputs["memory"][1])


@pytest.mark.filterwarnings("ignore:not converged")  # stopped by max_iter, as meant
def test_a_streamed_run_resumes_from_its_checkpoint_bit_for_bit(files, tmp_path, monkeypatch):
    from mpigd import fit

    monkeypatch.setenv(STREAM_ENV, "3K")
    options = {"optimizer": "lbfgs", "l2": 1e-3, "tol": 1e-10, "ftol": 0.0, "max_iter": 12}
    whole = fit(files["csr"], "logistic", **options)
    assert whole.model.info["streamed"] and whole.model.info["passes"] > 12
    first = dict(options, max_iter=5)
    checkpoint = tmp_path / "ck.h5"
    fit(files["csr"], "logistic", checkpoint=checkpoint, checkpoint_every=1, **first)
    resumed = fit(files["csr"], "logistic", resume=checkpoint, **options)
    np.testing.assert_array_equal(resumed.model.coef, whole.model.coef)
    assert resumed.result.nit == whole.result.nit


def test_chunks_of_whole_rows_are_read_straight_from_the_file(tmp_path):
    from mpigd.io.outputs import create_rows_dataset

    X, y = random_problem("linear", 5000, 70, seed=8)
    with h5py.File(tmp_path / "made.h5", "w") as f:
        X_out = create_rows_dataset(f, "X", X.shape, np.float64)
        assert X_out.chunks[0] < len(X)  # several chunks of whole rows
        for first in reversed(range(0, len(X), 999)):  # the chunks out of row order
            X_out[first : first + 999] = X[first : first + 999]
        f["y"] = y
    info = inspect_dataset(tmp_path / "made.h5")
    rows = StreamedRows(info, 11, 4990, 50_000)
    layout = rows.raw_offsets[0]
    assert layout is not None  # bytes straight from the file, no h5py
    assert 1 < len(layout.spans(11, 4990)) <= len(layout.offsets)
    got = np.vstack([X_b.copy() for _, X_b in chunks(rows)])
    np.testing.assert_array_equal(got, X[11:4990])


def test_bench_run_times_streamed_evaluations(files, monkeypatch):
    from mpigd.bench.measure import measure

    held = measure(MPI.COMM_WORLD, files["csr"], evals=2, warmup=1, repeats=1)
    monkeypatch.setenv(STREAM_ENV, "4K")
    streamed = measure(MPI.COMM_WORLD, files["csr"], evals=2, warmup=1, repeats=1)
    assert (held["streamed"], streamed["streamed"]) == (False, True)
    assert streamed["x_bytes"] > 0 and streamed["eval_median"] > 0
