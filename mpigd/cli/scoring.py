"""``mpigd evaluate`` and ``mpigd predict``: a trained model applied to data, and the
metrics rendered as a table."""

from __future__ import annotations

import os

from ..errors import plural
from ..parallel import on_root
from .common import (
    add_command,
    add_memory,
    add_out,
    add_text_input,
    add_x_key,
    add_y_key,
    check_outputs_on_root,
    data_source,
    reporter,
    write_json_on_root,
)

#: The metrics in the order printed, with their printed names.
METRIC_NAMES = {
    "rows": "rows",
    "deviance": "deviance",
    "d2": "D^2",
    "rmse": "RMSE",
    "mae": "MAE",
    "r2": "R^2",
    "log_loss": "log-loss",
    "hinge_loss": "hinge loss",
    "accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "roc_auc": "ROC AUC",
}


def register(commands, run_options) -> None:
    evaluate_parser = add_command(
        commands,
        "evaluate",
        run_options,
        run_evaluate,
        help="metrics of a model on labelled data",
        description="Score a model on labelled data; each rank scores its own rows.",
    )
    evaluate_parser.add_argument("model", help="model file written by mpigd train")
    evaluate_parser.add_argument("data", help="HDF5 file with X and y, or LIBSVM/CSV text")
    evaluate_parser.add_argument("--json", metavar="PATH", help="also write the metrics as JSON")
    add_x_key(evaluate_parser)
    add_text_input(evaluate_parser, cache=False)
    add_y_key(evaluate_parser)
    add_memory(evaluate_parser)

    predict_parser = add_command(
        commands,
        "predict",
        run_options,
        run_predict,
        help="write predictions for every row",
        description="Predict every row of X; each rank predicts its own rows.",
    )
    predict_parser.add_argument("model", help="model file written by mpigd train")
    predict_parser.add_argument(
        "data", help="HDF5 file with X (labels are not needed), or LIBSVM/CSV text"
    )
    add_out(predict_parser, "HDF5 file to write")
    add_x_key(predict_parser)
    add_text_input(predict_parser, cache=False)
    add_memory(predict_parser)

    plot_parser = add_command(
        commands,
        "plot",
        run_options,
        run_plot,
        help="draw a model's training curve",
        description="Draw the loss (above its final value) and the gradient norm against "
        "the iteration, on log scales, from a model file.",
    )
    plot_parser.add_argument("model", help="model file written by mpigd train or mpigd cv")
    add_out(plot_parser, "PNG file to write")


def metric_lines(scores: dict) -> list[str]:
    """The metrics as an aligned two-column table."""
    lines = []
    for key, name in METRIC_NAMES.items():
        if key in scores:
            value = scores[key]
            text = f"{value:,}" if isinstance(value, int) else f"{value:.6f}"
            if key == "roc_auc":
                bound = scores["roc_auc_bound"]
                text += " (exact)" if bound == 0 else f" (+- {bound:.1e})"
            lines.append(f"  {name:<10} {text}")
    if "confusion_matrix" in scores:
        matrix = scores["confusion_matrix"]
        names = [f"{c:g}" for c in scores.get("classes", range(len(matrix)))]
        width = max(10, *(len(name) + 1 for name in names))
        corner = "true / predicted"
        lines.append("  confusion matrix: rows are the true classes, columns the predicted ones")
        lines.append(f"    {corner:>{len(corner)}}" + "".join(f"{n:>{width}}" for n in names))
        for name, row in zip(names, matrix, strict=True):
            counts = "".join(f"{c:>{width},}" for c in row)
            lines.append(f"    {name:>{len(corner)}}{counts}")
    return lines


def _inputs(args) -> dict:
    return {"the model file": args.model, "the data file": args.data}


def run_evaluate(args, comm) -> int:
    """``mpigd evaluate``; returns the exit status. Collective: yes."""
    from ..evaluation.scoring import evaluate  # not loaded by the other commands

    say = reporter(comm, args.quiet)
    if args.json:
        check_outputs_on_root(comm, {"--json": args.json}, _inputs(args))
    scores = evaluate(
        data_source(args),
        args.model,
        comm=comm,
        x_key=args.x_key,
        y_key=args.y_key,
        memory=args.memory,
    )
    say(f"{scores['model']} model {args.model} on {args.data} ({plural(comm.size, 'rank')}):")
    for line in metric_lines(scores):
        say(line)
    if args.json:
        write_json_on_root(comm, args.json, {**scores, "model_path": os.path.abspath(args.model)})
        say(f"metrics written to {args.json}")
    return 0


def run_plot(args, comm) -> int:
    """``mpigd plot``: rank 0 draws the model's training curve. Collective: yes."""
    from ..model import load_model
    from .plots import check_plotting, plot_training

    check_outputs_on_root(comm, {"--out": args.out}, {"the model file": args.model})
    on_root(comm, check_plotting)
    on_root(comm, lambda: plot_training(load_model(args.model), args.out, args.model))
    reporter(comm, args.quiet)(f"training curve written to {args.out}")
    return 0


def run_predict(args, comm) -> int:
    """``mpigd predict``; returns the exit status. Collective: yes."""
    from ..evaluation.scoring import predict

    check_outputs_on_root(comm, {"--out": args.out}, _inputs(args))
    rows = predict(
        data_source(args), args.model, args.out, comm=comm, x_key=args.x_key, memory=args.memory
    )
    reporter(comm, args.quiet)(f"{rows:,} predictions written to {args.out}")
    return 0
