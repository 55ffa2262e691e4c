"""Every optimiser under real mpiexec at P = 1, 2, 3 against trusted references.

All the runs at one rank count, every test's, are one mpiexec launch (:func:`fits`)."""

import json

import h5py
import numpy as np
import pytest
from conftest import ROOT, random_problem, reference_objective, run_mpi, write_h5
from scipy.optimize import minimize

from mpigd.model import load_model

# Thousands of iterations at three rank counts; the quick check has the known minima.
pytestmark = pytest.mark.slow

RANKS = [1, 2, 3]
PROBLEMS = ["flights", "scaled"]
ITERATIVE = ["gd", "nesterov", "lbfgs", "newton", "sgd"]
#: Relative objective gap every optimiser must close. Plain SGD cannot get to 1e-6 in a
#: sensible number of epochs: its gradient noise leaves a floor (about 1e-4 on the
#: flights data after 20 epochs), so it is held to 1e-3. And on badly scaled features
#: no single step size suits SGD, so there it trains with --standardize, as a user
#: would, and is compared with the optimum of the standardised problem.
GAP = {"sgd": 1e-3}
DEFAULT_GAP = 1e-6
STANDARDIZED = {("scaled", "sgd")}
#: 3,001 rows make 3 batches of the default 1,024 an epoch: smaller batches, more epochs.
SGD_ON_SMALL_DATA = {("scaled", "sgd"): {"batch_size": 32, "max_iter": 50}}
FLIGHTS = ROOT / "data" / "flights.h5"
#: The deterministic optimisers train on every tenth row of the flights data: real data
#: all the same, with its scales and correlations, in a tenth of the time. SGD trains on
#: all of it, as its noise floor (GAP) depends on the number of batches an epoch.
TENTH = slice(None, None, 10)
WHOLE = {("flights", "sgd")}


def source(problem, optimizer):
    """The key in ``problems`` of the data ``optimizer`` trains on for ``problem``."""
    return f"{problem}-whole" if (problem, optimizer) in WHOLE else problem


def run_fits(ranks, runs, folder, tag):
    spec, out = folder / f"{tag}-{ranks}.json", folder / f"{tag}-{ranks}.npz"
    spec.write_text(json.dumps(runs))
    proc = run_mpi(ranks, ROOT / "tests" / "mpi" / "mpi_fit.py", spec, out, timeout=600)
    assert proc.returncode == 0, proc.stderr
    results = dict(np.load(out))
    return {
        run["name"]: {
            key.split("/")[1]: value
            for key, value in results.items()
            if key.startswith(run["name"] + "/")
        }
        for run in runs
    }


def reference_minimum(kind, X, y, l2):
    """scipy's L-BFGS-B at a tight tolerance on the stated formula."""
    res = minimize(
        lambda t: reference_objective(kind, X, y, t, l2),
        np.zeros(X.shape[1] + 1),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 20_000, "maxcor": 30},
    )
    return res.fun


def bit_identical(thetas):
    return all(row.tobytes() == thetas[0].tobytes() for row in thetas)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("optimizers")


@pytest.fixture(scope="module")
def problems(folder):
    """name -> (path, kind, X, y, l2): the real flights data (a tenth of its rows, and the
    whole for WHOLE) and an ill-conditioned problem."""
    with h5py.File(FLIGHTS) as f:
        X_stored, y_flights = f["X"][()], f["y"][()]  # X as stored: float32
    X_flights = X_stored.astype(np.float64)
    tenth = write_h5(folder / "flights-tenth.h5", X_stored[TENTH], y_flights[TENTH])
    rng = np.random.default_rng(4)
    X = rng.standard_normal((3001, 10)) * np.geomspace(1, 30, 10)  # condition ~ 1e3
    z = X @ (rng.standard_normal(10) / np.geomspace(1, 30, 10)) + 0.2
    y = (rng.random(3001) < 1 / (1 + np.exp(-z))).astype(np.float64)
    return {
        "flights": (tenth, "logistic", X_flights[TENTH], y_flights[TENTH], 1e-4),
        "flights-whole": (FLIGHTS, "logistic", X_flights, y_flights, 1e-4),
        "scaled": (write_h5(folder / "scaled.h5", X, y), "logistic", X, y, 1e-3),
    }


@pytest.fixture(scope="module")
def fits(problems, folder, linear, lasso, prescaled, three_classes, weighted):
    """Every iterative optimiser on both problems, and the runs of the tests below, at
    P = 1, 2, 3: one launch per P."""
    runs = [
        {
            "name": f"{problem}-{optimizer}",
            "data": str(problems[source(problem, optimizer)][0]),
            "model": problems[problem][1],
            "optimizer": optimizer,
            "l2": problems[problem][4],
            "tol": 1e-8,
            "ftol": 0.0,
            "max_iter": {"sgd": 20, "gd": 100_000, "nesterov": 100_000}.get(optimizer, 1000),
            "standardize": (problem, optimizer) in STANDARDIZED,
            **SGD_ON_SMALL_DATA.get((problem, optimizer), {}),
        }
        for problem in PROBLEMS
        for optimizer in ITERATIVE
    ]
    for extra in (linear, lasso, prescaled, three_classes, weighted):
        runs += extra["runs"]
    return {ranks: run_fits(ranks, runs, folder, "all") for ranks in RANKS}


def standardized(X, theta):
    """The standardised features and the raw-scale ``theta`` mapped onto them."""
    mean, std = X.mean(axis=0), X.std(axis=0)
    return (X - mean) / std, np.append(theta[:-1] * std, theta[-1] + mean @ theta[:-1])


@pytest.fixture(scope="module")
def minima(problems):
    out = {}
    for name, (_, kind, X, y, l2) in problems.items():
        out[name] = reference_minimum(kind, X, y, l2)
    for problem, optimizer in STANDARDIZED:
        name = source(problem, optimizer)
        _, kind, X, y, l2 = problems[name]
        out[name, "standardized"] = reference_minimum(
            kind, standardized(X, np.zeros(X.shape[1] + 1))[0], y, l2
        )
    return out


@pytest.mark.parametrize("ranks", RANKS)
@pytest.mark.parametrize("optimizer", ITERATIVE)
@pytest.mark.parametrize("problem", PROBLEMS)
def test_reaches_the_reference_optimum(fits, problems, minima, problem, optimizer, ranks):
    result = fits[ranks][f"{problem}-{optimizer}"]
    _, kind, X, y, l2 = problems[source(problem, optimizer)]
    assert bit_identical(result["theta"])
    theta, best = result["theta"][0], minima[source(problem, optimizer)]
    if (problem, optimizer) in STANDARDIZED:
        X, theta = standardized(X, theta)
        best = minima[source(problem, optimizer), "standardized"]
    loss, _ = reference_objective(kind, X, y, theta, l2)
    gap = (loss - best) / abs(best)
    assert gap <= GAP.get(optimizer, DEFAULT_GAP), gap


def test_sgd_batches_do_not_depend_on_the_rank_count(fits):
    serial = fits[1]["flights-sgd"]["theta"][0]
    for ranks in RANKS[1:]:
        # the same batches; only the order of additions differs
        np.testing.assert_allclose(fits[ranks]["flights-sgd"]["theta"][0], serial, rtol=1e-9)


def test_second_order_methods_need_tens_of_allreduces_not_thousands(fits):
    for ranks in RANKS:
        for optimizer in ("lbfgs", "newton"):
            assert fits[ranks][f"flights-{optimizer}"]["allreduces"] < 100
        assert fits[ranks]["scaled-gd"]["allreduces"] > 1000  # what they are spared


# The problems of the tests below; ``fits`` runs their "runs" with the rest.


@pytest.fixture(scope="module")
def linear(folder):
    X, y = random_problem("linear", 2003, 6, seed=8)
    X = X * np.geomspace(1, 1e3, 6)
    path = write_h5(folder / "linear.h5", X, y)
    runs = [
        {"name": f"l2-{l2}", "data": str(path), "model": "linear", "optimizer": "normal", "l2": l2}
        for l2 in (0.0, 0.3)
    ]
    return {"X": X, "y": y, "runs": runs}


@pytest.fixture(scope="module")
def lasso(folder):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1001, 12))
    y = X[:, :3] @ np.array([2.0, -1.0, 0.5]) + 0.3 + 0.1 * rng.standard_normal(1001)
    data = write_h5(folder / "sparse.h5", X, y)
    runs = [
        {
            "name": "lasso",
            "data": str(data),
            "model": "linear",
            "l1": 0.05,
            "tol": 1e-10,
            "ftol": 0.0,
            "max_iter": 20_000,
        }
    ]
    return {"X": X, "y": y, "runs": runs}


@pytest.fixture(scope="module")
def prescaled(folder):
    X, y = random_problem("logistic", 1501, 5, seed=6)
    X = X * np.array([1e3, 1.0, 1e-2, 50.0, 1.0]) + np.array([5e3, -2.0, 0.0, 1e4, 0.0])
    X[:, 4] = 7.0  # a constant column
    raw = write_h5(folder / "raw.h5", X, y)
    mean, std = X.mean(axis=0), X.std(axis=0)
    std[4] = 1.0
    scaled = write_h5(folder / "prescaled.h5", (X - mean) / std, y)
    runs = [
        {
            "name": "standardized",
            "data": str(raw),
            "model": "logistic",
            "l2": 1e-2,
            "standardize": True,
            "tol": 1e-10,
            "ftol": 0.0,
        },
        {
            "name": "by-hand",
            "data": str(scaled),
            "model": "logistic",
            "l2": 1e-2,
            "tol": 1e-10,
            "ftol": 0.0,
        },
    ]
    return {"X": X, "mean": mean, "std": std, "runs": runs}


@pytest.fixture(scope="module")
def three_classes(folder):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((902, 4))
    logits = X @ rng.standard_normal((4, 3)) + np.array([0.3, -0.2, 0.0])
    y = np.array([rng.choice(3, p=np.exp(r) / np.exp(r).sum()) for r in logits], float)
    data = write_h5(folder / "three.h5", X, y)
    l2 = 1e-2
    runs = [
        {
            "name": "softmax",
            "data": str(data),
            "model": "softmax",
            "l2": l2,
            "tol": 1e-10,
            "ftol": 0.0,
        }
    ]
    return {"X": X, "y": y, "l2": l2, "runs": runs}


@pytest.fixture(scope="module")
def weighted(folder):
    X, y = random_problem("logistic", 801, 3, seed=12)
    y[:600] = 0.0  # imbalanced classes
    weights = np.random.default_rng(1).uniform(0.1, 3.0, len(y))
    data = write_h5(folder / "weighted.h5", X, y, w=weights)
    l2 = 1e-2
    runs = [
        {
            "name": "weighted",
            "data": str(data),
            "model": "logistic",
            "l2": l2,
            "weight_key": "w",
            "class_weight": "balanced",
            "tol": 1e-10,
            "ftol": 0.0,
        }
    ]
    return {"X": X, "y": y, "weights": weights, "l2": l2, "runs": runs}


@pytest.mark.parametrize("ranks", RANKS)
def test_normal_equations_match_lstsq(linear, fits, ranks):
    X, y, results = linear["X"], linear["y"], fits[ranks]
    m, n = X.shape
    for l2 in (0.0, 0.3):
        # min 1/(2m) |[X 1] theta - y|^2 + l2/2 |w|^2 as one stacked least-squares problem
        A = np.vstack(
            [np.hstack([X, np.ones((m, 1))]) / np.sqrt(m), np.sqrt(l2) * np.eye(n, n + 1)]
        )
        expected = np.linalg.lstsq(A, np.append(y / np.sqrt(m), np.zeros(n)), rcond=None)[0]
        result = results[f"l2-{l2}"]
        assert bit_identical(result["theta"])
        assert result["allreduces"] == 1
        np.testing.assert_allclose(result["theta"][0], expected, rtol=1e-9, atol=1e-12)


def test_singular_normal_equations_give_the_minimum_norm_solution_and_say_so(folder):
    X, y = random_problem("linear", 50, 3)
    data = write_h5(folder / "collinear.h5", np.hstack([X, X[:, :1]]), y)
    proc = run_mpi(
        2,
        "-m",
        "mpigd",
        "train",
        data,
        "--model",
        "linear",
        "--optimizer",
        "normal",
        "--out",
        folder / "min-norm.h5",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("the normal equations are singular") == 1  # rank 0 only
    assert "minimum-norm solution; l2 > 0 gives a unique one" in proc.stderr
    model = load_model(folder / "min-norm.h5")
    # scikit-learn's LinearRegression: the smallest weights, the intercept outside the norm
    from sklearn.linear_model import LinearRegression

    expected = LinearRegression().fit(np.hstack([X, X[:, :1]]), y)
    np.testing.assert_allclose(model.coef, expected.coef_, atol=1e-8)
    assert model.intercept == pytest.approx(expected.intercept_, abs=1e-8)


@pytest.mark.parametrize("ranks", RANKS)
def test_l1_gives_exact_zeros_and_matches_the_lasso(lasso, fits, ranks):
    from sklearn.linear_model import Lasso

    X, y = lasso["X"], lasso["y"]
    theta = fits[ranks]["lasso"]["theta"]
    assert bit_identical(theta)
    reference = Lasso(alpha=0.05, tol=1e-14, max_iter=100_000).fit(X, y)
    coef = theta[0][:-1]
    np.testing.assert_array_equal(coef == 0, reference.coef_ == 0)
    assert (coef[3:] == 0).all()  # the nine irrelevant features are exactly zero
    np.testing.assert_allclose(coef, reference.coef_, atol=1e-7)


@pytest.mark.parametrize("ranks", RANKS)
def test_standardised_training_predicts_on_raw_features(prescaled, fits, ranks):
    X, mean, std, results = prescaled["X"], prescaled["mean"], prescaled["std"], fits[ranks]
    mapped_back, by_hand = results["standardized"]["theta"], results["by-hand"]["theta"]
    assert bit_identical(mapped_back)
    z_raw = X @ mapped_back[0][:-1] + mapped_back[0][-1]
    z_scaled = (X - mean) / std @ by_hand[0][:-1] + by_hand[0][-1]
    np.testing.assert_allclose(z_raw, z_scaled, rtol=1e-8, atol=1e-8)
    assert mapped_back[0][4] == 0.0  # the constant column gets no weight


def test_standardised_model_records_its_statistics(folder):
    X, y = random_problem("linear", 300, 3, seed=9)
    data = write_h5(folder / "stats.h5", X * 10 + 3, y)
    out = folder / "stats-model.h5"
    proc = run_mpi(
        3,
        "-m",
        "mpigd",
        "train",
        data,
        "--model",
        "linear",
        "--standardize",
        "--out",
        out,
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["feature_mean"][()], (X * 10 + 3).mean(axis=0))
        np.testing.assert_allclose(f["feature_std"][()], (X * 10 + 3).std(axis=0))
        assert f.attrs["standardize"]


@pytest.mark.parametrize("ranks", RANKS)
def test_softmax_matches_scikit_learn(three_classes, fits, ranks):
    from sklearn.linear_model import LogisticRegression

    X, y, l2 = three_classes["X"], three_classes["y"], three_classes["l2"]
    theta = fits[ranks]["softmax"]["theta"]
    assert bit_identical(theta)
    W, b = theta[0][:12].reshape(4, 3), theta[0][12:]
    reference = LogisticRegression(C=1 / (l2 * len(y)), tol=1e-12, max_iter=10_000).fit(X, y)
    ours = np.exp(X @ W + b)
    ours /= ours.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ours, reference.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("ranks", [1, 3])
def test_sample_and_class_weights_match_scikit_learn(weighted, fits, ranks):
    from sklearn.linear_model import LogisticRegression

    X, y, weights, l2 = weighted["X"], weighted["y"], weighted["weights"], weighted["l2"]
    theta = fits[ranks]["weighted"]["theta"]
    assert bit_identical(theta)
    # ours: sum_i s_i l_i / sum_i s_i + l2/2 |w|^2; sklearn: C sum_i s_i l_i + |w|^2 / 2
    class_mass = np.bincount(y.astype(int), weights=weights)  # balanced, by weight
    s = weights * (weights.sum() / (2 * class_mass))[y.astype(int)]
    reference = LogisticRegression(
        C=1 / (l2 * s.sum()), tol=1e-12, max_iter=10_000, class_weight="balanced"
    ).fit(X, y, sample_weight=weights)
    expected = np.append(reference.coef_[0], reference.intercept_)
    np.testing.assert_allclose(theta[0], expected, rtol=1e-6, atol=1e-7)
