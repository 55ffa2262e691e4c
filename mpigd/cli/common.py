"""What the commands share: command parsers and option declarations (parent parsers),
rank-0 reporting, output checks and writes on rank 0, and progress display."""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager

from ..errors import EXIT_INPUT, MpigdError
from ..host import parse_bytes
from ..io.outputs import check_outputs, write_json
from ..kernels.losses import DEFAULT_EPSILON, DEFAULT_POWER
from ..parallel import on_root, print0
from ..threads import MAX_THREADS


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows every option's default: appended where the help text does not
    already say it (options without a value, or whose default is None, say what their
    absence means in their own words)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        silent = default is None or default is False or default == argparse.SUPPRESS
        silent = silent or not action.option_strings
        if silent or "default" in text or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)"


class RootParser(argparse.ArgumentParser):
    """An ArgumentParser whose help and usage errors are printed by rank 0 only.

    Every rank parses the same arguments and exits the same way; only the printing is
    limited, so a bad option gives one message instead of one per rank. A usage error
    is one ``mpigd: error:`` line (no usage dump) and exit status 2, like any bad input;
    an invalid choice names the option and lists the choices. Help shows the defaults
    (:class:`DefaultsFormatter`).
    """

    rank = 0

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)
        self._argv: list[str] = []

    def _print_message(self, message, file=None):
        if self.rank == 0:
            super()._print_message(message, file)

    def parse_known_args(self, args=None, namespace=None):
        # kept for error(): the words around an option whose value argparse missed
        self._argv = [str(arg) for arg in (sys.argv[1:] if args is None else args)]
        return super().parse_known_args(args, namespace)

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            name = "/".join(action.option_strings) or action.dest.replace("_", " ")
            choices = ", ".join(map(str, action.choices))
            raise argparse.ArgumentError(None, f"{name} {value!r}: choose one of {choices}")

    def error(self, message):
        """Print ``message`` as one line on rank 0 and exit with status 2."""
        message = message.removeprefix("argument ")
        if ": choose one of " not in message:
            message = self._dash_value(message) or f"{message} (see {self.prog} --help)"
        self.exit(EXIT_INPUT, f"mpigd: error: {message}\n")

    def _dash_value(self, message: str) -> str | None:
        """The error for an option whose value starts with '-' (argparse takes
        ``--l2-path -1:1e-3:3`` for two options), or None: how to write it, and why such
        a value is refused anyway where the option says so (:func:`refuses_negative`)."""
        options = self._option_string_actions
        for option, value in zip(self._argv, self._argv[1:], strict=False):
            action = options.get(option)
            if (
                action is None
                or action.nargs is not None
                or not value.startswith("-")
                or value.split("=")[0] in options
                or option not in message
            ):
                continue
            why = getattr(action, "negative", None)
            advice = f"write {option}={value} for a value that starts with '-'"
            return f"{option} {value}: {advice}" + (f" (though {why})" if why else "")
        return None


def refuses_negative(action: argparse.Action, why: str) -> argparse.Action:
    """Mark ``action`` as one whose values are never negative: when argparse takes such
    a value for an option, the usage error says ``why`` too."""
    action.negative = why
    return action


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def memory_size(text: str) -> float:
    """A size in bytes: ``2GiB``, ``512M``, ``1000000``."""
    try:
        return parse_bytes(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a size > 0 such as 2GiB, 512MiB or 1000000, got {text!r}"
        ) from None


def add_memory(parser) -> None:
    parser.add_argument(
        "--memory",
        type=memory_size,
        metavar="SIZE",
        help="memory a rank may use, e.g. 2GiB; rows that do not fit are streamed from the "
        "HDF5 file on every pass (default: $MPIGD_MEMORY_PER_RANK, else a share of the "
        "node's available memory)",
    )


def add_model(parser, models) -> None:
    """``--model`` and the parameters of the losses that have one."""
    parser.add_argument(
        "--model",
        required=True,
        choices=list(models),
        help="linear (least squares), logistic (labels 0/1), softmax (labels 0..K-1), "
        "poisson (counts, log link), gamma (y > 0, log link), tweedie (y >= 0, log link), "
        "huber (robust regression) or svm (squared hinge, labels 0/1); classifiers take any "
        "label values with --labels auto",
    )
    parser.add_argument(
        "--power",
        type=float,
        metavar="P",
        help=f"tweedie's power, 1 < P < 2 (default: {DEFAULT_POWER})",
    )
    parser.add_argument(
        "--epsilon",
        type=float,
        metavar="E",
        help=f"huber's threshold: residuals beyond E cost linearly (default: {DEFAULT_EPSILON})",
    )


def thread_count(text: str) -> int:
    """A BLAS thread count: a whole number from 1 to :data:`MAX_THREADS`."""
    value = positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_THREADS}, got {value}")
    return value


def run_options() -> argparse.ArgumentParser:
    """The parent parser of every command: ``--quiet``, ``--debug``, ``--threads``."""
    parser = RootParser(add_help=False)
    parser.add_argument("--quiet", action="store_true", help="print only errors")
    parser.add_argument(
        "--debug", action="store_true", help="show Python tracebacks on errors (also MPIGD_DEBUG=1)"
    )
    parser.add_argument(
        "--threads",
        type=thread_count,
        help="BLAS threads per rank (default: $MPIGD_NUM_THREADS or 1; "
        "ranks x threads should not exceed the cores)",
    )

    return parser


def add_command(commands, name: str, run_options, func, **kwargs) -> argparse.ArgumentParser:
    """The parser of command ``name`` among ``commands`` (what ``add_subparsers``
    returned): the options of ``run_options``, the ``help`` and ``description`` in
    ``kwargs``, and ``args.func``, the function ``(args, comm) -> exit status`` that runs
    it."""
    parser = commands.add_parser(name, parents=[run_options], **kwargs)
    parser.set_defaults(func=func)
    return parser


def add_command_group(commands, name: str, help: str):
    """Command ``name`` whose sub-commands (``mpigd NAME SUB``) are added to what this
    returns; ``args.NAME_command`` names the one given."""
    group = commands.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", required=True)


def add_x_key(parser, help: str = "name of the feature dataset") -> None:
    parser.add_argument("--x-key", default="X", help=help)


def add_y_key(parser, help: str = "name of the label dataset") -> None:
    parser.add_argument("--y-key", default="y", help=help)


def add_text_input(parser, *, cache: bool = True) -> None:
    """The options of a text DATA (LIBSVM/svmlight, CSV/TSV), as ``data convert`` takes
    them; :func:`data_source` reads them."""
    text = parser.add_argument_group(
        "text data", "DATA may be LIBSVM/svmlight or CSV/TSV text (files or a quoted glob; "
        ".gz/.bz2/.xz too): each rank parses its own byte range, with no HDF5 step"
    )  # fmt: skip
    text.add_argument(
        "--format", choices=["libsvm", "csv", "tsv"], help="default: from DATA's name"
    )
    text.add_argument(
        "--label", help="CSV label column: a name or 0-based index, or 'none' (default: the last)"
    )
    add_text_options(text)
    if cache:
        text.add_argument(
            "--cache", metavar="OUT.h5", help="also write the parsed rows here, for the next run"
        )


def add_text_options(parser) -> None:
    """How text is read, for ``data convert`` and the commands that take text: --header,
    --delimiter, --zero-based, and --categorical with --hash-bits (the hashing trick)."""
    parser.add_argument(
        "--header",
        action=argparse.BooleanOptionalAction,
        help="CSV: the first line names the columns (default: detected)",
    )
    parser.add_argument("--delimiter", help="CSV field separator (default: comma; tab for .tsv)")
    parser.add_argument(
        "--zero-based",
        action=argparse.BooleanOptionalAction,
        help="LIBSVM: indices start at 0 (default: yes if an index 0 occurs)",
    )
    parser.add_argument(
        "--categorical",
        metavar="COLS",
        help="CSV/TSV: columns of categorical values (0-based indices, ranges like 14-39, or "
        "header names, comma-separated), each value NAME=VALUE hashed as scikit-learn's "
        "FeatureHasher does into 2^B columns after the numeric ones (needs --hash-bits)",
    )
    parser.add_argument(
        "--hash-bits", type=int, metavar="B", help="with --categorical: 2^B hashed columns"
    )


TEXT_OPTIONS = (
    "format", "label", "header", "delimiter", "zero_based", "cache", "categorical", "hash_bits",
)  # fmt: skip


def data_source(args):
    """DATA as the readers take it: a path, or a :class:`~mpigd.io.text_convert.TextInput`
    for text (by ``--format`` or the name); the text options given with an HDF5 file are
    an error. Collective: no (the same on every rank)."""
    from ..io.text_rows import is_text

    given = [name for name in TEXT_OPTIONS if getattr(args, name, None) is not None]
    if args.format is None and not is_text(args.data):
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise MpigdError(f"{flag} is for text data, and {args.data} is not text (--format)")
        return args.data
    return text_input(args, (args.data,), args.format)


def text_input(args, patterns: tuple[str, ...], fmt: str | None):
    """The :class:`~mpigd.io.text_convert.TextInput` of ``patterns`` with the options in
    ``args``. Collective: no."""
    from ..io.text_convert import TextInput

    return TextInput(
        patterns,
        fmt,
        label=args.label,
        header=args.header,
        delimiter=args.delimiter,
        n_features=getattr(args, "features", None),
        zero_based=args.zero_based,
        cache=getattr(args, "cache", None),
        categorical=args.categorical,
        hash_bits=args.hash_bits,
    )


def add_out(parser, help: str) -> None:
    parser.add_argument("--out", required=True, help=help)


def reporter(comm, quiet: bool):
    """Rank-0 progress output, or nothing with ``--quiet``."""
    return (lambda *parts: None) if quiet else (lambda *parts: print0(comm, *parts))


def once(say, text: str):
    """A function that says ``text`` the first time it is called: a command's header,
    printed when its work has started, so that an immediate error is the only line."""
    said = []

    def announce() -> None:
        if not said:
            said.append(True)
            say(text)

    return announce


def add_checkpointing(parser, every: str) -> None:
    """--checkpoint, --checkpoint-every (counting ``every``) and --resume."""
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help=f"write the optimiser state here every --checkpoint-every {every}, and on "
        "SIGTERM/SIGUSR1 (then exit with status 75) (default: no checkpoints)",
    )
    parser.add_argument(
        "--checkpoint-every", type=positive_int, default=50, metavar="N", help=every
    )
    parser.add_argument(
        "--resume",
        metavar="PATH",
        help="continue from this checkpoint (same data and settings) (default: none)",
    )


def check_outputs_on_root(comm, outputs: dict, inputs: dict | None = None, may_share=()) -> None:
    """Fail on every rank, before any work, if rank 0 cannot write the ``outputs`` or one
    of them is an input or another output (:func:`mpigd.io.outputs.check_outputs`; the
    keys name the files in the message). Collective: yes."""
    on_root(comm, lambda: check_outputs(outputs, inputs, may_share))


def write_json_on_root(comm, path, record) -> None:
    """Rank 0 writes ``record`` (atomically); a failure ends every rank. Collective: yes."""
    on_root(comm, lambda: write_json(path, record))


def tenths(say):
    """A progress callback that reports each tenth of the rows once."""
    reported = [0]

    def progress(done: int, total: int) -> None:
        tenth = 10 * done // total
        if tenth > reported[0]:
            reported[0] = tenth
            say(f"{done:,} / {total:,} rows ({10 * tenth}%)")

    return progress


def on_root_with_bars(comm, quiet: bool, work):
    """``work(bars)`` on rank 0 (:func:`~mpigd.parallel.on_root`), ``bars`` being a
    factory of progress bars (:func:`progress_bars`), closed when it returns; its result
    on rank 0, None elsewhere. Collective: yes."""

    def with_bars():
        with progress_bars(quiet) as bars:
            return work(bars)

    return on_root(comm, with_bars)


@contextmanager
def progress_bars(quiet: bool):
    """A factory of progress callbacks ``start(total) -> update(done)``, drawn as bars on
    stderr when it is a terminal (never with ``--quiet``); closes them on exit."""
    bars = []

    def start(total: int):
        from tqdm import tqdm

        bar = tqdm(
            total=total,
            unit=" rows",
            unit_scale=True,
            disable=True if quiet else None,
            file=sys.stderr,
            mininterval=0.5,
        )
        bars.append(bar)
        return bar.update

    try:
        yield start
    finally:
        for bar in bars:
            bar.close()
