"""Benchmark reports: records in, a table, CSV, JSON, a model prediction and plots out."""

from __future__ import annotations

import csv
import json
import os
import statistics
from pathlib import Path

from ..errors import MpigdError
from ..io.outputs import write_json, writing
from .measure import fit_allreduce_model, predict, summarize

#: Rank counts and dataset sizes the alpha-beta model is asked about.
PREDICT_RANKS = [1, 2, 4, 16, 64, 256, 1024, 4096]
PREDICT_ROWS = [10**6, 10**8, 10**10]
COLUMNS = [
    "ranks",
    "runs",
    "eval_median",
    "eval_min",
    "eval_max",
    "speedup",
    "efficiency",
    "compute",
    "allreduce",
    "imbalance",
    "allreduce_share",
    "pass_gb_s",
    "stream_gb_s",
    "bandwidth_fraction",
    "rows_per_s",
    "features_rows_per_s",
]


#: What :func:`report` writes: PREFIX followed by each of these.
REPORT_SUFFIXES = (".csv", ".json", ".png", "-model.png")


def _read_record(file: Path) -> dict | None:
    try:
        record = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise MpigdError(f"cannot read benchmark record {file}: {exc}") from exc
    return record if isinstance(record, dict) and "eval_median" in record else None


def _candidates(paths: list[str]) -> list[Path]:
    return [
        file
        for path in map(Path, paths)
        for file in (sorted(path.glob("*.json")) if path.is_dir() else [path])
    ]


def record_files(paths: list[str]) -> list[Path]:
    """The files among ``paths`` (JSON files, and folders of them) that hold benchmark
    records; reports and other JSON files beside them are left out. Collective: no."""
    return [file for file in _candidates(paths) if _read_record(file) is not None]


def load_records(paths: list[str]) -> list[dict]:
    """Records from JSON files and folders of them (``*.json``, not reports). Collective: no."""
    records = [r for r in map(_read_record, _candidates(paths)) if r is not None]
    if not records:
        raise MpigdError(f"no benchmark records in {', '.join(paths)}")
    return records


def report(paths: list[str], prefix: str, kind: str = "strong") -> list[str]:
    """Aggregate records; write PREFIX.csv, PREFIX.json and (with matplotlib) PREFIX.png.
    Returns the lines of a Markdown table and the model's predictions.
    Collective: no (call on one rank)."""
    records = load_records(paths)
    try:
        rows = summarize(records, kind)
    except ValueError as exc:
        raise MpigdError(str(exc)) from exc
    lines = _table(rows, kind)
    out = {"kind": kind, "summary": rows, "machine": records[0]["machine"]}
    with writing(prefix + ".csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows({k: r[k] for k in COLUMNS} for r in rows)
    if any(r["ranks"] > 1 for r in records):
        fitted, model_lines = _model(records)
        out.update(fitted)
        lines += model_lines
    write_json(prefix + ".json", out)
    _plot(rows, out.get("predictions"), prefix + ".png", kind, _title(records[0], kind))
    return lines


def _table(rows: list[dict], kind: str) -> list[str]:
    """The summary rows as a Markdown table."""
    gain = "speed-up" if kind == "strong" else "T1/TP (weak)"
    lines = [
        f"| ranks | runs | ms per evaluation: median (min-max) | {gain} | efficiency | "
        "compute ms | Allreduce ms (share) | imbalance ms | pass GB/s | read GB/s "
        "| fraction | features x rows/s |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        lines.append(
            f"| {r['ranks']}{' (oversubscribed)' if r['oversubscribed'] else ''} | "
            f"{r['runs']} | {r['eval_median'] * 1e3:.2f} "
            f"({r['eval_min'] * 1e3:.2f}-{r['eval_max'] * 1e3:.2f}) | {r['speedup']:.2f} | "
            f"{r['efficiency']:.0%} | {r['compute'] * 1e3:.2f} | {r['allreduce'] * 1e3:.3f} "
            f"({r['allreduce_share']:.1%}) | {r['imbalance'] * 1e3:.2f} | "
            f"{r['pass_gb_s']:.2f} | {r['stream_gb_s']:.2f} | {r['bandwidth_fraction']:.0%} | "
            f"{r['features_rows_per_s']:.3g} |"
        )
    return lines


def _model(records: list[dict]) -> tuple[dict, list[str]]:
    """The alpha-beta model fitted to the multi-rank records and its predictions: the
    entries for the JSON report, and the lines for the text one."""
    model = fit_allreduce_model(records)
    base = [r for r in records if r["ranks"] == 1]
    seconds_per_row = min(r["compute_median"] / r["rows"] for r in base)
    features = base[0]["features"]
    predictions = {
        rows_: predict(model, seconds_per_row, features, rows_, PREDICT_RANKS)
        for rows_ in PREDICT_ROWS
    }
    latency = statistics.median(r["allreduce_latency"] for r in records if r["ranks"] > 1)
    lines = ["", f"measured: Allreduce of one number takes {latency * 1e6:.1f} us (median)"]
    lines += [
        "",
        f"MODEL (not measured): Allreduce alpha = {model['alpha_s'] * 1e6:.2f} us, "
        f"beta = {model['beta_s_per_byte'] * 1e9:.3f} ns/byte (fit to the sweeps), "
        f"{seconds_per_row * 1e9:.1f} ns per row of {features} features per rank:",
        "",
        "| rows | " + " | ".join(f"P={p}" for p in PREDICT_RANKS) + " |",
        "|" + "---|" * (len(PREDICT_RANKS) + 1),
    ]
    for rows_, prediction in predictions.items():
        lines.append(
            f"| {rows_:.0e} | " + " | ".join(f"{p['efficiency']:.0%}" for p in prediction) + " |"
        )
    # The question the README answers: 10^9 rows x 100 features on 1024 ranks, with the
    # per-row time scaled by the row's width (the pass is bound by bytes read).
    wide = predict(model, seconds_per_row * 100 / features, 100, 10**9, [1024])[0]
    lines += [
        "",
        f"MODEL: 1e9 rows x 100 features on 1024 ranks: {wide['eval_s'] * 1e3:.1f} "
        f"ms per evaluation, of which Allreduce {wide['allreduce_s'] * 1e6:.0f} us; "
        f"efficiency {wide['efficiency']:.1%}",
    ]
    fitted = {
        "allreduce_model": model,
        "seconds_per_row": seconds_per_row,
        "predictions": {str(k): v for k, v in predictions.items()},
        "prediction_1e9x100_1024": wide,
    }
    return fitted, lines


def _title(record: dict, kind: str) -> str:
    """The data set and its size, for the plots' titles."""
    size = f"{record['rows']:,} rows x {record['features']:,} features"
    return f"{kind} scaling: {os.path.basename(str(record.get('data', '')))}, {size}"


def _rank_axis(ax, ranks: list[int], rows: list[dict], values: list[float] | None) -> None:
    """Ranks on a log2 axis with a tick at each measured count, and the oversubscribed
    measurements (more ranks than cores) marked."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks, [str(p) for p in ranks])
    ax.minorticks_off()
    if values is not None:
        over = [(p, v) for p, v, r in zip(ranks, values, rows, strict=True) if r["oversubscribed"]]
        if over:
            ax.plot(*zip(*over, strict=True), "rx", markersize=11, label="oversubscribed")


def _plot(rows, predictions, path, kind, title) -> None:
    """The four panels of the measurements at ``path`` and, with ``predictions``, the
    model's efficiency beside them at ``PATH-model.png``; nothing without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return  # plots are optional: pip install 'mpigd[plot]'
    ranks = [r["ranks"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    _plot_speedup(axes[0], ranks, rows, kind)
    _plot_breakdown(axes[1], ranks, rows)
    _plot_efficiency(axes[2], ranks, rows)
    _plot_bandwidth(axes[3], ranks, rows)
    fig.suptitle(title)
    _save(plt, fig, path)
    if predictions:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        _plot_model(ax, ranks, rows, predictions, title)
        _save(plt, fig, path.removesuffix(".png") + "-model.png")


def _save(plt, fig, path: str) -> None:
    fig.tight_layout()
    with writing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _plot_speedup(ax, ranks: list[int], rows: list[dict], kind: str) -> None:
    """The measured speed-up with its spread over runs; for strong scaling, the ideal
    and the bound that the memory read bandwidth sets."""
    ax.errorbar(
        ranks,
        [r["speedup"] for r in rows],
        fmt="o-",
        label="measured (median)",
        yerr=[
            [r["speedup"] - rows[0]["eval_median"] / r["eval_max"] for r in rows],
            [rows[0]["eval_median"] / r["eval_min"] - r["speedup"] for r in rows],
        ],
    )
    if kind == "strong":
        ax.plot(ranks, ranks, "k--", label="ideal")
        bandwidth = [r["stream_gb_s"] / rows[0]["stream_gb_s"] for r in rows]
        ax.plot(ranks, bandwidth, "g:", label="read-bandwidth bound")
    ax.set(
        xlabel="ranks",
        ylabel="speed-up T1/TP" if kind == "strong" else "T1/TP",
        title=f"{kind} scaling",
    )
    _rank_axis(ax, ranks, rows, [r["speedup"] for r in rows])
    ax.legend()


def _plot_breakdown(ax, ranks: list[int], rows: list[dict]) -> None:
    """The time per evaluation, stacked: local pass and Allreduce."""
    bottom = [0.0] * len(rows)
    for key, label in (("compute", "local pass"), ("allreduce", "Allreduce (incl. wait)")):
        values = [r[key] * 1e3 for r in rows]
        ax.bar([str(p) for p in ranks], values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set(xlabel="ranks", ylabel="ms per evaluation (max over ranks)", title="time breakdown")
    ax.legend()


def _plot_efficiency(ax, ranks: list[int], rows: list[dict]) -> None:
    ax.plot(ranks, [r["efficiency"] for r in rows], "o-", label="measured (median)")
    ax.axhline(1.0, color="k", linestyle="--", label="ideal")
    ax.set(xlabel="ranks", ylabel="parallel efficiency", ylim=(0, 1.1), title="efficiency")
    _rank_axis(ax, ranks, rows, [r["efficiency"] for r in rows])
    ax.legend()


def _plot_bandwidth(ax, ranks: list[int], rows: list[dict]) -> None:
    """The memory read bandwidth measured against what the gradient pass achieves."""
    ax.plot(ranks, [r["stream_gb_s"] for r in rows], "s-", label="memory read (measured)")
    ax.plot(ranks, [r["pass_gb_s"] for r in rows], "o-", label="gradient pass (achieved)")
    ax.set(xlabel="ranks", ylabel="GB/s, all ranks", title="bandwidth")
    _rank_axis(ax, ranks, rows, [r["pass_gb_s"] for r in rows])
    ax.legend()


def _plot_model(ax, ranks: list[int], rows: list[dict], predictions: dict, title: str) -> None:
    """The efficiency the alpha-beta model predicts for each data size, beside the
    measured one."""
    for rows_, prediction in predictions.items():
        ax.semilogx(
            [p["ranks"] for p in prediction],
            [p["efficiency"] for p in prediction],
            "--",
            label=f"MODEL, {float(rows_):.0e} rows",
        )
    ax.plot(ranks, [r["efficiency"] for r in rows], "ko", label="measured")
    ax.set(
        xlabel="ranks",
        ylabel="parallel efficiency",
        ylim=(0, 1.1),
        title=f"alpha-beta model (not a measurement)\n{title}",
    )
    ax.legend()
