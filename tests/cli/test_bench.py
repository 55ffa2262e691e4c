"""The scaling benchmark: its arithmetic on made-up records, and real runs under mpiexec."""

import json

import numpy as np
import pytest
from conftest import random_problem, run_mpi, write_h5

from mpigd.bench.measure import MESSAGE_SIZES, fit_allreduce_model, predict, summarize
from mpigd.bench.report import report
from mpigd.errors import MpigdError

ALPHA, BETA = 5e-6, 2e-10  # seconds, seconds per byte


def record(ranks, eval_s, compute_s, cores=2):
    sweep = {str(n): np.log2(ranks) * (ALPHA + 8 * n * BETA) for n in MESSAGE_SIZES}
    return {
        "ranks": ranks,
        "rows": 1000,
        "features": 4,
        "eval_median": eval_s,
        "eval_min": eval_s * 0.9,
        "eval_max": eval_s * 1.1,
        "compute_median": compute_s,
        "compute_spread": 0.0,
        "allreduce_median": eval_s - compute_s,
        "pass_gb_s": 1.0 * ranks,
        "stream_gb_s": 4.0 * ranks,
        "rows_per_s": 1000 / eval_s,
        "allreduce_latency": ALPHA,
        "allreduce_sweep": sweep,
        "machine": {"cores": cores},
    }


def test_summary_gives_speedup_efficiency_and_shares():
    rows = summarize(
        [record(1, 1.0, 1.0), record(1, 1.2, 1.2), record(2, 0.55, 0.5), record(4, 0.4, 0.3)]
    )
    assert [r["ranks"] for r in rows] == [1, 2, 4]
    assert rows[0]["runs"] == 2 and rows[0]["eval_median"] == pytest.approx(1.1)
    assert rows[1]["speedup"] == pytest.approx(1.1 / 0.55)
    assert rows[2]["efficiency"] == pytest.approx(1.1 / 0.4 / 4)
    assert rows[2]["allreduce_share"] == pytest.approx(0.1 / 0.4)
    assert rows[2]["bandwidth_fraction"] == pytest.approx(0.25)
    assert [r["oversubscribed"] for r in rows] == [False, False, True]
    weak = summarize([record(1, 1.0, 1.0), record(2, 1.25, 1.0)], kind="weak")
    assert weak[1]["efficiency"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="no 1-rank record"):
        summarize([record(2, 0.5, 0.5)])


def test_alpha_beta_fit_recovers_the_model_and_predicts():
    model = fit_allreduce_model([record(1, 1, 1), record(2, 1, 1), record(4, 1, 1)])
    assert model["alpha_s"] == pytest.approx(ALPHA, rel=1e-6)
    assert model["beta_s_per_byte"] == pytest.approx(BETA, rel=1e-6)
    prediction = predict(model, 1e-8, 100, 10**9, [1, 2, 1024])
    assert prediction[0]["efficiency"] == pytest.approx(1.0)
    expected = 10.0 / (10.0 / 1024 + 10 * (ALPHA + 103 * 8 * BETA)) / 1024
    assert prediction[2]["efficiency"] == pytest.approx(expected, rel=1e-6)
    assert prediction[1]["efficiency"] > prediction[2]["efficiency"]


@pytest.mark.slow
def test_report_writes_table_csv_json_and_plots(tmp_path):
    for i, r in enumerate([record(1, 1.0, 1.0), record(2, 0.6, 0.5), record(4, 0.5, 0.3)]):
        (tmp_path / f"r{i}.json").write_text(json.dumps(r))
    lines = report([str(tmp_path)], str(tmp_path / "out"))
    assert any(line.startswith("| 4 (oversubscribed) | 1 |") for line in lines)
    assert any(line.startswith("MODEL (not measured)") for line in lines)
    assert (tmp_path / "out.csv").read_text().splitlines()[0].startswith("ranks,")
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["allreduce_model"]["alpha_s"] == pytest.approx(ALPHA, rel=1e-6)
    assert (tmp_path / "out.png").stat().st_size > 0
    assert (tmp_path / "out-model.png").stat().st_size > 0
    with pytest.raises(MpigdError, match="no benchmark records"):
        report([str(tmp_path / "out.json")], str(tmp_path / "again"))  # a report, not a record
    with pytest.raises(MpigdError, match="cannot read benchmark record"):
        report([str(tmp_path / "out.csv")], str(tmp_path / "again"))


@pytest.mark.slow
def test_runs_under_mpiexec_and_reports(tmp_path):
    data = write_h5(tmp_path / "d.h5", *random_problem("logistic", 1001, 5))
    for ranks in (1, 3):
        proc = run_mpi(
            ranks,
            "-m",
            "mpigd",
            "bench",
            "run",
            data,
            "--evals",
            3,
            "--out",
            tmp_path / f"P{ranks}.json",
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count("ms per evaluation") == 1
        saved = json.loads((tmp_path / f"P{ranks}.json").read_text())
        assert saved["ranks"] == ranks and saved["rows"] == 1001 and saved["x_bytes"] == 1001 * 40
        assert 0 < saved["compute_median"] <= saved["eval_median"] <= saved["eval_max"]
        assert saved["stream_gb_s"] > 0 and len(saved["allreduce_sweep"]) == len(MESSAGE_SIZES)
    proc = run_mpi(1, "-m", "mpigd", "bench", "report", tmp_path, "--out", tmp_path / "sum")
    assert proc.returncode == 0, proc.stderr
    assert "| 3 (oversubscribed) | 1 |" in proc.stdout or "| 3 | 1 |" in proc.stdout


@pytest.mark.parametrize("ranks", [3, pytest.param(4, marks=pytest.mark.slow)])
def test_bad_rows_on_one_rank_end_every_rank_with_one_error(tmp_path, ranks):
    X, y = random_problem("logistic", 10, 3)
    X[-1, 0] = np.nan  # only the last rank holds row 9
    data = write_h5(tmp_path / "nan.h5", X, y)
    out = tmp_path / "never.json"
    proc = run_mpi(
        ranks, "-m", "mpigd", "bench", "run", data, "--evals", 1, "--out", out, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("mpigd: error:") == 1, proc.stderr
    assert "NaN or infinite values in rows" in proc.stderr and not out.exists()
