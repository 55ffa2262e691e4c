"""A catalogue of bad options, environment variables and cross-validation settings.

The same machinery as :mod:`test_catalogue` (each case runs ``python -m mpigd ...`` as a
user would: the exit status, one ``mpigd: error:`` line naming the problem, no
traceback, no "internal error", inputs untouched, no partial output), and stricter: a
failure's stderr is that one line and nothing else (no warning before it, no usage dump,
no second copy of it from another rank, merged or not). The cases marked ``mpi`` run
again under mpiexec at P = 1 and 3.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, random_problem, write_h5
from test_catalogue import Case, csr, files, h5, nearly_full, run_case

from mpigd.errors import EXIT_INPUT
from mpigd.host import parse_bytes
from mpigd.partition import hash_folds
from mpigd.train.options import option

# Hundreds of processes, one a case; the quick check has test_cli.py.
pytestmark = pytest.mark.slow

M, N = 101, 3
CV = "cv {tmp}/d.h5 --model logistic --l2-path 1:0.1:2 --out {tmp}/n.h5"
TRAIN = "train {tmp}/d.h5 --model logistic --out {tmp}/n.h5"
NEW = ("n.h5",)

# ------------------------------------------------------------------------- the files


def checkpoint(command: str, *options: str, name: str = "ck.h5", cut: float | None = None):
    """A real checkpoint {tmp}/NAME of d.h5 written by ``mpigd train`` or ``mpigd cv``,
    cut to the fraction ``cut`` of its bytes (a copy that did not finish)."""

    def build(tmp: Path, stack) -> None:
        ck = tmp / name
        argv = {
            "train": ["train", tmp / "d.h5", "--model", "logistic", "--optimizer", "gd"],
            "cv": ["cv", tmp / "d.h5", "--model", "logistic", "--l2-path", "1:0.1:2"],
        }[command]
        argv += ["--max-iter", "3", "--checkpoint", ck, "--checkpoint-every", "1"]
        argv += ["--out", tmp / f"first-{name}", "--quiet", *options]
        subprocess.run(
            [sys.executable, "-m", "mpigd", *argv], check=True, capture_output=True, cwd=ROOT
        )
        if cut is not None:
            whole = ck.read_bytes()
            ck.write_bytes(whole[: int(len(whole) * cut)])

    return build


def weightless_fold(path, tmp):
    """Weights 0 outside hashed fold 1 of 3 (seed 0): fold model 1's training rows
    weigh nothing, though they hold both classes."""
    X, y = random_problem("logistic", M, N, seed=3)
    write_h5(path, X, y, w=np.where(hash_folds(0, 0, M, 3) == 1, 1.0, 0.0))


def rows(count: int):
    return lambda path, tmp: write_h5(path, *random_problem("logistic", count, N, seed=3))


#: Ten rows, one feature, a stray softmax label: the work space per row is most of the
#: memory estimate, and the ranks hold 4, 3 and 3 rows.
TINY = h5(X=np.arange(10.0)[:, None], y=np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 1e9]))

#: Ten targets of a regression.
TARGETS = h5(X=np.arange(20.0).reshape(10, 2), y=np.arange(10.0))

# ---------------------------------------------------------------------------- cases

CASES = {
    # 1. fold counts, checked before any memory estimate
    "cv --folds 0": Case(
        f"{CV} --folds 0",
        EXIT_INPUT,
        "cross-validation needs at least 2 folds, got 0",
        outputs=NEW,
        mpi=True,
    ),
    "cv --folds -3": Case(
        f"{CV} --folds -3",
        EXIT_INPUT,
        "cross-validation needs at least 2 folds, got -3",
        outputs=NEW,
        mpi=True,
    ),
    "cv --folds 1e12": Case(
        f"{CV} --folds 1000000000000",
        EXIT_INPUT,
        "1000000000000 folds need at least 1000000000000 rows; the data has 101",
        outputs=NEW,
        mpi=True,
    ),
    "cv --folds 0 with fold ids": Case(
        f"{CV} --folds 0 --fold-key f",
        EXIT_INPUT,
        "cross-validation needs at least 2 folds, got 0",
        (files(d__h5=h5(X=np.ones((M, N)), y=np.arange(M) % 2, f=np.arange(M) % 2)),),
        NEW,
    ),
    "cv --folds -3 on a small memory budget": Case(
        f"{CV} --folds -3",
        EXIT_INPUT,
        "cross-validation needs at least 2 folds, got -3",
        outputs=NEW,
        env={"MPIGD_MEMORY_PER_RANK": "4K"},
    ),
    "train --folds 0 --exclude-fold 0": Case(
        f"{TRAIN} --folds 0 --exclude-fold 0",
        EXIT_INPUT,
        "cross-validation needs at least 2 folds, got 0",
        outputs=NEW,
        mpi=True,
    ),
    "train --folds -3 --exclude-fold 0": Case(
        f"{TRAIN} --folds -3 --exclude-fold 0",
        EXIT_INPUT,
        "cross-validation needs at least 2 folds, got -3",
        outputs=NEW,
    ),
    "train --folds 1e12 --exclude-fold 0": Case(
        f"{TRAIN} --folds 1000000000000 --exclude-fold 0",
        EXIT_INPUT,
        "1000000000000 folds need at least 1000000000000 rows; the data has 101",
        outputs=NEW,
        mpi=True,
    ),
    # 4. the held-out fold's options, by their names on the command line
    "train --exclude-fold without --folds": Case(
        f"{TRAIN} --exclude-fold 1",
        EXIT_INPUT,
        "--exclude-fold (exclude_fold) needs the fold count, --folds",
        outputs=NEW,
        mpi=True,
    ),
    "train --exclude-fold and --fold-key without --folds": Case(
        f"{TRAIN} --exclude-fold 1 --fold-key y",
        EXIT_INPUT,
        "needs the fold count, --folds, also with --fold-key (fold_key)",
        outputs=NEW,
    ),
    "train --folds without --exclude-fold": Case(
        f"{TRAIN} --folds 3",
        EXIT_INPUT,
        "--folds only chooses the fold that --exclude-fold (exclude_fold) leaves out",
        outputs=NEW,
    ),
    "train --folds and --fold-key without --exclude-fold": Case(
        f"{TRAIN} --folds 3 --fold-key y",
        EXIT_INPUT,
        "--folds and --fold-key (fold_key) only choose the fold",
        outputs=NEW,
    ),
    "train --exclude-fold beyond the folds": Case(
        f"{TRAIN} --folds 3 --exclude-fold 3",
        EXIT_INPUT,
        "--exclude-fold (exclude_fold) must lie in 0 .. 2 (with --folds 3), got 3",
        outputs=NEW,
    ),
    "train --exclude-fold -1": Case(
        f"{TRAIN} --folds 3 --exclude-fold -1",
        EXIT_INPUT,
        "must lie in 0 .. 2 (with --folds 3), got -1",
        outputs=NEW,
    ),
    "train resumed without the checkpoint's --exclude-fold": Case(
        "train {tmp}/d.h5 --model logistic --optimizer gd --out {tmp}/n.h5 --resume {tmp}/ck.h5",
        EXIT_INPUT,
        "cannot resume from {tmp}/ck.h5: its --exclude-fold (exclude_fold) is 1, but this "
        "run's is none",
        (checkpoint("train", "--folds", "3", "--exclude-fold", "1"),),
        NEW,
        mpi=True,
    ),
    "train resumed with an --exclude-fold the checkpoint lacks": Case(
        "train {tmp}/d.h5 --model logistic --optimizer gd --out {tmp}/n.h5 --resume {tmp}/ck.h5 "
        "--folds 3 --exclude-fold 2",
        EXIT_INPUT,
        "its --exclude-fold (exclude_fold) is none, but this run's is 2",
        (checkpoint("train"),),
        NEW,
    ),
    # 2. memory budgets
    "train --memory 1MiB": Case(
        f"{TRAIN} --memory 1MiB",
        EXIT_INPUT,
        "a memory budget of 1.0 MiB a rank is too little to stream",
        outputs=NEW,
        mpi=True,
    ),
    "train --memory lots": Case(
        f"{TRAIN} --memory lots",
        EXIT_INPUT,
        "--memory: must be a size > 0 such as 2GiB",
        outputs=NEW,
    ),
    "MPIGD_MEMORY_PER_RANK=0 on CSR": Case(
        "train {tmp}/s.h5 --model logistic --out {tmp}/n.h5",
        EXIT_INPUT,
        "MPIGD_MEMORY_PER_RANK='0' is not a size > 0 such as 4G",
        (files(s__h5=csr()),),
        NEW,
        env={"MPIGD_MEMORY_PER_RANK": "0"},
        mpi=True,
    ),
    "MPIGD_MEMORY_PER_RANK=-1": Case(
        f"{CV} --folds 3",
        EXIT_INPUT,
        "MPIGD_MEMORY_PER_RANK='-1' is not a size > 0",
        outputs=NEW,
        env={"MPIGD_MEMORY_PER_RANK": "-1"},
    ),
    "MPIGD_MEMORY_PER_RANK=garbage": Case(
        TRAIN,
        EXIT_INPUT,
        "MPIGD_MEMORY_PER_RANK='garbage' is not a size > 0",
        outputs=NEW,
        env={"MPIGD_MEMORY_PER_RANK": "garbage"},
    ),
    "MPIGD_MEMORY_PER_RANK=nan": Case(
        "train {tmp}/s.h5 --model logistic --out {tmp}/n.h5",
        EXIT_INPUT,
        "MPIGD_MEMORY_PER_RANK='nan' is not a size > 0",
        (files(s__h5=csr()),),
        NEW,
        env={"MPIGD_MEMORY_PER_RANK": "nan"},
    ),
    # 3. the kernels' switch, read when the commands are imported
    "MPIGD_KERNELS=bogus": Case(
        TRAIN,
        EXIT_INPUT,
        "MPIGD_KERNELS='bogus': choose auto, compiled or numpy",
        outputs=NEW,
        env={"MPIGD_KERNELS": "bogus"},
        mpi=True,
    ),
    "MPIGD_NUM_THREADS beyond any machine": Case(
        TRAIN,
        EXIT_INPUT,
        "MPIGD_NUM_THREADS='99999999999999999999' is not a whole number from 1 to 4096",
        outputs=NEW,
        env={"MPIGD_NUM_THREADS": "99999999999999999999"},
        mpi=True,
    ),
    "--threads beyond any machine": Case(
        f"{TRAIN} --threads 5000",
        EXIT_INPUT,
        "--threads: must be at most 4096, got 5000",
        outputs=NEW,
    ),
    # 5. usage errors in one line
    "cv --rule max": Case(
        f"{CV} --rule max",
        EXIT_INPUT,
        "mpigd: error: --rule 'max': choose one of min, 1se\n",
        outputs=NEW,
        mpi=True,
    ),
    "train --model probit": Case(
        "train {tmp}/d.h5 --model probit --out {tmp}/n.h5",
        EXIT_INPUT,
        "--model 'probit': choose one of linear, logistic, softmax, poisson, gamma, tweedie, "
        "huber, svm",
        outputs=NEW,
    ),
    "an unknown command": Case(
        "trian {tmp}/d.h5", EXIT_INPUT, "command 'trian': choose one of train, cv, evaluate"
    ),
    "an unknown data command": Case(
        "data mk {tmp}/n.h5", EXIT_INPUT, "data command 'mk': choose one of make", outputs=NEW
    ),
    "cv --l2-path -1:1e-3:3": Case(
        "cv {tmp}/d.h5 --model logistic --l2-path -1:1e-3:3 --out {tmp}/n.h5",
        EXIT_INPUT,
        "--l2-path -1:1e-3:3: write --l2-path=-1:1e-3:3 for a value that starts with '-' "
        "(though a penalty cannot be negative",
        outputs=NEW,
        mpi=True,
    ),
    "cv --l2-path=-1:1e-3:3": Case(
        "cv {tmp}/d.h5 --model logistic --l2-path=-1:1e-3:3 --out {tmp}/n.h5",
        EXIT_INPUT,
        "--l2-path (l2_path): the penalty path '-1:1e-3:3' holds a negative penalty",
        outputs=NEW,
    ),
    "cv --l1-path reaching 0": Case(
        "cv {tmp}/d.h5 --model logistic --l1-path 1:0:3 --out {tmp}/n.h5",
        EXIT_INPUT,
        "--l1-path (l1_path): the penalty path '1:0:3' reaches 0",
        outputs=NEW,
    ),
    "train --lr -1e-3": Case(
        f"{TRAIN} --optimizer gd --lr -1e-3",
        EXIT_INPUT,
        "--lr -1e-3: write --lr=-1e-3 for a value that starts with '-'",
        outputs=NEW,
    ),
    "train --l2 -1e-3": Case(
        f"{TRAIN} --l2 -1e-3",
        EXIT_INPUT,
        "--l2 -1e-3: write --l2=-1e-3 for a value that starts with '-' (though --l2 cannot be",
        outputs=NEW,
    ),
    "train without --out": Case(
        "train {tmp}/d.h5 --model logistic",
        EXIT_INPUT,
        "the following arguments are required: --out (see mpigd train --help)",
    ),
    "train --max-iter that is no number": Case(
        f"{TRAIN} --max-iter x", EXIT_INPUT, "--max-iter: invalid int value: 'x'", outputs=NEW
    ),
    # 6. a fold model whose training rows weigh nothing: the error, no warning first
    "cv with a fold model of zero weight": Case(
        "cv {tmp}/w.h5 --model logistic --l2-path 1:0.1:2 --folds 3 --weight-key w "
        "--out {tmp}/n.h5 --json {tmp}/cv.json",
        EXIT_INPUT,
        "the training rows of fold model 1 have total weight 0; it must be more than 0",
        (files(w__h5=weightless_fold),),
        ("n.h5", "cv.json"),
        mpi=True,
    ),
    # 7. a message that depends on no rank's rows (4, 3 and 3 rows at P = 3)
    "train softmax on ten rows with a label of 1e9": Case(
        "train {tmp}/tiny.h5 --model softmax --out {tmp}/n.h5",
        EXIT_INPUT,
        "needs about 476.8 GiB per rank for its parameters, plus 22.4 GiB of work space per "
        "row, more than the 64.0 GiB a rank has",
        (files(tiny__h5=TINY),),
        NEW,
        env={"MPIGD_MEMORY_PER_RANK": "64G"},
        mpi=True,
    ),
    "cv softmax on ten rows with a label of 1e9": Case(
        "cv {tmp}/tiny.h5 --model softmax --l2-path 1:0.1:2 --folds 2 --out {tmp}/n.h5",
        EXIT_INPUT,
        "2 fold models, each: softmax with 1,000,000,001 classes (labels 0 .. 1,000,000,000) "
        "needs about 476.8 GiB per rank for its parameters",
        (files(tiny__h5=TINY),),
        NEW,
        env={"MPIGD_MEMORY_PER_RANK": "64G"},
        mpi=True,
    ),
    # 8. checkpoints that cannot be read
    "train --resume a truncated checkpoint": Case(
        f"{TRAIN} --optimizer gd --resume {{tmp}}/half.h5",
        EXIT_INPUT,
        "cannot resume from {tmp}/half.h5: it is not a readable checkpoint (truncated or "
        "damaged); start without --resume",
        (checkpoint("train", name="half.h5", cut=0.5),),
        NEW,
        mpi=True,
    ),
    "cv --resume a truncated checkpoint": Case(
        f"{CV} --resume {{tmp}}/half.h5 --json {{tmp}}/cv.json",
        EXIT_INPUT,
        "cannot resume from {tmp}/half.h5: it is not a readable checkpoint (truncated or "
        "damaged); start without --resume",
        (checkpoint("cv", name="half.h5", cut=0.5),),
        ("n.h5", "cv.json"),
        mpi=True,
    ),
    "cv --resume a checkpoint cut to its first bytes": Case(
        f"{CV} --resume {{tmp}}/head.h5",
        EXIT_INPUT,
        "cannot resume from {tmp}/head.h5: it is not a readable checkpoint",
        (checkpoint("cv", name="head.h5", cut=0.001),),
        NEW,
    ),
    "train --resume an empty file": Case(
        f"{TRAIN} --resume {{tmp}}/empty.h5",
        EXIT_INPUT,
        "cannot resume from {tmp}/empty.h5: it is not a readable checkpoint",
        (files(empty__h5=lambda path, tmp: path.write_bytes(b"")),),
        NEW,
    ),
    "train --resume the data": Case(
        "train {tmp}/d.h5 --model logistic --out {tmp}/n.h5 --resume {tmp}/lin.h5",
        EXIT_INPUT,
        "cannot resume from {tmp}/lin.h5: it is not an mpigd checkpoint",
        outputs=NEW,
    ),
    "cv --resume with other --folds": Case(
        f"{CV} --folds 4 --resume {{tmp}}/ck.h5",
        EXIT_INPUT,
        "cannot resume from {tmp}/ck.h5: its --folds is 5, but this run's is 4; it is not "
        "this run's checkpoint: to start afresh, leave out --resume (or remove the file)",
        (checkpoint("cv"),),
        NEW,
    ),
    # 9. a disk that fills while the predictions are written
    "predict onto a disk that fills while writing": Case(
        "predict {tmp}/m.h5 {tmp}/big.h5 --out {tmp}/full/p.h5",
        EXIT_INPUT,
        "cannot write {tmp}/full/p.h5: no space left on its device",
        (files(big__h5=rows(20_000)), nearly_full("full", 128 * 1024)),
        ("full/p.h5",),
        mpi=True,
    ),
    "predict onto a disk that fills at the second dataset": Case(
        "predict {tmp}/m.h5 {tmp}/big.h5 --out {tmp}/full/p.h5",
        EXIT_INPUT,
        "cannot write {tmp}/full/p.h5: no space left on its device",
        (files(big__h5=rows(15_200)), nearly_full("full", 240 * 1024)),
        ("full/p.h5",),
    ),
    "predict onto a disk that fills as the file closes": Case(
        "predict {tmp}/m.h5 {tmp}/big.h5 --out {tmp}/full/p.h5",
        EXIT_INPUT,
        "cannot write {tmp}/full/p.h5: no space left on its device",
        (files(big__h5=rows(14_800)), nearly_full("full", 240 * 1024)),
        ("full/p.h5",),
    ),
    # 10. the family's parameters and classes
    "tweedie --power 2": Case(
        "train {tmp}/t.h5 --model tweedie --power 2 --out {tmp}/n.h5",
        EXIT_INPUT,
        "--power must lie strictly between 1 and 2 (compound Poisson-Gamma), got 2.0",
        (files(t__h5=TARGETS),),
        NEW,
        mpi=True,
    ),
    "--power for poisson": Case(
        "train {tmp}/t.h5 --model poisson --power 1.5 --out {tmp}/n.h5",
        EXIT_INPUT,
        "--power is the tweedie model's; --model poisson has none",
        outputs=NEW,
    ),
    "huber --epsilon 0": Case(
        "train {tmp}/t.h5 --model huber --epsilon 0 --out {tmp}/n.h5",
        EXIT_INPUT,
        "--epsilon must be a finite number > 0, got 0.0",
        (files(t__h5=TARGETS),),
        NEW,
        mpi=True,
    ),
    "svm with three label values": Case(
        "train {tmp}/c3.h5 --model svm --labels auto --out {tmp}/n.h5",
        EXIT_INPUT,
        "linear SVM needs exactly 2 label values; 'y' has 3: 0, 1, 2",
        (files(c3__h5=h5(X=np.ones((10, 1)), y=np.arange(10.0) % 3)),),
        NEW,
        mpi=True,
    ),
    "svm with class 2": Case(
        "train {tmp}/c3.h5 --model svm --out {tmp}/n.h5",
        EXIT_INPUT,
        "'y': svm labels must be 0 or 1 (any two values: --labels auto); found 3 other values",
        (files(c3__h5=h5(X=np.ones((10, 1)), y=np.arange(10.0) % 3)),),
        NEW,
    ),
}


def check(case: Case, proc: subprocess.CompletedProcess) -> None:
    """What :func:`test_catalogue.run_case` leaves open: a failure's stderr is its one
    error line, from one rank, about every rank alike."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mpigd: error: ") and "(on rank" not in lines[0], proc.stderr


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_option_case(case, tmp_path):
    check(CASES[case], run_case(CASES[case], tmp_path, None))


MPI_CASES = [name for name, case in CASES.items() if case.mpi]


@pytest.mark.parametrize("ranks", [1, 3])
@pytest.mark.parametrize("case", MPI_CASES)
def test_option_case_under_mpiexec(case, ranks, tmp_path):
    check(CASES[case], run_case(CASES[case], tmp_path, ranks))


def test_the_catalogue_covers_the_options():
    assert len(CASES) >= 35 and len(MPI_CASES) >= 15
    assert all(case.status == EXIT_INPUT for case in CASES.values())


def test_the_kernels_switch_is_a_value_error_in_python():
    code = "import mpigd.kernels.compiled"
    env = {**os.environ, "MPIGD_KERNELS": "fast"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode != 0
    assert "InvalidInputError: MPIGD_KERNELS='fast': choose auto, compiled or numpy" in run.stderr


@pytest.mark.parametrize(("value", "kernels"), [("", "compiled"), (" NumPy ", "numpy")])
def test_the_kernels_switch_reads_an_empty_value_as_unset_and_ignores_case(value, kernels):
    code = "from mpigd.kernels import compiled; print(compiled.name())"
    env = {**os.environ, "MPIGD_KERNELS": value}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == kernels


@pytest.mark.parametrize("text", ["0", "-1", "-0", "nan", "inf", "", " ", "1X"])
def test_a_memory_budget_is_a_positive_size(text):
    with pytest.raises(ValueError):
        parse_bytes(text)
    assert parse_bytes("512M") == 512 * 2**20 and parse_bytes("0.5") == 0.5


def test_options_are_named_as_typed_and_as_passed():
    assert option("l2") == "--l2"
    assert option("exclude_fold") == "--exclude-fold (exclude_fold)"
