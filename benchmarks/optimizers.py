"""How many iterations, Allreduces and seconds each optimiser needs to get within 1e-6 of
the optimum. Run under MPI; rank 0 prints a Markdown table and writes a JSON record.

    mpiexec -n P python benchmarks/optimizers.py DATA.h5 [--l2 L2] [--out RESULT.json]

The optimum f* comes from Newton's method run to a gradient norm of 1e-10 first. Each
optimiser then starts from zero and is stopped as soon as its loss reaches
``f* + 1e-6 |f*|``; SGD, which does not get there, reports the gap it reached after its
epochs. Times are wall-clock (``MPI.Wtime``, max over ranks, median of ``--repeats``
runs) of the optimisation only,
after the data is read; the Allreduce count is the number of reductions, each one pass
over the data (a Hessian evaluation or a mini-batch also counts as one).
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np
from mpi4py import MPI
from threadpoolctl import threadpool_limits

from mpigd.io.dataset import inspect_dataset, read_block
from mpigd.io.outputs import atomic_path
from mpigd.kernels.losses import make_loss
from mpigd.objective import Objective
from mpigd.optimize import OPTIMIZERS, newton
from mpigd.parallel import barrier, library_version, max_over_ranks, print0
from mpigd.train.options import TrainOptions, optimizer_arguments

GAP = 1e-6
OPTIONS = {"gd": {"max_iter": 100_000}, "nesterov": {"max_iter": 100_000}, "sgd": {"max_iter": 20}}


class Reached(Exception):
    """The loss reached the target (raised on every rank alike: losses are reduced)."""


def run_to_target(comm, f, name, info, target):
    """Run optimiser ``name`` on objective ``f`` from zero until the loss reaches
    ``target``; return the objective, the last iteration and loss seen, and seconds."""
    seen = {"nit": 0, "loss": np.inf}

    def stop_at_target(progress):
        seen.update(nit=progress.nit, loss=progress.fun)
        if progress.fun <= target:
            raise Reached

    spec = OPTIMIZERS[name]
    barrier(comm)
    start = MPI.Wtime()
    try:
        spec.run(
            f,
            np.zeros(f.size),
            tol=0.0,
            ftol=0.0,
            callback=stop_at_target,
            **OPTIONS.get(name, {}),
            **optimizer_arguments(spec, f, info.n_rows, TrainOptions()),
        )
    except Reached:
        pass
    return f, seen, float(max_over_ranks(comm, [MPI.Wtime() - start])[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--out")
    parser.add_argument("--optimizers", default="gd,nesterov,lbfgs,newton,sgd")
    parser.add_argument("--repeats", type=int, default=3, help="runs per optimiser")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    info = inspect_dataset(args.data)
    local = read_block(info, comm.rank, comm.size)
    loss = make_loss("logistic")

    def objective():
        return Objective(comm, local.X, local.y, loss, l2=args.l2)

    reference = objective()
    best = newton(
        reference,
        np.zeros(info.n_features + 1),
        hess_fun=reference.hessian,
        hessp=reference.hessp,
        hess_diag=reference.hess_diagonal,
        tol=1e-10,
        ftol=0.0,
    ).fun
    target = best + GAP * abs(best)
    rows = []
    for name in args.optimizers.split(","):
        times = []
        for _ in range(args.repeats):
            f, seen, seconds = run_to_target(comm, objective(), name, info, target)
            times.append(seconds)
        rows.append(
            {
                "optimizer": name,
                "reached": bool(seen["loss"] <= target),
                "iterations": seen["nit"],
                "allreduces": f.n_evals,
                "seconds": float(np.median(times)),
                "seconds_all": times,
                "gap": float((seen["loss"] - best) / abs(best)),
            }
        )

    print0(
        comm,
        f"## {info.path}: {info.n_rows:,} x {info.n_features} {info.x_dtype}, "
        f"logistic, l2 = {args.l2:g}, {comm.size} rank(s); f* = {best:.12g}\n",
    )
    print0(
        comm,
        f"| optimizer | reached 1e-6 | iterations | Allreduces | seconds (median of "
        f"{args.repeats}) | gap |",
    )
    print0(comm, "|---|---|---|---|---|---|")
    for r in rows:
        print0(
            comm,
            f"| {r['optimizer']} | {'yes' if r['reached'] else 'no'} | "
            f"{r['iterations']} | {r['allreduces']} | {r['seconds']:.2f} | "
            f"{r['gap']:.1e} |",
        )
    if args.out and comm.rank == 0:
        record = {
            "data": info.path,
            "shape": [info.n_rows, info.n_features],
            "dtype": str(info.x_dtype),
            "l2": args.l2,
            "ranks": comm.size,
            "optimum": best,
            "machine": platform.processor() or platform.machine(),
            "mpi": library_version(),
            "numpy": np.__version__,
            "results": rows,
        }
        with atomic_path(args.out) as tmp, open(tmp, "w") as out:
            json.dump(record, out, indent=1)


if __name__ == "__main__":
    with threadpool_limits(limits=1, user_api="blas"):
        main()
