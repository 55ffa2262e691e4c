"""BLAS threads a rank runs in the Python API, as on the command line: $MPIGD_NUM_THREADS,
else 1, unless an enclosing block (a command's --threads) chose already."""

import pytest
from conftest import random_problem, write_h5
from threadpoolctl import threadpool_info, threadpool_limits

from mpigd import MpigdError, fit
from mpigd.threads import blas_threads


def blas_counts() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


@pytest.fixture
def data(tmp_path):
    return write_h5(tmp_path / "d.h5", *random_problem("logistic", 200, 4))


def threads_while_training(data) -> set[int]:
    seen = set()
    fit(data, "logistic", optimizer="lbfgs", callback=lambda _: seen.update(blas_counts()))
    return seen


def test_fit_runs_one_blas_thread_by_default_and_restores_the_count(data, monkeypatch):
    if not blas_counts():
        pytest.skip("threadpoolctl finds no BLAS library to limit in this process")
    monkeypatch.delenv("MPIGD_NUM_THREADS", raising=False)
    with threadpool_limits(limits=2, user_api="blas"):  # the caller's own count
        assert threads_while_training(data) == {1}
        assert blas_counts() == {2}


def test_fit_takes_the_count_from_the_environment_or_an_enclosing_choice(data, monkeypatch):
    if not blas_counts():
        pytest.skip("threadpoolctl finds no BLAS library to limit in this process")
    monkeypatch.setenv("MPIGD_NUM_THREADS", "2")
    assert threads_while_training(data) == {2}
    with blas_threads(3):
        assert threads_while_training(data) == {3}


def test_a_bad_thread_count_in_the_environment_is_one_clear_error(data, monkeypatch):
    monkeypatch.setenv("MPIGD_NUM_THREADS", "many")
    with pytest.raises(MpigdError, match="MPIGD_NUM_THREADS='many' is not a whole number"):
        fit(data, "logistic")


def test_every_entry_point_of_the_python_api_runs_inside_the_limit():
    import mpigd
    from mpigd.estimator_base import _Estimator
    from mpigd.threads import limited

    wrapper = limited(lambda: None).__code__  # what fit, tested above, runs
    entries = (mpigd.fit, mpigd.cv, mpigd.evaluate, mpigd.predict, _Estimator._decision)
    for entry in entries:
        assert entry.__code__ is wrapper, entry.__qualname__
