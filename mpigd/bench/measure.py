"""Scaling measurements: one record per run under MPI, and their aggregation.

:func:`measure` runs on every rank of a job: it reads the slice, times repeated
evaluations of the objective (local computation and ``Allreduce`` separately, on every
rank), measures the memory read bandwidth of all ranks at once on an array as large as
a slice, and times ``Allreduce`` at a range of message sizes. Rank 0 returns one record.
:func:`summarize` turns records of several rank counts into speed-up, efficiency and the
time breakdown; :func:`fit_allreduce_model` and :func:`predict` give the alpha-beta model
of Thakur, Rabenseifner & Gropp (2005) and what it implies beyond this machine.
"""

from __future__ import annotations

import os
import platform
import socket
import statistics
from datetime import UTC, datetime

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_info

from .._version import __version__
from ..io.dataset import data_path
from ..io.rows import read_rows
from ..io.stream import StreamedRows
from ..kernels.losses import make_loss
from ..objective import Objective
from ..parallel import (
    allreduce_sum,
    barrier,
    gather_to_root,
    library_version,
    max_over_ranks,
    wtime,
)

#: Message sizes (float64 count) for the Allreduce sweep: 1 to 131,072 numbers.
MESSAGE_SIZES = tuple(2**k for k in range(0, 18, 2))


def _median_time(comm, fn, repeats: int) -> float:
    """Median over ``repeats`` of the slowest rank's time for ``fn()``."""
    times = []
    for _ in range(repeats):
        barrier(comm)
        start = wtime()
        fn()
        times.append(float(max_over_ranks(comm, [wtime() - start])[0]))
    return statistics.median(times)


def machine() -> dict:
    """What the numbers were measured on. Collective: no."""
    blas = [
        f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    return {
        "host": socket.gethostname(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "slurm_ntasks": os.environ.get("SLURM_NTASKS", ""),
        "slurm_nodes": os.environ.get("SLURM_JOB_NUM_NODES", ""),
        "mpi": library_version(),
        "numpy": np.__version__,
        "blas": "; ".join(blas),
        "mpigd": __version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def measure(
    comm,
    data,
    model: str = "logistic",
    *,
    evals: int = 20,
    warmup: int = 3,
    repeats: int = 5,
    x_key: str = "X",
    y_key: str = "y",
    memory: float | None = None,
) -> dict | None:
    """Measure one run; the record on rank 0, None elsewhere. Collective: yes.

    Per evaluation each rank times its local pass and its ``Allreduce`` (which includes
    waiting for slower ranks); the record keeps, per evaluation, the maximum over ranks of
    each and the spread of the local pass (load imbalance). The rows are read and checked
    as training reads them (:func:`~mpigd.io.rows.read_rows`): bad data on one rank is
    one error on every rank; rows that do not fit (``memory`` bytes a rank) are streamed
    from the file by every evaluation, as in training (the record says ``streamed``).
    """
    barrier(comm)
    start = wtime()
    # any labels will do
    info, local = read_rows(comm, data, x_key, y_key, None, None, memory=memory, stream=True)
    read = [wtime() - start]
    compute, allreduce = _time_evaluations(comm, local, model, evals, warmup)
    X = local.X
    streamed = isinstance(X, StreamedRows)
    if streamed:
        x_bytes = X.pass_bytes
    elif sp.issparse(X):
        x_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    else:
        x_bytes = X.nbytes
    # memory bandwidth over an array as large as the slice (streamed: 64 MiB of it, more
    # than a cache holds, for a moment)
    swept = min(x_bytes, 64 << 20) if streamed else x_bytes
    stream = _median_time(comm, np.ones(max(1, swept // 8)).sum, repeats) * x_bytes / swept
    latency, sweep = _time_allreduce(comm)
    per_rank = gather_to_root(
        comm,
        {
            "rows": len(local.y),
            "x_bytes": x_bytes,
            "read": read[0],
            "compute": compute,
            "allreduce": allreduce,
        },
    )
    if comm.rank != 0:
        return None
    return {
        "ranks": comm.size,
        "data": data_path(info),
        "rows": info.n_rows,
        "features": info.n_features,
        "dtype": str(info.x_dtype),
        "model": model,
        "evals": evals,
        "streamed": streamed,
        **_aggregate(per_rank, info.n_rows, stream),
        "allreduce_latency": latency,
        "allreduce_sweep": {str(k): v for k, v in sweep.items()},
        "machine": machine(),
    }


def _time_evaluations(comm, local, model: str, evals: int, warmup: int) -> tuple[list, list]:
    """This rank's local-pass and ``Allreduce`` seconds of each of ``evals`` evaluations
    of the objective at zero, after ``warmup`` untimed ones. Collective: yes."""
    objective = Objective(comm, local.X, local.y, make_loss(model))
    theta = np.zeros(objective.size)
    for _ in range(warmup):
        objective(theta)
    compute, allreduce = [], []
    for _ in range(evals):
        before = objective.timings.compute, objective.timings.allreduce
        objective(theta)
        compute.append(objective.timings.compute - before[0])
        allreduce.append(objective.timings.allreduce - before[1])
    return compute, allreduce


def _time_allreduce(comm) -> tuple[float, dict[int, float]]:
    """The median time of an ``Allreduce`` of one number, and of one of each of
    :data:`MESSAGE_SIZES`. Collective: yes."""
    tiny = np.zeros(1)
    sweep = {}
    for size in MESSAGE_SIZES:
        buffer = np.zeros(size)
        for _ in range(3):
            allreduce_sum(comm, buffer)  # warm-up
        sweep[size] = _median_time(comm, lambda b=buffer: allreduce_sum(comm, b), 20)
    latency = _median_time(comm, lambda: allreduce_sum(comm, tiny), 50)
    return latency, sweep


def _aggregate(per_rank: list[dict], n_rows: int, stream: float) -> dict:
    """The record's timings and bandwidths from every rank's measurements (``stream``:
    the seconds of one read of every rank's slice). Collective: no."""
    compute_all = np.array([r["compute"] for r in per_rank])  # (ranks, evals)
    allreduce_all = np.array([r["allreduce"] for r in per_rank])
    evaluation = compute_all + allreduce_all
    total_bytes = sum(r["x_bytes"] for r in per_rank)
    compute_max = compute_all.max(axis=0)
    return {
        "read_max": max(r["read"] for r in per_rank),
        "read_min": min(r["read"] for r in per_rank),
        "eval_median": float(np.median(evaluation.max(axis=0))),
        "eval_min": float(evaluation.max(axis=0).min()),
        "eval_max": float(evaluation.max(axis=0).max()),
        "compute_median": float(np.median(compute_max)),
        "compute_spread": float(np.median(compute_max - compute_all.min(axis=0))),
        "allreduce_median": float(np.median(allreduce_all.max(axis=0))),
        "x_bytes": total_bytes,
        "pass_gb_s": total_bytes / float(np.median(compute_max)) / 1e9,
        "stream_gb_s": total_bytes / stream / 1e9,
        "rows_per_s": n_rows / float(np.median(evaluation.max(axis=0))),
    }


def summarize(records: list[dict], kind: str = "strong") -> list[dict]:
    """One row per rank count: median, min and max over repeated runs of the time per
    evaluation, ``speedup = T1 / TP`` and the efficiency (``T1 / (P TP)`` for strong
    scaling, ``T1 / TP`` for weak scaling, where the data grows with P), the breakdown and
    the bandwidths. Records with 1 rank give the baseline. Collective: no."""
    by_ranks: dict[int, list[dict]] = {}
    for record in records:
        by_ranks.setdefault(record["ranks"], []).append(record)
    if 1 not in by_ranks:
        raise ValueError("no 1-rank record to compare with")
    base = statistics.median(r["eval_median"] for r in by_ranks[1])
    rows = []
    for ranks in sorted(by_ranks):
        group = by_ranks[ranks]
        t = [r["eval_median"] for r in group]
        median = statistics.median(t)
        rows.append(
            {
                "ranks": ranks,
                "runs": len(group),
                "eval_median": median,
                "eval_min": min(t),
                "eval_max": max(t),
                "speedup": base / median,
                "efficiency": base / median / (ranks if kind == "strong" else 1),
                "compute": statistics.median(r["compute_median"] for r in group),
                "allreduce": statistics.median(r["allreduce_median"] for r in group),
                "imbalance": statistics.median(r["compute_spread"] for r in group),
                "pass_gb_s": statistics.median(r["pass_gb_s"] for r in group),
                "stream_gb_s": statistics.median(r["stream_gb_s"] for r in group),
                "rows_per_s": statistics.median(r["rows_per_s"] for r in group),
                "features_rows_per_s": statistics.median(
                    r["rows_per_s"] * r["features"] for r in group
                ),
                "oversubscribed": ranks > (group[0]["machine"]["cores"] or ranks),
            }
        )
    for row in rows:
        row["allreduce_share"] = row["allreduce"] / row["eval_median"]
        row["bandwidth_fraction"] = row["pass_gb_s"] / row["stream_gb_s"]
    return rows


def fit_allreduce_model(records: list[dict]) -> dict:
    """Fit ``T(n, P) = lg P alpha + n lg P beta`` (recursive doubling; Thakur, Rabenseifner
    & Gropp 2005) to the measured Allreduce sweeps of the records with P > 1, by least
    squares on all (size, P) points. ``n`` is in bytes. Collective: no."""
    points = [
        (int(size) * 8, r["ranks"], t)
        for r in records
        if r["ranks"] > 1
        for size, t in r["allreduce_sweep"].items()
    ]
    if not points:
        raise ValueError("no multi-rank record to fit the Allreduce model to")
    A = np.array([[np.log2(p), n * np.log2(p)] for n, p, _ in points])
    t = np.array([t for _, _, t in points])
    (alpha, beta), *_ = np.linalg.lstsq(A, t, rcond=None)
    return {"alpha_s": float(max(alpha, 0.0)), "beta_s_per_byte": float(max(beta, 0.0))}


def predict(
    model: dict, seconds_per_row: float, features: int, rows: int, ranks: list[int]
) -> list[dict]:
    """Modelled time per evaluation and efficiency for ``rows`` x ``features`` at each rank
    count: each rank's pass takes ``rows / P * seconds_per_row`` (the measured per-rank
    rate, so the memory bandwidth per rank is assumed to hold), plus one Allreduce of
    ``features + 3`` float64 from the alpha-beta model. A model, not a measurement.
    Collective: no."""
    message = (features + 3) * 8
    one = rows * seconds_per_row
    out = []
    for p in ranks:
        reduce = np.log2(p) * (model["alpha_s"] + message * model["beta_s_per_byte"])
        t = one / p + reduce
        out.append(
            {
                "ranks": p,
                "rows": rows,
                "eval_s": t,
                "allreduce_s": reduce,
                "speedup": one / t,
                "efficiency": one / t / p,
            }
        )
    return out
