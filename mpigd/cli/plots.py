"""Plots of a training run (:func:`plot_training`) and of a cross-validation
(:func:`plot_cv`), written atomically as PNG. matplotlib is imported only here, when a
plot is asked for (``pip install 'mpigd[plot]'``)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import MpigdError
from ..io.outputs import writing
from ..kernels.losses import model_name


def check_plotting() -> None:
    """Raise if matplotlib is missing, before any work. Collective: no."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot
    except ImportError:
        raise MpigdError("--plot needs matplotlib: pip install 'mpigd[plot]'") from None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    with writing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def plot_training(model, path: str | os.PathLike, name: str = "") -> None:
    """Draw a model's training curve from its file: the loss above its final value and
    the gradient norm against the iteration, both on log scales. Collective: no."""
    history = model.history
    norms = model.arrays.get("grad_norm_history")
    if history is None or len(history) == 0:
        raise MpigdError(f"{name or 'the model'} has no loss history to plot")
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    gap = np.asarray(history, dtype=np.float64) - float(history[-1])
    shown = gap > 0
    left.semilogy(np.arange(len(gap))[shown], gap[shown], "o-", markersize=3)
    left.set(xlabel="iteration", ylabel="loss - final loss", title=f"final loss {history[-1]:.6g}")
    if norms is not None and len(norms):  # after a resume: the last iterations only
        first = len(history) - len(norms)
        right.semilogy(np.arange(first, len(history)), norms, "o-", markersize=3, color="C1")
    right.set(xlabel="iteration", ylabel="gradient norm", title="gradient norm")
    info = model.info
    fig.suptitle(
        f"{model_name(model.kind)}, {info.get('optimizer', '?')}: {info.get('iterations', '?')} "
        f"iterations, {'converged' if info.get('converged') else 'not converged'}"
        + (f" ({os.path.basename(name)})" if name else "")
    )
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_cv(record: dict, path: str | os.PathLike) -> None:
    """Draw ``record``'s mean validation metric per penalty (log axis) with +-1 standard
    deviation over the folds, the best and the one-standard-error penalties marked, and
    write it to ``path`` (PNG, atomically). Collective: no."""
    plt = _pyplot()
    kind = record["penalty"]
    penalties = np.array(record[kind])
    mean = np.array(record["val_mean"], dtype=np.float64)
    std = np.array(record["val_std"], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.errorbar(penalties, mean, yerr=std, fmt="o-", capsize=3, label="mean over folds, ±1 std")
    for key, style, label in ((f"best_{kind}", "r--", "best"), (f"best_{kind}_1se", "g:", "1se")):
        ax.axvline(
            record[key], color=style[0], linestyle=style[1:], label=f"{label}: {record[key]:.3g}"
        )
    ax.set_xscale("log")
    ax.set(
        xlabel=f"{kind} penalty",
        ylabel=f"validation {record['metric']}",
        title=f"{record['folds']}-fold cross-validation, {model_name(record['model'])} "
        f"({os.path.basename(record['data'])})",
    )
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
