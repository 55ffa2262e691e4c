"""Run by the tests under ``mpiexec -n P``: several mpigd commands in one job, each run by
:func:`mpigd.cli.main` as ``python -m mpigd`` runs it, so that a test of many inputs pays
for one launch per rank count rather than one per input.

Usage: python tests/mpi/mpi_commands.py COMMANDS.json [OUTCOMES.json]
COMMANDS is a JSON list of argument lists, run in order. Without OUTCOMES, the first
command whose status is not 0 ends the job with that status, and rank 0 names it on
stderr. With OUTCOMES, every command runs whatever its status, and rank 0 writes a list
with one entry per command: ``status`` (every rank's), ``seconds`` (the slowest rank's)
and ``stderr`` (every rank's, from the file descriptor, so that C libraries' output is
there too, in rank order).
"""

import json
import os
import sys
import tempfile
import time

from mpi4py import MPI

from mpigd.cli import main as mpigd


def run(argv: list[str]) -> int:
    """The exit status ``python -m mpigd ARGV`` would have (argparse exits by SystemExit)."""
    try:
        return mpigd([str(arg) for arg in argv])
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr, flush=True)
        return 1


def run_each(argv: list[str]) -> dict:
    """Run one command with this rank's stderr (fd 2) caught; its status, time, stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            start = time.monotonic()
            status = run(argv)
            seconds = time.monotonic() - start
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        stderr = caught.read().decode(errors="replace")
    return {"status": status, "seconds": seconds, "stderr": stderr}


def main(commands_path: str, outcomes_path: str | None = None) -> int:
    comm = MPI.COMM_WORLD
    with open(commands_path) as f:
        commands = json.load(f)
    if outcomes_path is None:
        for argv in commands:
            status = run(argv)
            if status != 0:
                if comm.rank == 0:
                    print(f"mpi_commands.py: status {status} from: mpigd {' '.join(argv)}",
                          file=sys.stderr, flush=True)  # fmt: skip
                return status
        return 0
    outcomes = []
    for argv in commands:
        mine = comm.gather(run_each(argv), root=0)
        if comm.rank == 0:
            outcomes.append(
                {
                    "status": [one["status"] for one in mine],
                    "seconds": max(one["seconds"] for one in mine),
                    "stderr": "".join(one["stderr"] for one in mine),
                }
            )
    if comm.rank == 0:
        with open(outcomes_path, "w") as f:
            json.dump(outcomes, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
