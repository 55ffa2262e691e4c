"""evaluate and predict under real mpiexec, against scikit-learn on the same predictions.

Every kind's evaluate and predict run in one job per rank count (:func:`outputs`)."""

import json

import h5py
import numpy as np
import pytest
from conftest import run_mpi, run_mpi_commands, write_h5
from scipy.special import expit, softmax
from sklearn import metrics as sk

from mpigd.model import LinearModel

M, N, K = 1009, 6, 4  # no rank count divides M
KINDS = ["linear", "logistic", "softmax", "poisson", "gamma", "tweedie", "huber", "svm"]
POWER = 1.3  # the tweedie model's
RANKS = [1, 2, 3, 4]


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    """A model file and a labelled data file per kind, with scores of every sort."""
    folder = tmp_path_factory.mktemp("scoring")
    rng = np.random.default_rng(7)
    X = rng.standard_normal((M, N))
    X[::7] = X[3]  # repeated rows: tied scores, which ROC AUC counts as half
    made = {}
    for kind, coef, intercept in [
        ("linear", rng.standard_normal(N), 0.5),
        ("logistic", rng.standard_normal(N), -0.3),
        ("softmax", rng.standard_normal((N, K)), rng.standard_normal(K)),
        *((kind, rng.standard_normal(N) / 4, 0.2) for kind in ("poisson", "gamma", "tweedie")),
        ("huber", rng.standard_normal(N), 0.5),
        ("svm", rng.standard_normal(N), -0.3),
    ]:
        model = LinearModel(kind, coef, intercept, {"power": POWER} if kind == "tweedie" else {})
        z = X @ coef + intercept
        if kind in ("linear", "huber"):
            y = z + rng.standard_normal(M) * (1 if kind == "linear" else 3)
        elif kind in ("logistic", "svm"):
            y = (rng.random(M) < expit(z)).astype(float)
        elif kind == "poisson":
            y = rng.poisson(np.exp(z)).astype(float)
        elif kind == "gamma":
            y = rng.gamma(2.0, np.exp(z) / 2)
        elif kind == "tweedie":
            y = rng.poisson(np.exp(z)) * rng.gamma(2.0, 0.5, M)
        else:
            p = softmax(z, axis=1)
            y = np.array([rng.choice(K, p=row) for row in p], dtype=float)
        model.save(folder / f"{kind}-model.h5")
        made[kind] = (folder / f"{kind}-model.h5", write_h5(folder / f"{kind}.h5", X, y), X, y)
    return made


@pytest.fixture(scope="module")
def outputs(problems, tmp_path_factory):
    """outputs(kind, ranks) -> (metrics, prediction file): ``mpigd evaluate --json`` and
    ``mpigd predict`` of every kind, in one mpiexec job per rank count."""
    folder = tmp_path_factory.mktemp("outputs")
    made = {}
    for ranks in RANKS:
        commands = []
        for kind in KINDS:
            model, data = problems[kind][:2]
            metrics, prediction = folder / f"{kind}-{ranks}.json", folder / f"{kind}-{ranks}.h5"
            commands += [["evaluate", model, data, "--json", metrics]]
            commands += [["predict", model, data, "--out", prediction]]
            made[kind, ranks] = metrics, prediction
        done = run_mpi_commands(ranks, commands, folder / f"commands-{ranks}.json")
        assert done.returncode == 0, done.stderr

    def get(kind, ranks):
        metrics, prediction = made[kind, ranks]
        return json.loads(metrics.read_text()), prediction

    return get


def evaluate(ranks, model, data, out):
    done = run_mpi(ranks, "-m", "mpigd", "evaluate", model, data, "--json", out)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def scores_of(model_path, X):
    from mpigd.model import load_model

    model = load_model(model_path)
    return X @ model.coef + model.intercept


@pytest.mark.parametrize("ranks", [1, 2, 3])
@pytest.mark.slow
def test_linear_metrics_equal_sklearn(problems, outputs, ranks):
    model_path, _, X, y = problems["linear"]
    ours = outputs("linear", ranks)[0]
    z = scores_of(model_path, X)
    assert ours["rows"] == M and ours["ranks"] == ranks
    assert ours["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(y, z)), rel=1e-12)
    assert ours["mae"] == pytest.approx(sk.mean_absolute_error(y, z), rel=1e-12)
    assert ours["r2"] == pytest.approx(sk.r2_score(y, z), rel=1e-12)


@pytest.mark.parametrize("ranks", [1, 2, 3])
@pytest.mark.slow
def test_logistic_metrics_equal_sklearn(problems, outputs, ranks):
    model_path, _, X, y = problems["logistic"]
    ours = outputs("logistic", ranks)[0]
    z = scores_of(model_path, X)
    predicted = (z > 0).astype(float)
    assert ours["log_loss"] == pytest.approx(sk.log_loss(y, expit(z)), rel=1e-12)
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(y, predicted), rel=1e-15)
    assert ours["precision"] == pytest.approx(sk.precision_score(y, predicted), rel=1e-15)
    assert ours["recall"] == pytest.approx(sk.recall_score(y, predicted), rel=1e-15)
    assert ours["f1"] == pytest.approx(sk.f1_score(y, predicted), rel=1e-15)
    assert ours["roc_auc"] == pytest.approx(sk.roc_auc_score(y, z), rel=1e-15)
    assert ours["roc_auc_bound"] == 0
    assert ours["confusion_matrix"] == sk.confusion_matrix(y, predicted).tolist()


@pytest.mark.parametrize("ranks", [1, 2, 3])
@pytest.mark.slow
def test_softmax_metrics_equal_sklearn(problems, outputs, ranks):
    model_path, _, X, y = problems["softmax"]
    ours = outputs("softmax", ranks)[0]
    z = scores_of(model_path, X)
    assert ours["log_loss"] == pytest.approx(
        sk.log_loss(y, softmax(z, axis=1), labels=range(K)), rel=1e-12
    )
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(y, z.argmax(1)), rel=1e-15)
    assert ours["confusion_matrix"] == sk.confusion_matrix(y, z.argmax(1)).tolist()


@pytest.mark.parametrize("ranks", [1, 3])
@pytest.mark.parametrize(("kind", "power"), [("poisson", 1), ("gamma", 2), ("tweedie", POWER)])
@pytest.mark.slow
def test_deviance_metrics_equal_sklearn(problems, outputs, kind, power, ranks):
    model_path, _, X, y = problems[kind]
    ours = outputs(kind, ranks)[0]
    mean = np.exp(scores_of(model_path, X))
    assert ours["deviance"] == pytest.approx(
        sk.mean_tweedie_deviance(y, mean, power=power), rel=1e-12
    )
    assert ours["d2"] == pytest.approx(sk.d2_tweedie_score(y, mean, power=power), rel=1e-12)
    assert ours["mae"] == pytest.approx(sk.mean_absolute_error(y, mean), rel=1e-12)
    assert ours["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(y, mean)), rel=1e-12)
    with h5py.File(outputs(kind, ranks)[1]) as f:
        np.testing.assert_allclose(f["prediction"][()], mean, rtol=1e-13)
        assert "probability" not in f


@pytest.mark.parametrize("ranks", [1, 3])
@pytest.mark.slow
def test_huber_and_svm_metrics_equal_sklearn(problems, outputs, ranks):
    model_path, _, X, y = problems["huber"]
    ours, z = outputs("huber", ranks)[0], scores_of(model_path, X)
    assert ours["mae"] == pytest.approx(sk.mean_absolute_error(y, z), rel=1e-12)
    assert ours["r2"] == pytest.approx(sk.r2_score(y, z), rel=1e-12)
    model_path, _, X, y = problems["svm"]
    ours, z = outputs("svm", ranks)[0], scores_of(model_path, X)
    assert ours["hinge_loss"] == pytest.approx(sk.hinge_loss(y, z), rel=1e-12)
    assert "log_loss" not in ours
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(y, z > 0), rel=1e-15)
    assert ours["roc_auc"] == pytest.approx(sk.roc_auc_score(y, z), rel=1e-15)
    with h5py.File(outputs("svm", ranks)[1]) as f:
        np.testing.assert_array_equal(f["prediction"][()], (z > 0).astype(np.int64))
        assert "probability" not in f


def test_roc_auc_is_exact_on_many_ties_and_close_scores():
    """Scores that one cell cannot separate (1e-12 apart) and heavy ties, in one process."""
    from mpi4py import MPI

    from mpigd.evaluation.metrics import roc_auc

    rng = np.random.default_rng(3)
    y = rng.random(20_000) < 0.4
    scores = np.round(rng.standard_normal(20_000), 2) + y * 1e-12 * rng.random(20_000)
    scores[:10] = [1e6, -1e6, *scores[10:18]]  # outliers stretch the range
    auc, bound = roc_auc(MPI.COMM_SELF, scores, y)
    assert bound == 0
    assert auc == pytest.approx(sk.roc_auc_score(y, scores), rel=1e-15)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.slow
def test_prediction_files_are_identical_across_rank_counts(problems, outputs, kind):
    model_path, _, X, _ = problems[kind]
    files = [outputs(kind, ranks)[1].read_bytes() for ranks in RANKS]
    assert all(f == files[0] for f in files[1:])  # byte for byte

    from mpigd.model import load_model

    model = load_model(model_path)
    with h5py.File(outputs(kind, 3)[1]) as f:
        np.testing.assert_array_equal(f["prediction"][:], model.predict(X))
        if kind in ("logistic", "softmax"):
            np.testing.assert_allclose(f["probability"][:], model.predict_proba(X), rtol=1e-15)
    np.testing.assert_allclose(model.decision_function(X), X @ model.coef + model.intercept)


@pytest.mark.slow
def test_more_ranks_than_rows(tmp_path):
    model = LinearModel("logistic", np.array([1.0, -1.0]), 0.0)
    model.save(tmp_path / "model.h5")
    X = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    data = write_h5(tmp_path / "d.h5", X, np.array([1.0, 0.0, 0.0]))
    done = run_mpi(
        5, "-m", "mpigd", "predict", tmp_path / "model.h5", data, "--out", tmp_path / "p.h5"
    )
    assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "p.h5") as f:
        np.testing.assert_array_equal(f["prediction"][:], [1, 0, 1])
    ours = evaluate(5, tmp_path / "model.h5", data, tmp_path / "m.json")
    assert ours["accuracy"] == pytest.approx(2 / 3)
    assert ours["roc_auc"] == sk.roc_auc_score([1, 0, 0], X @ [1.0, -1.0])


def test_output_may_not_replace_the_data(problems):
    model_path, data, _, _ = problems["linear"]
    before = data.read_bytes()
    done = run_mpi(2, "-m", "mpigd", "predict", model_path, data, "--out", data)
    assert done.returncode == 2
    assert done.stderr.count("is an input file") == 1
    assert data.read_bytes() == before


def test_feature_count_mismatch_is_one_error(problems, tmp_path):
    model_path, _, X, y = problems["linear"]
    data = write_h5(tmp_path / "narrow.h5", X[:, :3], y)
    done = run_mpi(3, "-m", "mpigd", "evaluate", model_path, data)
    assert done.returncode == 2
    assert done.stderr.count("has 3 features but the model has 6") == 1
