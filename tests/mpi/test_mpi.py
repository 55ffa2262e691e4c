"""Multi-rank behaviour under real ``mpiexec``, P = 1..4 on 1009 rows (no P > 1 divides it)."""

import time

import numpy as np
import pytest
from conftest import EPSILON, POWER, ROOT, random_problem, reference_objective, run_mpi, write_h5

from mpigd import load_model

M, N, L2, TOL = 1009, 7, 1e-2, 1e-10
RANKS = [1, 2, 3, 4]
KINDS = ["linear", "logistic", "poisson", "gamma", "tweedie", "huber", "svm"]
#: How the worker is told each model (with its loss's parameter).
SPECS = {
    **{kind: kind for kind in KINDS},
    "tweedie": f"tweedie:{POWER}",
    "huber": f"huber:{EPSILON}",
}
WORKER = ROOT / "tests" / "mpi" / "mpi_worker.py"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("mpi")


@pytest.fixture(scope="module")
def problems(folder):
    out = {}
    for kind in KINDS:
        X, y = random_problem(kind, M, N, seed=11)
        out[kind] = (write_h5(folder / f"{kind}.h5", X, y), X, y)
    return out


@pytest.fixture(scope="module")
def run(problems, folder):
    """run(kind, P) -> arrays saved by mpi_worker.py; every kind at P in one launch."""
    cache = {}

    def get(kind, ranks):
        if (kind, ranks) not in cache:
            outs = {name: folder / f"{name}-{ranks}.npz" for name in KINDS}
            args = [arg for name in KINDS for arg in (problems[name][0], outs[name], SPECS[name])]
            proc = run_mpi(ranks, WORKER, L2, TOL, *args)
            assert proc.returncode == 0, proc.stderr
            cache.update({(name, ranks): dict(np.load(outs[name])) for name in KINDS})
        return cache[kind, ranks]

    return get


def bitwise_equal_rows(a):
    a = np.ascontiguousarray(a)
    return all(row.tobytes() == a[0].tobytes() for row in a)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ranks", RANKS)
def test_distributed_gradient_equals_the_serial_one(run, problems, kind, ranks):
    result = run(kind, ranks)
    _, X, y = problems[kind]
    theta = 0.3 * np.random.default_rng(7).standard_normal(N + 1)
    loss, grad = reference_objective(kind, X, y, theta, L2)
    assert list(result["rows"]) == [M // ranks + (r < M % ranks) for r in range(ranks)]
    assert abs(result["loss"][0] - loss) <= 1e-12 * abs(loss)
    assert np.abs(result["grad"][0] - grad).max() <= 1e-12 * np.abs(grad).max()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ranks", RANKS)
def test_every_rank_holds_bit_identical_values(run, kind, ranks):
    result = run(kind, ranks)
    assert bitwise_equal_rows(result["grad"])
    assert bitwise_equal_rows(result["theta"])
    assert bitwise_equal_rows(result["history"])  # the same loss at every iteration
    assert result["converged"].all()


@pytest.mark.parametrize("kind", KINDS)
def test_rank_count_does_not_change_the_solution(run, kind):
    serial = run(kind, 1)["theta"][0]
    for ranks in RANKS[1:]:
        theta = run(kind, ranks)["theta"][0]
        assert np.abs(theta - serial).max() <= 1e-10 * np.abs(serial).max(), ranks


def test_linear_matches_the_exact_ridge_solution(run, problems):
    _, X, y = problems["linear"]
    A = np.hstack([X, np.ones((M, 1))])
    penalty = np.diag([L2] * N + [0.0])  # the intercept is not penalised
    exact = np.linalg.solve(A.T @ A / M + penalty, A.T @ y / M)
    np.testing.assert_allclose(run("linear", 3)["theta"][0], exact, rtol=1e-8, atol=1e-10)


def test_logistic_matches_scikit_learn(run, problems):
    from sklearn.linear_model import LogisticRegression

    _, X, y = problems["logistic"]
    # sklearn minimises C * sum_i loss_i + ||w||^2 / 2, which is ours times C * m
    reference = LogisticRegression(C=1 / (L2 * M), tol=1e-12, max_iter=10_000).fit(X, y)
    expected = np.append(reference.coef_[0], reference.intercept_)
    np.testing.assert_allclose(run("logistic", 3)["theta"][0], expected, rtol=1e-6, atol=1e-8)


FAMILY = ["poisson", "gamma", "tweedie", "huber", "svm"]


def reference_minimum(kind, X, y):
    """The minimum of the README's objective by scipy's L-BFGS-B, from the same data."""
    from scipy.optimize import minimize

    def f(theta):
        return reference_objective(kind, X, y, theta, L2)

    found = minimize(f, np.zeros(N + 1), jac=True, method="L-BFGS-B",
                     options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000})  # fmt: skip
    return found.fun


@pytest.mark.parametrize("kind", FAMILY)
def test_the_family_reaches_the_reference_solvers_minimum(run, problems, kind):
    _, X, y = problems[kind]
    best = reference_minimum(kind, X, y)
    for ranks in (1, 2, 3):
        theta = run(kind, ranks)["theta"][0]
        reached, _ = reference_objective(kind, X, y, theta, L2)
        assert reached - best <= 1e-6 * abs(best), ranks


SCIKIT_LEARN = {"poisson": ("PoissonRegressor", {}), "gamma": ("GammaRegressor", {}),
                "tweedie": ("TweedieRegressor", {"power": POWER, "link": "log"})}  # fmt: skip


@pytest.mark.parametrize("kind", SCIKIT_LEARN)
def test_log_link_models_equal_scikit_learns(run, problems, kind):
    import sklearn.linear_model

    # scikit-learn minimises half the mean deviance + (alpha / 2) ||w||^2: our objective
    # up to a constant in y alone, with alpha = l2.
    _, X, y = problems[kind]
    name, extra = SCIKIT_LEARN[kind]
    estimator = getattr(sklearn.linear_model, name)(alpha=L2, tol=1e-12, max_iter=10_000, **extra)
    estimator.fit(X, y)
    theirs = np.append(estimator.coef_, estimator.intercept_)
    ours = run(kind, 2)["theta"][0]
    f_ours, _ = reference_objective(kind, X, y, ours, L2)
    f_theirs, _ = reference_objective(kind, X, y, theirs, L2)
    assert abs(f_ours - f_theirs) <= 1e-6 * abs(f_theirs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_more_ranks_than_rows(folder):
    X, y = random_problem("logistic", 3, 2, seed=5)
    data = write_h5(folder / "tiny.h5", X, y)
    proc = run_mpi(4, WORKER, 0.5, 1e-10, data, folder / "tiny.npz", "logistic")
    assert proc.returncode == 0, proc.stderr
    result = dict(np.load(folder / "tiny.npz"))
    assert list(result["rows"]) == [1, 1, 1, 0]
    theta = 0.3 * np.random.default_rng(7).standard_normal(3)
    _, grad = reference_objective("logistic", X, y, theta, 0.5)
    np.testing.assert_allclose(result["grad"][0], grad, rtol=1e-12)
    assert bitwise_equal_rows(result["theta"]) and result["converged"].all()


def test_command_line_training_writes_one_model_and_reports_once(run, problems, folder):
    out = folder / "cli-model.h5"
    proc = run_mpi(
        3,
        "-m",
        "mpigd",
        "train",
        problems["logistic"][0],
        "--model",
        "logistic",
        "--l2",
        L2,
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("converged:") == 1 and proc.stdout.count("model written") == 1
    model = load_model(out)
    assert model.kind == "logistic" and model.coef.shape == (N,)
    assert model.info["ranks"] == 3 and model.info["n_rows"] == M
    assert model.info["converged"] and model.info["allreduces"] == model.info["function_evals"]
    for key in ("time_read", "time_compute", "time_allreduce", "time_total"):
        assert model.info[key] >= 0
    assert not list(folder.glob(".cli-model.h5.*"))  # no temporary file left behind
    # the same objective as the worker's, stopped at the default tol of 1e-6
    theta = run("logistic", 3)["theta"][0]
    np.testing.assert_allclose(np.append(model.coef, model.intercept), theta, atol=1e-5)


def failing_run(ranks, *args):
    start = time.monotonic()
    proc = run_mpi(ranks, *args, timeout=60)
    return proc, time.monotonic() - start


def test_missing_dataset_stops_every_rank_with_one_message(problems):
    proc, seconds = failing_run(
        3,
        "-m",
        "mpigd",
        "train",
        problems["linear"][0],
        "--model",
        "linear",
        "--y-key",
        "target",
        "--out",
        "/tmp/never.h5",
    )
    assert proc.returncode != 0 and seconds < 30
    assert proc.stderr.count("mpigd: error:") == 1
    assert "no dataset 'target' (the file has: X, y)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_labels_in_one_ranks_rows_are_agreed_and_named(problems, folder):
    _, X, y = problems["logistic"]
    y = y.copy()
    y[-1] = 2.0  # only the last rank reads this row
    data = write_h5(folder / "bad-labels.h5", X, y)
    proc, seconds = failing_run(
        3, "-m", "mpigd", "train", data, "--model", "logistic", "--out", folder / "never.h5"
    )
    assert proc.returncode != 0 and seconds < 30
    assert proc.stderr.count("mpigd: error:") == 1
    expected = "labels must be 0 or 1 (any two values: --labels auto); found 1 other values"
    assert f"{expected} (e.g. 2) in rows 1008:1009 (on rank 2)" in proc.stderr
    assert not (folder / "never.h5").exists()


def test_unexpected_failure_on_one_rank_aborts_the_job():
    proc, seconds = failing_run(3, ROOT / "tests" / "mpi" / "mpi_crash.py")
    assert proc.returncode != 0 and seconds < 30
    assert "internal error on rank 1: RuntimeError: simulated failure" in proc.stderr
