"""A catalogue of bad inputs, clashing outputs and hostile environments, for every command.

Every case runs ``python -m mpigd ...`` as a user would and asserts: the exit status; for
a failure, exactly one ``mpigd: error:`` line naming the problem, no "internal error", no
traceback; every file that existed before is byte-identical after (inputs are never
written); after a failure no file under an output's name and no temporary file. All
cases run in one process each (P = 1, MPI's singleton start); the cases marked ``mpi``
(one per command and failure class) run again under mpiexec at P = 1 and 3.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import ROOT, random_problem, run_mpi, sparse_problem, write_csr, write_h5

from mpigd.errors import EXIT_DIVERGED, EXIT_INPUT, EXIT_OK
from mpigd.model import LinearModel

# Hundreds of processes, one a case; the quick check has test_cli.py.
pytestmark = pytest.mark.slow

M, N = 101, 3
BIG = str(2**64)


@dataclass
class Case:
    argv: str  # after "mpigd"; {tmp} is the case's folder
    status: int
    message: str = ""  # on stderr: the error, or a warning of a successful run
    setup: tuple[Callable[[Path, ExitStack], None], ...] = ()
    outputs: tuple[str, ...] = ()  # names under {tmp} that a failure must not leave
    env: dict = field(default_factory=dict)
    mpi: bool = False


# ------------------------------------------------------------------------- the files


def base_files(tmp: Path, stack: ExitStack) -> None:
    """d.h5 (logistic data), lin.h5 (linear data), m.h5 and ml.h5 (models), rec/ (a
    benchmark record)."""
    write_h5(tmp / "d.h5", *random_problem("logistic", M, N, seed=3))
    write_h5(tmp / "lin.h5", *random_problem("linear", M, N, seed=3))
    LinearModel("logistic", np.array([1.0, -1.0, 0.5]), 0.1).save(tmp / "m.h5")
    LinearModel("linear", np.array([1.0, -1.0, 0.5]), 0.1).save(tmp / "ml.h5")
    (tmp / "rec").mkdir()
    (tmp / "rec" / "P1.json").write_text('{"eval_median": 1.0, "ranks": 1}')


def files(**builders) -> Callable[[Path, ExitStack], None]:
    def build(tmp: Path, stack: ExitStack) -> None:
        for name, make in builders.items():
            make(tmp / name.replace("__", "."), tmp)

    return build


def h5(**datasets):
    def make(path, tmp):
        with h5py.File(path, "w") as f:
            for key, value in datasets.items():
                f[key] = value(tmp) if callable(value) else value

    return make


def text(content: str, encoding: str = "utf-8"):
    return lambda path, tmp: path.write_text(content, encoding=encoding)


def symlink(target: str):
    return lambda path, tmp: path.symlink_to(tmp / target)


def hardlink(target: str):
    return lambda path, tmp: os.link(tmp / target, path)


def folder(path, tmp):
    path.mkdir()


def model(kind, coef, intercept):
    return lambda path, tmp: LinearModel(kind, np.asarray(coef), intercept).save(path)


def vds_with_missing_source(path, tmp):
    with h5py.File(tmp / "source.h5", "w") as f:
        f["X"] = np.ones((M, N))
    layout = h5py.VirtualLayout(shape=(M, N), dtype="f8")
    layout[:] = h5py.VirtualSource("source.h5", "X", shape=(M, N))
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("X", layout, fillvalue=0)
        f["y"] = np.ones(M)
    (tmp / "source.h5").unlink()


def links(soft: bool):
    def make(path, tmp):
        with h5py.File(path, "w") as f:
            f["y"] = np.ones(M)
            f["X"] = h5py.SoftLink("/nowhere") if soft else h5py.ExternalLink("gone.h5", "/X")

    return make


def null_x(path, tmp):
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=h5py.Empty("f8"))
        f["y"] = np.ones(M)


#: Counts of M rows: -1 in the first and the last (ranks 0 and 2 of 3), and one 0.
COUNTS = [-1, 0] + [3] * (M - 3) + [-1]


def labels(y):
    def make(path, tmp):
        write_h5(path, random_problem("logistic", len(y), N)[0], np.asarray(y, dtype=float))

    return make


def csr(change=None, **attrs):
    """A sparse logistic problem as a CSR group; ``change(group)`` spoils it."""

    def make(path, tmp):
        X, y = sparse_problem("logistic", M, 20, seed=3)
        write_csr(path, X, y, **attrs)
        if change:
            with h5py.File(path, "a") as f:
                change(f["X"])

    return make


def repeat_last_index(group):
    indices, indptr = group["indices"][:], group["indptr"][:]
    row = np.flatnonzero(np.diff(indptr) >= 2)[-1]  # the last row with two values or more
    end = indptr[row + 1]
    indices[end - 1] = indices[end - 2]  # it lists a column twice
    del group["indices"]
    group["indices"] = indices


def last_rows_nan(path, tmp):
    X, y = random_problem("logistic", M, N, seed=3)
    X[-1, 0] = np.nan  # only the last rank's rows, at any rank count
    write_h5(path, X, y)


def locked(name: str):
    """Hold ``name`` open for writing in another process (HDF5 file locking)."""

    def build(tmp: Path, stack: ExitStack) -> None:
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time, h5py; f = h5py.File(sys.argv[1], 'a'); print('open', "
                "flush=True); time.sleep(120)",
                str(tmp / name),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        stack.callback(holder.kill)
        assert holder.stdout.readline().strip() == "open"

    return build


def tampered_checkpoint(tmp: Path, stack: ExitStack) -> None:
    """A real checkpoint of d.h5 whose parameters lost an entry."""
    subprocess.run(
        [
            *(sys.executable, "-m", "mpigd", "train", tmp / "d.h5", "--model", "logistic"),
            *("--optimizer", "gd", "--max-iter", "2", "--checkpoint", tmp / "ck.h5"),
            *("--checkpoint-every", "1", "--out", tmp / "first.h5", "--quiet"),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    with h5py.File(tmp / "ck.h5", "a") as f:
        theta = f["state/theta"][:-1]
        del f["state/theta"]
        f["state/theta"] = theta


def nearly_full(name: str, free_bytes: int = 4096):
    """A small tmpfs at {tmp}/NAME with only ``free_bytes`` left (root only)."""

    def build(tmp: Path, stack: ExitStack) -> None:
        mount = tmp / name
        mount.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mount])
        if done.returncode != 0:
            pytest.skip("needs root to mount a small tmpfs for a full disk")
        stack.callback(subprocess.run, ["umount", "-l", mount])
        free = shutil.disk_usage(mount).free
        (mount / "filler").write_bytes(b"\0" * (free - free_bytes))

    return build


# ---------------------------------------------------------------------------- cases

CASES = {
    # train: outputs against inputs and each other
    "train --out is the data": Case(
        "train {tmp}/d.h5 --model logistic --out {tmp}/d.h5",
        EXIT_INPUT,
        "--out {tmp}/d.h5 is an input file, the data file",
        mpi=True,
    ),
    "train --out is a symlink to the data": Case(
        "train {tmp}/d.h5 --model logistic --out {tmp}/alias.h5",
        EXIT_INPUT,
        "is an input file, the data file",
        (files(alias__h5=symlink("d.h5")),),
    ),
    "train --out is a hard link to the data": Case(
        "train {tmp}/d.h5 --model logistic --out {tmp}/hard.h5",
        EXIT_INPUT,
        "is an input file, the data file",
        (files(hard__h5=hardlink("d.h5")),),
    ),
    "train --checkpoint is the data": Case(
        "train {tmp}/d.h5 --model logistic --out {tmp}/new.h5 --checkpoint {tmp}/d.h5",
        EXIT_INPUT,
        "--checkpoint {tmp}/d.h5 is an input file",
        outputs=("new.h5",),
    ),
    "train --checkpoint is --out": Case(
        "train {tmp}/d.h5 --model logistic --out {tmp}/x.h5 --checkpoint {tmp}/x.h5",
        EXIT_INPUT,
        "are the same file; give each output a name of its own",
        outputs=("x.h5",),
    ),
    "train --out is --resume": Case(
        "train {tmp}/d.h5 --model logistic --optimizer gd --out {tmp}/ck.h5 --resume {tmp}/ck.h5",
        EXIT_INPUT,
        "--out {tmp}/ck.h5 is an input file, --resume",
        (tampered_checkpoint,),
    ),
    # train: files that cannot be read as they claim
    "train on a folder": Case(
        "train {tmp}/dir --model logistic --out {tmp}/new.h5",
        EXIT_INPUT,
        "data file is a folder",
        (files(dir=folder),),
        ("new.h5",),
    ),
    "train on a null dataspace": Case(
        "train {tmp}/null.h5 --model logistic --out {tmp}/new.h5",
        EXIT_INPUT,
        "'X' has a null dataspace",
        (files(null__h5=null_x),),
        ("new.h5",),
        mpi=True,
    ),
    "train on a virtual dataset with a missing source": Case(
        "train {tmp}/vds.h5 --model linear --out {tmp}/new.h5",
        EXIT_INPUT,
        "is a virtual dataset whose source 'X' in source.h5 is missing",
        (files(vds__h5=vds_with_missing_source),),
        ("new.h5",),
    ),
    "train on a dangling soft link": Case(
        "train {tmp}/soft.h5 --model logistic --out {tmp}/new.h5",
        EXIT_INPUT,
        "'X' is a soft link to '/nowhere', which does not exist",
        (files(soft__h5=links(soft=True)),),
        ("new.h5",),
    ),
    "train on a dangling external link": Case(
        "train {tmp}/ext.h5 --model logistic --out {tmp}/new.h5",
        EXIT_INPUT,
        "'X' is an external link to '/X' in gone.h5",
        (files(ext__h5=links(soft=False)),),
        ("new.h5",),
    ),
    "train on a file locked by a writer": Case(
        "train {tmp}/d.h5 --model logistic --out {tmp}/new.h5",
        EXIT_INPUT,
        "another process has it open for writing",
        (locked("d.h5"),),
        ("new.h5",),
    ),
    "train with a checkpoint of the wrong length": Case(
        "train {tmp}/d.h5 --model logistic --optimizer gd --out {tmp}/new.h5 --resume {tmp}/ck.h5",
        EXIT_INPUT,
        "its state holds parameters of shape (3,), this run has 4",
        (tampered_checkpoint,),
        ("new.h5",),
    ),
    # train: sparse X
    "train on a CSC matrix": Case(
        "train {tmp}/csc.h5 --model logistic --out {tmp}/new.h5",
        EXIT_INPUT,
        "is a CSC matrix",
        (files(csc__h5=csr(**{"encoding-type": "csc_matrix"})),),
        ("new.h5",),
    ),
    "train on CSR whose last row repeats a column": Case(
        "train {tmp}/dup.h5 --model logistic --out {tmp}/new.h5",
        EXIT_INPUT,
        "holds 1 rows that list a column index twice",
        (files(dup__h5=csr(repeat_last_index)),),
        ("new.h5",),
        mpi=True,
    ),
    # train: sizes and values
    "train softmax with a label of 1e9": Case(
        "train {tmp}/cls.h5 --model softmax --out {tmp}/new.h5",
        EXIT_INPUT,
        "softmax with 1,000,000,001 classes",
        (files(cls__h5=labels([0, 1, 2] * 33 + [1, 1e9])),),
        ("new.h5",),
        mpi=True,
    ),
    # the family's targets: the bad rows lie on ranks 0 and 2 of 3
    "train poisson on negative counts": Case(
        "train {tmp}/t.h5 --model poisson --out {tmp}/new.h5",
        EXIT_INPUT,
        "'y': poisson targets must be >= 0 (counts or rates); found 2 other values (e.g. -1) "
        "in rows 0:",
        (files(t__h5=labels(COUNTS)),),
        ("new.h5",),
        mpi=True,
    ),
    "cv gamma on a zero target": Case(
        "cv {tmp}/t.h5 --model gamma --l2-path 1:0.1:2 --out {tmp}/new.h5",
        EXIT_INPUT,
        f"'y': gamma targets must be > 0; found 3 other values (e.g. {COUNTS[0]}) in rows 0:",
        (files(t__h5=labels(COUNTS)),),
        ("new.h5",),
        mpi=True,
    ),
    "train on values near 1e308": Case(
        "train {tmp}/huge.h5 --model linear --out {tmp}/new.h5",
        EXIT_INPUT,
        "the data's values overflow float64 arithmetic",
        (files(huge__h5=h5(X=np.eye(M, N) * 1e307, y=np.full(M, 1e300))),),
        ("new.h5",),
    ),
    "train with --max-iter beyond int64": Case(
        f"train {{tmp}}/d.h5 --model logistic --out {{tmp}}/new.h5 --max-iter {BIG}",
        EXIT_INPUT,
        "max_iter must be at most 2^63 - 1",
        outputs=("new.h5",),
    ),
    "train with a bad MPIGD_NUM_THREADS": Case(
        "train {tmp}/d.h5 --model logistic --out {tmp}/new.h5",
        EXIT_INPUT,
        "MPIGD_NUM_THREADS='abc' is not a whole number",
        outputs=("new.h5",),
        env={"MPIGD_NUM_THREADS": "abc"},
    ),
    "train with NaN in the last rank's rows": Case(
        "train {tmp}/nan.h5 --model logistic --out {tmp}/new.h5",
        EXIT_INPUT,
        "holds 1 NaN or infinite values in rows",
        (files(nan__h5=last_rows_nan),),
        ("new.h5",),
        mpi=True,
    ),
    "train diverging": Case(
        "train {tmp}/lin.h5 --model linear --optimizer gd --lr 1e4 --out {tmp}/new.h5",
        EXIT_DIVERGED,
        "training diverged",
        outputs=("new.h5",),
    ),
    "train logistic on one class warns": Case(
        "train {tmp}/one.h5 --model logistic --out {tmp}/new.h5 --max-iter 5",
        EXIT_OK,
        "every label is 0",
        (files(one__h5=labels([0] * M)),),
    ),
    "train softmax with an empty class warns": Case(
        "train {tmp}/gap.h5 --model softmax --l2 1e-3 --out {tmp}/new.h5",
        EXIT_OK,
        "1 of the 4 classes have no rows (2)",
        (files(gap__h5=labels([0, 1, 3] * 33 + [0, 1])),),
    ),
    # evaluate
    "evaluate --json is the data": Case(
        "evaluate {tmp}/m.h5 {tmp}/d.h5 --json {tmp}/d.h5",
        EXIT_INPUT,
        "--json {tmp}/d.h5 is an input file, the data file",
        mpi=True,
    ),
    "evaluate --json is the model": Case(
        "evaluate {tmp}/m.h5 {tmp}/d.h5 --json {tmp}/m.h5",
        EXIT_INPUT,
        "is an input file, the model file",
    ),
    "evaluate a missing model": Case(
        "evaluate {tmp}/none.h5 {tmp}/d.h5",
        EXIT_INPUT,
        "model file not found: {tmp}/none.h5",
        mpi=True,
    ),
    "evaluate a folder as the model": Case(
        "evaluate {tmp}/dir {tmp}/d.h5", EXIT_INPUT, "model file is a folder", (files(dir=folder),)
    ),
    "evaluate a model whose kind disagrees with its arrays": Case(
        "evaluate {tmp}/bad.h5 {tmp}/d.h5",
        EXIT_INPUT,
        "a softmax model needs coef of shape (n, K)",
        (files(bad__h5=model("softmax", [1.0, 2.0, 3.0], 0.0)),),
    ),
    "evaluate a model with NaN coefficients": Case(
        "evaluate {tmp}/nanm.h5 {tmp}/d.h5 --json {tmp}/s.json",
        EXIT_INPUT,
        "its coefficients hold NaN or infinite values",
        (files(nanm__h5=model("logistic", [np.nan, 1.0, 1.0], 0.0)),),
        ("s.json",),
    ),
    "evaluate with NaN in the last rank's rows": Case(
        "evaluate {tmp}/m.h5 {tmp}/nan.h5",
        EXIT_INPUT,
        "holds 1 NaN or infinite values in rows",
        (files(nan__h5=last_rows_nan),),
        mpi=True,
    ),
    "evaluate on data that is not HDF5": Case(
        "evaluate {tmp}/m.h5 {tmp}/t.h5", EXIT_INPUT, "not an HDF5 file", (files(t__h5=text("x")),)
    ),
    # predict
    "predict --out is the data": Case(
        "predict {tmp}/m.h5 {tmp}/d.h5 --out {tmp}/d.h5", EXIT_INPUT, "is an input file", mpi=True
    ),
    "predict --out is a hard link to the model": Case(
        "predict {tmp}/m.h5 {tmp}/d.h5 --out {tmp}/hard.h5",
        EXIT_INPUT,
        "is an input file, the model file",
        (files(hard__h5=hardlink("m.h5")),),
    ),
    "predict with NaN in the last rank's rows": Case(
        "predict {tmp}/m.h5 {tmp}/nan.h5 --out {tmp}/p.h5",
        EXIT_INPUT,
        "holds 1 NaN or infinite values in rows",
        (files(nan__h5=last_rows_nan),),
        ("p.h5",),
        mpi=True,
    ),
    "predict with too few features": Case(
        "predict {tmp}/m.h5 {tmp}/narrow.h5 --out {tmp}/p.h5",
        EXIT_INPUT,
        "has 2 features but the model has 3",
        (files(narrow__h5=h5(X=np.ones((M, 2)))),),
        ("p.h5",),
    ),
    "predict onto a full disk": Case(
        "predict {tmp}/m.h5 {tmp}/d.h5 --out {tmp}/full/p.h5",
        EXIT_INPUT,
        "no space left on its device",
        (nearly_full("full"),),
        ("full/p.h5",),
    ),
    # bench
    "bench run --out is the data": Case(
        "bench run {tmp}/d.h5 --out {tmp}/d.h5 --evals 1", EXIT_INPUT, "is an input file", mpi=True
    ),
    "bench run with NaN in the last rank's rows": Case(
        "bench run {tmp}/nan.h5 --out {tmp}/r.json --evals 1",
        EXIT_INPUT,
        "holds 1 NaN or infinite values in rows",
        (files(nan__h5=last_rows_nan),),
        ("r.json",),
        mpi=True,
    ),
    "bench report over its own record": Case(
        "bench report {tmp}/rec --out {tmp}/rec/P1",
        EXIT_INPUT,
        "is an input file, a benchmark record",
        outputs=("rec/P1.csv",),
    ),
    "bench report without records": Case(
        "bench report {tmp}/dir --out {tmp}/sum",
        EXIT_INPUT,
        "no benchmark records",
        (files(dir=folder),),
        ("sum.csv", "sum.json"),
    ),
    # data make
    "data make with NaN noise": Case(
        "data make {tmp}/new.h5 --rows 10 --features 2 --model linear --noise nan",
        EXIT_INPUT,
        "noise must be a finite number >= 0",
        outputs=("new.h5",),
        mpi=True,
    ),
    "data make larger than the disk": Case(
        "data make {tmp}/new.h5 --rows 1000000000000 --features 2",
        EXIT_INPUT,
        "TiB but its folder has",
        outputs=("new.h5",),
    ),
    "data make onto a full disk": Case(
        "data make {tmp}/full/new.h5 --rows 1000 --features 2",
        EXIT_INPUT,
        "free",
        (nearly_full("full"),),
        ("full/new.h5",),
    ),
    "data make --format criteo onto a full disk": Case(
        "data make {tmp}/full/new.tsv --format criteo --rows 1000",
        EXIT_INPUT,
        "the Criteo-like file {tmp}/full/new.tsv would take",
        (nearly_full("full"),),
        ("full/new.tsv",),
    ),
    "data make into a folder path": Case(
        "data make {tmp}/dir --rows 10 --features 2",
        EXIT_INPUT,
        "output path is a folder",
        (files(dir=folder),),
    ),
    # data convert
    "convert onto its input": Case(
        "data convert {tmp}/a.csv {tmp}/a.csv --format csv",
        EXIT_INPUT,
        "the output {tmp}/a.csv is an input file, the input",
        (files(a__csv=text("1,2,0\n3,4,1\n")),),
        mpi=True,
    ),
    "convert a header-only CSV": Case(
        "data convert {tmp}/h.csv {tmp}/new.h5",
        EXIT_INPUT,
        "holds a header line but no data rows",
        (files(h__csv=text("a,b,y\n")),),
        ("new.h5",),
    ),
    "convert an empty file": Case(
        "data convert {tmp}/e.csv {tmp}/new.h5",
        EXIT_INPUT,
        "holds no data",
        (files(e__csv=text("")),),
        ("new.h5",),
    ),
    "convert a malformed CSV value": Case(
        "data convert {tmp}/b.csv {tmp}/new.h5",
        EXIT_INPUT,
        "line 3, column 2",
        (files(b__csv=text("a,b,y\n1,2,0\n3,x,1\n")),),
        ("new.h5",),
    ),
    "convert a LIBSVM index of 2^40 densely": Case(
        "data convert {tmp}/w.svm {tmp}/new.h5 --dense",
        EXIT_INPUT,
        "one dense row of 1,099,511,627,776 features",
        (files(w__svm=text("1 1:0.5 1099511627776:1\n0 2:1\n")),),
        ("new.h5",),
    ),
    "train on 2^40 sparse features": Case(
        "train {tmp}/w.h5 --model logistic --out {tmp}/new.h5",
        EXIT_INPUT,
        "logistic regression on 1,099,511,627,776 features needs about",
        (files(w__h5=csr(**{"shape": (M, 2**40)})),),
        ("new.h5",),
    ),
    "convert a LIBSVM line that repeats an index": Case(
        "data convert {tmp}/r.svm {tmp}/new.h5",
        EXIT_INPUT,
        "line 2: index 3 appears twice in one row",
        (files(r__svm=text("1 1:0.5\n0 3:1 2:2 3:4\n")),),
        ("new.h5",),
    ),
    "convert a folder": Case(
        "data convert {tmp}/dir {tmp}/new.h5 --format csv",
        EXIT_INPUT,
        "input is a folder",
        (files(dir=folder),),
        ("new.h5",),
    ),
    "convert a missing file": Case(
        "data convert {tmp}/none.csv {tmp}/new.h5",
        EXIT_INPUT,
        "input file not found",
        outputs=("new.h5",),
    ),
    "convert a CSV with a byte-order mark": Case(
        "data convert {tmp}/bom.csv {tmp}/new.h5",
        EXIT_OK,
        "",
        (files(bom__csv=text("a,b,y\n1,2,0\n3,4,1\n", encoding="utf-8-sig")),),
    ),
    # data split
    "split --train is --test": Case(
        "data split {tmp}/d.h5 --test-fraction 0.2 --train {tmp}/s.h5 --test {tmp}/s.h5",
        EXIT_INPUT,
        "are the same file",
        outputs=("s.h5",),
        mpi=True,
    ),
    "split --train is the data": Case(
        "data split {tmp}/d.h5 --test-fraction 0.2 --train {tmp}/d.h5",
        EXIT_INPUT,
        "--train {tmp}/d.h5 is an input file",
        outputs=("d-test.h5",),
    ),
    "split --test is a symlink to the data": Case(
        "data split {tmp}/d.h5 --test-fraction 0.2 --test {tmp}/alias.h5",
        EXIT_INPUT,
        "is an input file, the data file {tmp}/d.h5",
        (files(alias__h5=symlink("d.h5")),),
        ("d-train.h5",),
    ),
    "split with a fraction beyond 1": Case(
        "data split {tmp}/d.h5 --test-fraction 1.5",
        EXIT_INPUT,
        "the test fraction must be between 0 and 1",
        outputs=("d-train.h5", "d-test.h5"),
    ),
    "split a null dataspace": Case(
        "data split {tmp}/null.h5 --test-fraction 0.2",
        EXIT_INPUT,
        "'X' has a null dataspace",
        (files(null__h5=null_x),),
        ("null-train.h5", "null-test.h5"),
    ),
    # cv
    "cv --out is the data": Case(
        "cv {tmp}/d.h5 --model logistic --l2-path 1:0.1:2 --out {tmp}/d.h5",
        EXIT_INPUT,
        "--out {tmp}/d.h5 is an input file, the data file",
        mpi=True,
    ),
    "cv --checkpoint is the data": Case(
        "cv {tmp}/d.h5 --model logistic --l2-path 1:0.1:2 --out {tmp}/n.h5 --checkpoint {tmp}/d.h5",
        EXIT_INPUT,
        "--checkpoint {tmp}/d.h5 is an input file, the data file",
        outputs=("n.h5",),
    ),
    "cv --resume a train checkpoint": Case(
        "cv {tmp}/d.h5 --model logistic --l2-path 1:0.1:2 --out {tmp}/n.h5 --resume {tmp}/ck.h5",
        EXIT_INPUT,
        "cannot resume from {tmp}/ck.h5: it was written by optimizer 'gd', not 'cv-lbfgs'",
        (tampered_checkpoint,),
        ("n.h5",),
    ),
    "cv --fold-key out of range": Case(
        "cv {tmp}/f.h5 --model logistic --l2-path 1:0.1:2 --folds 5 --fold-key f "
        "--out {tmp}/new.h5 --json {tmp}/cv.json",
        EXIT_INPUT,
        "fold ids 'f' must be integers 0 .. 4 (--folds 5); found 21 other values (e.g. 5) in rows",
        (files(f__h5=h5(X=np.ones((M, N)), y=np.arange(M) % 2, f=np.arange(M) // 16)),),
        ("new.h5", "cv.json"),
        mpi=True,
    ),
    "cv --fold-key not integers": Case(
        "cv {tmp}/f.h5 --model logistic --l2-path 1:0.1:2 --folds 2 --fold-key f --out {tmp}/n.h5",
        EXIT_INPUT,
        "found 1 other values (e.g. 0.5) in rows",
        (
            files(
                f__h5=h5(
                    X=np.ones((M, N)), y=np.arange(M) % 2, f=np.where(np.arange(M) == 7, 0.5, 1)
                )
            ),
        ),
        ("n.h5",),
    ),
    "cv --fold-key missing": Case(
        "cv {tmp}/d.h5 --model logistic --l2-path 1:0.1:2 --fold-key nope --out {tmp}/n.h5",
        EXIT_INPUT,
        "nope",
        outputs=("n.h5",),
    ),
    "cv more folds than rows": Case(
        "cv {tmp}/d.h5 --model logistic --l2-path 1:0.1:2 --folds 102 --out {tmp}/n.h5",
        EXIT_INPUT,
        "102 folds need at least 102 rows; the data has 101",
        outputs=("n.h5",),
    ),
    "cv one fold": Case(
        "cv {tmp}/d.h5 --model logistic --l2-path 1:0.1:2 --folds 1 --out {tmp}/n.h5",
        EXIT_INPUT,
        "cross-validation needs at least 2 folds, got 1",
        outputs=("n.h5",),
    ),
    "cv a fold the hash leaves empty": Case(
        "cv {tmp}/six.h5 --model linear --l2-path 1:0.1:2 --folds 3 --out {tmp}/n.h5",
        EXIT_INPUT,
        "fold 2 of 3 has no rows; use fewer folds",
        (files(six__h5=h5(X=np.eye(6, 2), y=np.arange(6.0))),),
        ("n.h5",),
    ),
    "cv an empty path": Case(
        "cv {tmp}/d.h5 --model logistic --l2-path 1:0.1:0 --out {tmp}/n.h5 --json {tmp}/j",
        EXIT_INPUT,
        "the penalty path '1:0.1:0' is empty",
        outputs=("n.h5", "j"),
    ),
    "cv a metric of another model": Case(
        "cv {tmp}/d.h5 --model logistic --l2-path 1:0.1:2 --metric rmse --out {tmp}/n.h5",
        EXIT_INPUT,
        "metric 'rmse' is not for logistic models",
        outputs=("n.h5",),
    ),
    "train --init of another kind": Case(
        "train {tmp}/d.h5 --model linear --init {tmp}/m.h5 --out {tmp}/n.h5",
        EXIT_INPUT,
        "cannot start from a logistic model",
        outputs=("n.h5",),
    ),
    "train --out is --init": Case(
        "train {tmp}/d.h5 --model logistic --init {tmp}/m.h5 --out {tmp}/m.h5",
        EXIT_INPUT,
        "--out {tmp}/m.h5 is an input file, --init",
    ),
    "train with a collective timeout that is not a number": Case(
        "train {tmp}/d.h5 --model logistic --out {tmp}/n.h5",
        EXIT_INPUT,
        "MPIGD_COLLECTIVE_TIMEOUT='soon' is not a number of seconds",
        outputs=("n.h5",),
        env={"MPIGD_COLLECTIVE_TIMEOUT": "soon"},
        mpi=True,
    ),
    # data info
    "info --json is the data": Case(
        "data info {tmp}/d.h5 --json {tmp}/d.h5", EXIT_INPUT, "is an input file", mpi=True
    ),
    "info on a dangling external link": Case(
        "data info {tmp}/ext.h5",
        EXIT_INPUT,
        "is an external link",
        (files(ext__h5=links(soft=False)),),
    ),
    "info on a folder": Case(
        "data info {tmp}/dir", EXIT_INPUT, "data file is a folder", (files(dir=folder),)
    ),
    "info counts NaN in the last rank's rows": Case(
        "data info {tmp}/nan.h5 --show 1",
        EXIT_OK,
        "",
        (files(nan__h5=last_rows_nan),),
        mpi=True,
    ),
}


def snapshot(tmp: Path) -> dict[str, str]:
    return {
        str(p.relative_to(tmp)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in tmp.rglob("*")
        if p.is_file() and not p.is_symlink() and p.name != "filler"
    }


def leftovers(tmp: Path) -> list[str]:
    return [
        str(p.relative_to(tmp))
        for p in tmp.rglob(".*")
        if p.name.endswith(".tmp") or p.name.startswith(".mpigd-split-")
    ]


def run_case(case: Case, tmp: Path, ranks: int | None) -> subprocess.CompletedProcess:
    with ExitStack() as stack:
        base_files(tmp, stack)
        for build in case.setup:
            build(tmp, stack)
        before = snapshot(tmp)
        argv = case.argv.format(tmp=tmp).split()
        if ranks is None:
            env = {**os.environ, "MPIGD_NUM_THREADS": "1", **case.env}
            proc = subprocess.run(
                [sys.executable, "-m", "mpigd", *argv],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                timeout=120,
            )
        else:
            proc = run_mpi(ranks, "-m", "mpigd", *argv, env=case.env)
        after = snapshot(tmp)
    message = case.message.format(tmp=tmp)
    assert proc.returncode == case.status, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"inputs written or removed: {changed}"
    if case.status != EXIT_OK:
        assert proc.stderr.count("mpigd: error:") == 1, proc.stderr
        assert message in proc.stderr, proc.stderr
        assert not [name for name in case.outputs if (tmp / name).exists()]
        assert not leftovers(tmp), leftovers(tmp)
    elif message:
        assert message in proc.stderr, proc.stderr
    return proc


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_case(case, tmp_path):
    run_case(CASES[case], tmp_path, None)


MPI_CASES = [name for name, case in CASES.items() if case.mpi]


@pytest.mark.parametrize("ranks", [1, 3])
@pytest.mark.parametrize("case", MPI_CASES)
def test_case_under_mpiexec(case, ranks, tmp_path):
    run_case(CASES[case], tmp_path, ranks)


def command(case: Case) -> str:
    words = case.argv.split()
    return " ".join(words[: 2 if words[0] in ("bench", "data") else 1])


def test_the_catalogue_covers_every_command():
    commands = {command(case) for case in CASES.values()}
    assert {"train", "cv", "evaluate", "predict", "bench run", "bench report"} <= commands
    assert {"data make", "data convert", "data split", "data info"} <= commands
    assert len(CASES) >= 60
    mpi_commands = {command(CASES[name]) for name in MPI_CASES}
    assert len(mpi_commands) >= 8


def wait_for(condition, seconds: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sigterm_while_writing_removes_the_partial_output(tmp_path):
    import signal

    out = tmp_path / "big.h5"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mpigd",
            "data",
            "make",
            out,
            *("--rows", "4000000", "--features", "16"),
        ],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    wait_for(lambda: leftovers(tmp_path))  # the temporary file is being written
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert (
        stderr.strip().splitlines()[-1] == "mpigd: interrupted by SIGTERM; partial outputs removed"
    )
    assert not out.exists() and not leftovers(tmp_path)


def test_ctrl_c_of_a_multi_rank_job_is_one_line_and_no_output(tmp_path):
    import signal

    from conftest import mpi_launch

    data = tmp_path / "d.h5"
    write_h5(data, *random_problem("logistic", 200_000, 20))
    out = tmp_path / "m.h5"
    argv = ["-m", "mpigd", "train", data, "--model", "logistic", "--optimizer", "gd"]
    argv += ["--max-iter", "100000", "--tol", "0", "--ftol", "0", "--out", out]
    proc = subprocess.Popen(**mpi_launch(3, *argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: "iter" in (proc.stdout.readline() or "iter"))  # training has started
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert stderr.count("mpigd: interrupted by SIGINT") == 1, stderr
    assert "internal error" not in stderr and "Traceback" not in stderr
    assert not out.exists() and not leftovers(tmp_path)
