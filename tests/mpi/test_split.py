"""L-BFGS with its vectors split over the ranks (mpigd.vectors), under real ``mpiexec``:
the same steps as one process takes, the same parameters on every rank, a checkpoint
that resumes exactly, and ranks that hold no parameter at all."""

import numpy as np
import pytest
from conftest import ROOT, random_problem, run_mpi, write_h5

WORKER = ROOT / "tests" / "mpi" / "mpi_split.py"
RANKS = [1, 2, 3, 5]  # 5 ranks: more than the 3 parameters of the narrow problem


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("split")
    rng = np.random.default_rng(5)
    X = rng.standard_normal((301, 5))
    classes = np.argmax(X[:, :3] + 0.5 * rng.standard_normal((301, 3)), axis=1)
    softmax = write_h5(folder / "softmax.h5", X, classes.astype(np.float64))
    narrow = write_h5(folder / "narrow.h5", *random_problem("logistic", 203, 2, seed=3))
    out = {}
    for ranks in RANKS:
        saved = folder / f"out-{ranks}.npz"
        proc = run_mpi(ranks, WORKER, softmax, narrow, folder, saved)
        assert proc.returncode == 0, proc.stderr
        out[ranks] = dict(np.load(saved))
    return out


def identical_rows(a) -> bool:
    a = np.ascontiguousarray(a)
    return all(row.tobytes() == a[0].tobytes() for row in a)


@pytest.mark.parametrize("ranks", RANKS)
def test_every_rank_holds_the_same_parameters_and_losses(runs, ranks):
    for name in ("whole", "resumed", "narrow"):
        assert identical_rows(runs[ranks][f"{name}/theta"]), name
        assert identical_rows(runs[ranks][f"{name}/history"]), name


@pytest.mark.parametrize("ranks", RANKS)
def test_a_run_resumed_from_its_checkpoint_ends_as_the_run_that_never_stopped(runs, ranks):
    got = runs[ranks]
    assert got["stopped/nit"][0] == 7
    np.testing.assert_array_equal(got["resumed/theta"], got["whole/theta"])
    np.testing.assert_array_equal(got["resumed/history"], got["whole/history"])


@pytest.mark.parametrize("name", ["whole", "narrow"])
def test_split_vectors_take_the_steps_one_process_takes(runs, name):
    serial = runs[1]
    assert serial["split_dots"] == 0
    for ranks in RANKS[1:]:
        got = runs[ranks]
        assert got["split_dots"] > 0, ranks  # the slices were used
        # the last steps near tol may differ by one where rounding decides the stop
        steps = min(len(got[f"{name}/history"][0]), len(serial[f"{name}/history"][0])) - 2
        assert abs(int(got[f"{name}/nit"][0]) - int(serial[f"{name}/nit"][0])) <= 1, ranks
        np.testing.assert_allclose(
            got[f"{name}/history"][0][:steps],
            serial[f"{name}/history"][0][:steps],
            rtol=1e-12,
            err_msg=ranks,
        )
        theta = serial[f"{name}/theta"][0]
        assert np.abs(got[f"{name}/theta"][0] - theta).max() <= 1e-9 * np.abs(theta).max()
