"""Sparse X (a CSR group) in the numbers: the CSR sums against the dense ones; training,
scoring and predicting under mpiexec against dense data and scikit-learn; a rank's memory;
data info and split on CSR. Reading, checking and converting CSR files are in
test_sparse_files.py."""

import json

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    reference_objective,
    run_mpi,
    run_mpi_commands,
    sparse_problem,
    write_csr,
    write_h5,
)
from mpi4py import MPI

from mpigd import load_model
from mpigd.io.dataset import inspect_dataset, read_block
from mpigd.kernels import dense, for_rows, sparse
from mpigd.kernels.losses import make_loss
from mpigd.objective import Objective
from mpigd.scaling import standardization

M, N = 1009, 40


# ------------------------------------------------------------------ sums and passes


@pytest.mark.parametrize("kind", ["linear", "logistic", "softmax"])
@pytest.mark.parametrize("weighted", [False, True])
def test_csr_sums_equal_the_dense_ones(kind, weighted):
    X, y = sparse_problem(kind, 300, 25, seed=5)
    loss = make_loss(kind, 3)
    rng = np.random.default_rng(6)
    theta = rng.standard_normal((25 + 1) * loss.n_outputs)
    weights = rng.random(300) if weighted else None
    assert for_rows(X) is sparse and for_rows(X.toarray()) is dense
    f_s, g_s = sparse.local_sums(X, y, theta, loss, weights=weights)
    f_d, g_d = dense.local_sums(X.toarray(), y, theta, loss, weights=weights)
    assert f_s == pytest.approx(f_d, rel=1e-12)
    np.testing.assert_allclose(g_s, g_d, rtol=1e-12, atol=1e-12 * np.abs(g_d).max())
    if kind != "softmax":
        v = rng.standard_normal(26)
        np.testing.assert_allclose(
            sparse.local_hessian(X, y, theta, loss, weights=weights),
            dense.local_hessian(X.toarray(), y, theta, loss, weights=weights),
            rtol=1e-12,
            atol=1e-12,
        )
        np.testing.assert_allclose(
            sparse.local_hessp(X, y, theta, v, loss, weights=weights),
            dense.local_hessp(X.toarray(), y, theta, v, loss, weights=weights),
            rtol=1e-12,
            atol=1e-12,
        )


def test_standardised_objective_on_csr_equals_the_dense_one():
    X, y = sparse_problem("logistic", 400, 30, seed=7)
    comm = MPI.COMM_SELF
    shift = X[0].toarray().ravel()
    scaled_s = standardization(comm, X, shift)
    scaled_d = standardization(comm, X.toarray(), shift)
    np.testing.assert_allclose(scaled_s.mean, scaled_d.mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(scaled_s.std, scaled_d.std, rtol=1e-12, atol=1e-15)
    theta = np.random.default_rng(8).standard_normal(31)
    for weights in (None, np.random.default_rng(9).random(400)):
        f_s, g_s = Objective(
            comm, X, y, make_loss("logistic"), l2=0.1, weights=weights, scaling=scaled_s
        )(theta)
        f_d, g_d = Objective(
            comm, X.toarray(), y, make_loss("logistic"), l2=0.1, weights=weights, scaling=scaled_d
        )(theta)
        assert f_s == pytest.approx(f_d, rel=1e-12)
        np.testing.assert_allclose(g_s, g_d, rtol=1e-10, atol=1e-13)


# ---------------------------------------------------------------- under mpiexec

RUNS = [
    {"model": "linear", "optimizer": "normal", "l2": 1e-3},
    {"model": "linear", "optimizer": "lbfgs", "l2": 1e-3, "standardize": True, "tol": 1e-10},
    {"model": "logistic", "l2": 1e-3, "tol": 1e-10},
    {"model": "logistic", "optimizer": "newton", "l2": 1e-3, "weight_key": "w", "tol": 1e-10},
    {"model": "logistic", "optimizer": "nesterov", "l1": 1e-3, "l2": 1e-3, "tol": 1e-8},
    {"model": "softmax", "l2": 1e-3, "tol": 1e-10},
    # wide rows: auto picks Newton-CG preconditioned by the Hessian's diagonal on CSR (and
    # L-BFGS on the dense copy), both to the gradient tolerance (the standardised diagonal
    # is checked against the Hessian in tests/kernels/test_curvature_diagonal.py)
    {"file": "wide", "model": "logistic", "l2": 1e-3, "tol": 1e-10, "ftol": 0},
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sparse")
    out = {}
    for kind, n, density in (
        ("linear", N, 0.1),
        ("logistic", N, 0.1),
        ("softmax", N, 0.1),
        ("wide", 2100, 0.005),
    ):
        X, y = sparse_problem("logistic" if kind == "wide" else kind, M, n, density, seed=10)
        w = np.random.default_rng(11).random(M)
        out[kind] = (
            write_csr(folder / f"{kind}-csr.h5", X, y),
            write_h5(folder / f"{kind}-dense.h5", X.toarray(), y, w=w),
            X,
            y,
        )
        with h5py.File(out[kind][0], "a") as f:
            f["w"] = w
    return folder, out


def fit_all(folder, files, ranks, layout):
    spec = [
        {
            "name": f"run{i}",
            "data": str(files[run.get("file", run["model"])][0 if layout == "csr" else 1]),
            **{key: value for key, value in run.items() if key != "file"},
        }
        for i, run in enumerate(RUNS)
    ]
    (folder / "spec.json").write_text(json.dumps(spec))
    out = folder / f"{layout}-{ranks}.npz"
    proc = run_mpi(ranks, "tests/mpi/mpi_fit.py", folder / "spec.json", out)
    assert proc.returncode == 0, proc.stderr
    return dict(np.load(out))


@pytest.mark.slow
def test_sparse_training_equals_dense_at_every_rank_count(files):
    folder, data = files
    dense_fit = fit_all(folder, data, 1, "dense")
    for ranks in (1, 2, 3, 4):
        fitted = fit_all(folder, data, ranks, "csr")
        for i, run in enumerate(RUNS):
            thetas = fitted[f"run{i}/theta"]
            assert all(row.tobytes() == thetas[0].tobytes() for row in thetas), run
            np.testing.assert_allclose(
                thetas[0], dense_fit[f"run{i}/theta"][0], rtol=1e-6, atol=1e-7, err_msg=str(run)
            )
            assert fitted[f"run{i}/converged"], run


def test_sparse_logistic_reaches_scikit_learns_objective(files, tmp_path):
    from sklearn.linear_model import LogisticRegression

    path, _, X, y = files[1]["logistic"]
    l2 = 1e-3
    proc = run_mpi(
        2,
        "-m",
        "mpigd",
        "train",
        path,
        "--model",
        "logistic",
        "--l2",
        l2,
        "--tol",
        "1e-9",
        "--out",
        tmp_path / "m.h5",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    ours = load_model(tmp_path / "m.h5")
    sk = LogisticRegression(C=1 / (l2 * M), tol=1e-12, max_iter=10_000).fit(X, y)
    theirs = np.append(sk.coef_.ravel(), sk.intercept_)
    mine = np.append(ours.coef, ours.intercept)
    f_ours = reference_objective("logistic", X.toarray(), y, mine, l2)[0]
    f_theirs = reference_objective("logistic", X.toarray(), y, theirs, l2)[0]
    assert f_ours <= f_theirs * (1 + 1e-6)


@pytest.mark.slow
def test_sparse_evaluation_and_predictions_do_not_depend_on_the_rank_count(files, tmp_path):
    path = files[1]["softmax"][0]
    model = tmp_path / "m.h5"
    assert (
        run_mpi(
            3,
            "-m",
            "mpigd",
            "train",
            path,
            "--model",
            "softmax",
            "--l2",
            "1e-3",
            "--out",
            model,
            "--quiet",
        ).returncode
        == 0
    )
    outputs = []
    for ranks in (1, 2, 3, 4):  # predict and evaluate in one job per rank count
        out, scores = tmp_path / f"p{ranks}.h5", tmp_path / f"s{ranks}.json"
        commands = [
            ["predict", model, path, "--out", out, "--quiet"],
            ["evaluate", model, path, "--json", scores, "--quiet"],
        ]
        proc = run_mpi_commands(ranks, commands, tmp_path / f"commands-{ranks}.json")
        assert proc.returncode == 0, proc.stderr
        outputs.append(out.read_bytes())
    assert all(o == outputs[0] for o in outputs)
    values = [json.loads((tmp_path / f"s{r}.json").read_text()) for r in (1, 2, 3, 4)]
    assert all(v["accuracy"] == values[0]["accuracy"] for v in values)
    X, y = files[1]["softmax"][2:]
    assert values[0]["accuracy"] == pytest.approx(np.mean(load_model(model).predict(X) == y))


# ------------------------------------------------------------ memory under mpiexec


@pytest.mark.slow
def test_a_terabyte_of_dense_data_trains_in_well_under_a_gigabyte_per_rank(tmp_path):
    """200,000 x 1,000,000 with 20 values a row: 1.6 TB dense, 48 MB as CSR."""
    m, n, per_row = 200_000, 1_000_000, 20
    rng = np.random.default_rng(15)
    X = random_csr(rng, m, n, per_row)
    y = (rng.random(m) < 0.5).astype(np.float64)
    path = write_csr(tmp_path / "wide.h5", X, y)
    spec = [{"name": "wide", "data": str(path), "model": "logistic", "l2": 1e-4, "max_iter": 15}]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = run_mpi(2, "tests/mpi/mpi_fit.py", tmp_path / "spec.json", tmp_path / "out.npz")
    assert proc.returncode == 0, proc.stderr
    peaks = np.load(tmp_path / "out.npz")["wide/peak_rss"]
    assert len(peaks) == 2 and peaks.max() < 2**30, peaks


def random_csr(rng, m, n, per_row, index_dtype=np.int64):
    """(m, n) CSR with ``per_row`` normal values a row in distinct, sorted columns."""
    indices = np.sort(rng.integers(0, n, (m, per_row)), axis=1)
    indices[:, 1:] += np.cumsum(indices[:, 1:] == indices[:, :-1], axis=1)
    indices = np.minimum(indices, n - 1 - np.arange(per_row)[::-1]).astype(index_dtype)
    values = rng.standard_normal(m * per_row)
    return sp.csr_matrix(
        (values, indices.ravel(), np.arange(0, m * per_row + 1, per_row)), shape=(m, n)
    )


@pytest.mark.slow
def test_peak_memory_is_within_two_and_a_half_times_the_ranks_share_of_the_csr_arrays(
    tmp_path,
):
    """Beyond the interpreter and libraries, a rank's peak is at most 2.5x its share of
    data + indices + indptr plus the optimiser's state (L-BFGS: 2 x 10 vectors of n + 1,
    and a dozen more for theta, gradients, the reduction buffer and the search)."""
    m, n, per_row, ranks, memory = 600_000, 65_536, 20, 2, 10
    rng = np.random.default_rng(16)
    X = random_csr(rng, m, n, per_row, np.int32)
    y = (rng.random(m) < 0.5).astype(np.float64)
    path = write_csr(tmp_path / "tall.h5", X, y)
    spec = [{"name": "tall", "data": str(path), "model": "logistic", "l2": 1e-4, "max_iter": 10}]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = run_mpi(ranks, "tests/mpi/mpi_fit.py", tmp_path / "spec.json", tmp_path / "out.npz")
    assert proc.returncode == 0, proc.stderr
    saved = np.load(tmp_path / "out.npz")
    grown = saved["tall/peak_rss"] - saved["tall/baseline_rss"]
    share = X.nnz / ranks * (X.data.itemsize + X.indices.itemsize) + (m / ranks + 1) * 8
    optimiser = (2 * memory + 12) * (n + 1) * 8
    assert len(grown) == ranks and (grown <= 2.5 * share + optimiser).all(), (
        grown / share,
        share,
        optimiser,
    )


@pytest.mark.slow
def test_data_info_on_csr_equals_the_dense_statistics(files, tmp_path):
    original, dense_path, X, _ = files[1]["logistic"]
    csr_path = tmp_path / "nan.h5"
    csr_path.write_bytes(original.read_bytes())
    with h5py.File(csr_path, "a") as f:  # a NaN is counted, not an error, in info
        data = f["X/data"][:]
        data[-1] = np.nan
        del f["X/data"]
        f["X/data"] = data
    summaries = []
    for path, ranks in ((csr_path, 3), (csr_path, 1), (dense_path, 2)):
        out = tmp_path / f"{ranks}-{path.stem}.json"
        proc = run_mpi(ranks, "-m", "mpigd", "data", "info", path, "--json", out, "--quiet")
        assert proc.returncode == 0, proc.stderr
        summaries.append(json.loads(out.read_text()))
    sparse_3, sparse_1, dense_2 = summaries
    assert sparse_3["sparse"] == sparse_1["sparse"]
    assert sparse_3["sparse"]["nnz"] == X.nnz
    assert sparse_3["sparse"]["values_per_feature"] == X.getnnz(axis=0).tolist()
    assert sparse_3["feature_stats"]["non_finite"][X.indices[-1]] == 1
    for key in ("min", "max"):
        stored = [v for j, v in enumerate(dense_2["feature_stats"][key]) if j != X.indices[-1]]
        ours = [v for j, v in enumerate(sparse_3["feature_stats"][key]) if j != X.indices[-1]]
        assert ours == stored
    assert sparse_3["classes"] == dense_2["classes"]


def test_split_moves_csr_rows_with_their_values_and_labels(files, tmp_path):
    from mpigd.io.split import split

    path, _, X, y = files[1]["linear"]
    train, test = tmp_path / "train.h5", tmp_path / "test.h5"
    counts = split(path, train, test, test_fraction=0.3, seed=2)
    assert counts == (M - int(np.ceil(0.3 * M)), int(np.ceil(0.3 * M)))
    parts = [read_block(inspect_dataset(p, weight_key="w"), 0, 1) for p in (train, test)]
    assert all(part.info.csr is not None for part in parts)

    def rows(X, y, w):
        dense = X.toarray()
        return sorted(tuple(np.append(dense[i], [y[i], w[i]])) for i in range(X.shape[0]))

    with h5py.File(path) as f:
        w = f["w"][:]
    joined = rows(parts[0].X, parts[0].y, parts[0].weights) + rows(
        parts[1].X, parts[1].y, parts[1].weights
    )
    assert sorted(joined) == rows(X, y, w)
    first = parts[1].X.toarray()[0]
    assert not np.array_equal(first, X.toarray()[0])  # shuffled (this seed moves row 0)
