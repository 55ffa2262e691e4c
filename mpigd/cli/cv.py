"""``mpigd cv``: k-fold cross-validation along a penalty path, its table and outputs."""

from __future__ import annotations

from .._version import __version__
from ..errors import plural
from ..kernels.losses import MODELS, model_name
from ..parallel import library_version, on_root
from .common import (
    add_checkpointing,
    add_command,
    add_memory,
    add_model,
    add_out,
    add_text_input,
    add_x_key,
    add_y_key,
    check_outputs_on_root,
    data_source,
    once,
    refuses_negative,
    reporter,
    write_json_on_root,
)

#: selection.penalties.METRICS, without importing it at start-up (a test holds them equal).
METRIC_CHOICES = (
    "log_loss", "accuracy", "roc_auc", "rmse", "r2", "mae", "deviance", "d2", "hinge_loss",
)  # fmt: skip


def register(commands, run_options) -> None:
    cv = add_command(
        commands,
        "cv",
        run_options,
        run,
        help="cross-validate along a penalty path",
        description="K-fold cross-validation of a linear model of any kind "
        "along a path of penalties, all folds in one pass over the data per evaluation; "
        "chooses the penalty and trains the final model on all rows.",
    )
    cv.add_argument("data", help="HDF5 file with datasets X and y, or LIBSVM/CSV text")
    add_model(cv, MODELS)
    add_out(cv, "final model file to write (HDF5), trained on all rows at the chosen penalty")
    cv.add_argument("--folds", type=int, default=5, help="number of folds K (default: 5)")
    cv.add_argument(
        "--fold-key",
        metavar="NAME",
        help="dataset of fold ids 0 .. K-1, one per row (default: hash of --seed and row)",
    )
    cv.add_argument("--seed", type=int, default=0, help="seed of the hashed folds (default: 0)")
    _add_path_options(cv)
    cv.add_argument(
        "--json", metavar="PATH", help="write the cross-validation record here (default: none)"
    )
    cv.add_argument(
        "--plot", metavar="PNG", help="draw the metric against the penalty (default: none)"
    )
    cv.add_argument("--standardize", action="store_true", help="train on standardised features")
    cv.add_argument("--weight-key", help="dataset of row weights (default: none)")
    cv.add_argument("--class-weight", choices=["balanced"], help="reweight classes (default: none)")
    cv.add_argument(
        "--labels",
        choices=["index", "auto"],
        default="index",
        help="index: labels are class indices; auto: any label values, as train --labels auto",
    )
    cv.add_argument(
        "--max-iter",
        type=int,
        default=None,
        help="iterations per fold and penalty (default: the optimiser's, 1000)",
    )
    cv.add_argument("--tol", type=float, default=1e-6, help="stop at this gradient 2-norm")
    cv.add_argument("--ftol", type=float, default=1e-12, help="stop on this relative loss change")
    add_checkpointing(cv, "evaluations")
    add_x_key(cv)
    add_text_input(cv)
    add_y_key(cv)
    add_memory(cv)


def _add_path_options(parser) -> None:
    """The penalty path, and how a penalty is chosen on it."""
    path = parser.add_mutually_exclusive_group(required=True)
    positive = "a penalty cannot be negative: a path needs HIGH >= LOW > 0"
    refuses_negative(
        path.add_argument(
            "--l2-path", metavar="HIGH:LOW:COUNT", help="COUNT log-spaced l2 penalties (L-BFGS)"
        ),
        positive,
    )
    refuses_negative(
        path.add_argument(
            "--l1-path",
            metavar="HIGH:LOW:COUNT",
            help="COUNT log-spaced l1 penalties (nesterov/FISTA), with --l2 fixed",
        ),
        positive,
    )
    refuses_negative(
        parser.add_argument(
            "--l2", type=float, default=0.0, help="fixed l2 with --l1-path (default: 0)"
        ),
        "--l2 cannot be negative",
    )
    parser.add_argument(
        "--metric",
        choices=METRIC_CHOICES,
        help="validation metric (default: the model's first: rmse for linear, log_loss for "
        "logistic and softmax, deviance for poisson, gamma and tweedie, mae for huber, "
        "hinge_loss for svm)",
    )
    parser.add_argument(
        "--rule",
        choices=["min", "1se"],
        default="min",
        help="min: best mean metric; 1se: largest penalty within one standard error of it "
        "(default: min)",
    )


def run(args, comm) -> int:
    """``mpigd cv``; returns the exit status. Collective: yes."""
    from ..selection.path import CV_OPTIONS, cv
    from .plots import check_plotting, plot_cv
    from .train import options_of

    say = reporter(comm, args.quiet)
    check_outputs_on_root(
        comm,
        {
            "--out": args.out,
            "--json": args.json,
            "--plot": args.plot,
            "--checkpoint": args.checkpoint,
            "--cache": args.cache,
        },
        {"the data file": args.data, "--resume": args.resume},
        may_share=[("--checkpoint", "--resume")],  # a resubmitted job continues its checkpoint
    )
    if args.plot:
        on_root(comm, check_plotting)
    kind = "l1" if args.l1_path else "l2"
    announce = once(
        say,
        f"mpigd {__version__}: {args.folds}-fold cross-validation of {model_name(args.model)} "
        f"on {args.data}, {plural(comm.size, 'rank')} ({library_version()})",
    )
    header = []

    def show(row: dict) -> None:
        announce()
        if not header:
            header.append(True)
            say(f"{kind:>10}  {'mean':>12}  {'std':>10}  {'iterations':>10}")
        say(f"{row[kind]:10.3e}  {row['mean']:12.6g}  {row['std']:10.3g}  {row['iterations']:10d}")

    result = cv(
        data_source(args),
        comm=comm,
        folds=args.folds,
        fold_key=args.fold_key,
        seed=args.seed,
        l2_path=args.l2_path,
        l1_path=args.l1_path,
        metric=args.metric,
        rule=args.rule,
        callback=show,
        checkpoint=args.checkpoint,
        resume=args.resume,
        **options_of(args, ("model", *CV_OPTIONS)),
    )
    record = result.record
    on_root(comm, lambda: result.model.save(args.out))
    announce()
    if args.json:
        write_json_on_root(comm, args.json, record)
    if args.plot:
        on_root(comm, lambda: plot_cv(record, args.plot))
    say(
        f"validation {record['metric']}: best {kind} = {record[f'best_{kind}']:.3g}, within "
        f"one standard error {record[f'best_{kind}_1se']:.3g}; chosen ({args.rule}): "
        f"{record['chosen']:.3g}"
    )
    say(
        f"{record['passes']} passes over the data ({record['evaluations']} evaluations of "
        f"{args.folds} fold models, {record['passes'] - record['evaluations']} validation "
        f"sweeps), {record['seconds']:.2f}s"
    )
    say(f"model trained on all rows written to {args.out}")
    return 0
