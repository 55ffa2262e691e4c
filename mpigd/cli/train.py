"""``mpigd train``: options, progress lines and the summary after training."""

from __future__ import annotations

from .._version import __version__
from ..errors import plural
from ..kernels.losses import MODELS, model_name
from ..optimize import OPTIMIZERS, Progress
from ..parallel import library_version, on_root, wtime
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
    positive_int,
    refuses_negative,
    reporter,
)


def register(commands, run_options) -> None:
    train = add_command(
        commands,
        "train",
        run_options,
        run,
        help="train a model",
        description="Train a linear model (least squares, logistic, softmax, Poisson, Gamma, "
        "Tweedie, Huber or a linear SVM): each rank reads its own rows, one Allreduce per "
        "evaluation.",
    )
    train.add_argument(
        "data",
        help="HDF5 file with datasets X (rows, features) and y (rows,), or LIBSVM/CSV text",
    )
    add_model(train, MODELS)
    add_out(train, "model file to write (HDF5)")
    train.add_argument(
        "--optimizer",
        default="auto",
        choices=["auto", *OPTIMIZERS],
        help="default: auto, which is nesterov (FISTA) with --l1, normal for linear regression "
        "(up to 4095 features), lbfgs otherwise",
    )
    _add_objective_options(train)
    _add_optimizer_options(train)
    add_checkpointing(train, "iterations")
    add_text_input(train)
    train.add_argument(
        "--init",
        metavar="MODEL",
        help="start from this model (same kind and shape) (default: from zeros)",
    )
    train.add_argument(
        "--exclude-fold",
        type=int,
        metavar="k",
        help="train on the rows outside fold k, as `mpigd cv` assigns them (with --folds, "
        "and --seed or --fold-key) (default: all rows)",
    )
    train.add_argument("--folds", type=int, help="fold count for --exclude-fold (default: none)")
    train.add_argument(
        "--fold-key", metavar="NAME", help="dataset of fold ids for --exclude-fold (default: none)"
    )
    add_x_key(train)
    add_y_key(train)
    add_memory(train)
    train.add_argument(
        "--print-every", type=positive_int, default=10, help="progress line every N iterations"
    )


def _add_objective_options(parser) -> None:
    """The options that define the objective: penalties, scaling, weights, labels."""
    penalties = {"--l2": "ridge penalty (l2/2)||w||^2", "--l1": "lasso penalty l1*||w||_1"}
    for name, text in penalties.items():
        action = parser.add_argument(name, type=float, default=0.0, help=text)
        refuses_negative(action, f"{name} cannot be negative")
    parser.add_argument("--standardize", action="store_true", help="train on standardised features")
    parser.add_argument("--weight-key", help="dataset of row weights (default: none)")
    parser.add_argument(
        "--class-weight", choices=["balanced"], help="reweight classes (default: none)"
    )
    parser.add_argument(
        "--labels",
        choices=["index", "auto"],
        default="index",
        help="index: labels are class indices (0/1, or 0..K-1); auto: any label values "
        "(e.g. LIBSVM's -1/+1), mapped to classes in sorted order and kept in the model, "
        "so predict writes them back (default: index)",
    )


def _add_optimizer_options(parser) -> None:
    """The options of the optimiser: its stopping rules, step size and batches."""
    parser.add_argument(
        "--max-iter",
        type=int,
        default=None,
        help="iterations, epochs for sgd (default: the optimiser's, 1000; newton 100, sgd 20)",
    )
    parser.add_argument("--tol", type=float, default=1e-6, help="stop at this gradient 2-norm")
    parser.add_argument(
        "--ftol",
        type=float,
        default=1e-12,
        help="stop when one iteration changes the loss by less than this, relative",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="step size: fixed for gd and nesterov, initial for sgd (default: a line search; "
        "0.5 for sgd)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=1024, help="sgd batch")
    parser.add_argument(
        "--seed", type=int, default=0, help="sgd sampling seed; seed of hashed folds"
    )


def options_of(args, names) -> dict:
    """The options named ``names`` that the command line gives (the parsed ``args``), as
    keyword arguments of :func:`mpigd.fit` or :func:`mpigd.cv`."""
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def _progress_printer(say, every: int, start: float, announce):
    shown = []

    def show(p: Progress) -> None:
        announce()
        if not shown:
            say(f"{'iter':>7}  {'loss':>15}  {'|grad|':>9}  {'step':>9}  {'elapsed':>9}")
        if not shown or p.nit % every == 0:
            shown.append(p.nit)
            say(
                f"{p.nit:>7d}  {p.fun:.9e}  {p.grad_norm:9.2e}  {p.step:9.2e}  "
                f"{wtime() - start:8.2f}s"
            )

    return show


def run(args, comm) -> int:
    """``mpigd train``; returns the exit status. Collective: yes."""
    from ..train.driver import fit  # not loaded by the other commands (data convert's start)
    from ..train.options import TrainOptions

    say = reporter(comm, args.quiet)
    check_outputs_on_root(
        comm,
        {"--out": args.out, "--checkpoint": args.checkpoint, "--cache": args.cache},
        {"the data file": args.data, "--resume": args.resume, "--init": args.init},
        may_share=[("--checkpoint", "--resume")],  # a resubmitted job continues its checkpoint
    )
    announce = once(
        say,
        f"mpigd {__version__}: {model_name(args.model)} on {args.data}, "
        f"{plural(comm.size, 'rank')} ({library_version()})",
    )
    start = wtime()
    fitted = fit(
        data_source(args),
        comm=comm,
        callback=_progress_printer(say, args.print_every, start, announce),
        checkpoint=args.checkpoint,
        resume=args.resume,
        init=args.init,
        **options_of(args, TrainOptions.names()),
    )
    on_root(comm, lambda: fitted.model.save(args.out))
    announce()
    for line in _summary_lines(fitted, comm.size):
        say(line)
    say(f"model written to {args.out}")
    return 0


def _summary_lines(fitted, ranks: int) -> list[str]:
    r, t, info = fitted.result, fitted.timings, fitted.model.info
    status = "converged" if r.converged else "NOT converged"
    return [
        f"{info['optimizer']}: {status}: {r.message}",
        f"iterations {r.nit}, function evaluations {r.nfev}, allreduces {info['allreduces']}",
        f"final loss {r.fun:.12g}, gradient norm {r.grad_norm:.3g}",
        f"data: {info['n_rows']:,} rows x {info['n_features']} features on {plural(ranks, 'rank')}",
        "time, max over ranks: " + "  ".join(f"{k} {v:.3f}s" for k, v in t.items()),
    ]
