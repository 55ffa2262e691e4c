"""The cross-validation curve: the validation metric against the penalty."""

from __future__ import annotations

import os

import numpy as np

from ..errors import MpigdError
from ..io.outputs import writing


def check_plotting() -> None:
    """Raise if matplotlib is missing, before any work. Collective: no."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MpigdError("--plot needs matplotlib: pip install 'mpigd[plot]'") from None


def plot_cv(record: dict, path: str | os.PathLike) -> None:
    """Draw ``record``'s mean validation metric per penalty (log axis) with +-1 standard
    deviation over the folds, the best and the one-standard-error penalties marked, and
    write it to ``path`` (PNG, atomically). Collective: no."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        title=f"{record['folds']}-fold cross-validation, {record['model']} regression "
        f"({os.path.basename(record['data'])})",
    )
    ax.legend()
    fig.tight_layout()
    with writing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
