"""Run by the multi-host tests under mpiexec: where each rank runs and what it sees.

Usage: python tests/mpi/mpi_cluster.py OUT.json [MEGABYTES]
Every rank reports its host name, MPI's idea of its node (the ranks sharing memory with
it), mpigd's memory budget, and sums MEGABYTES of float64 (default 8) with Allreduce five
times, so that the traffic between hosts can be counted on their links. Rank 0 writes
the reports as JSON.
"""

import json
import socket
import sys

import numpy as np
from mpi4py import MPI

from mpigd.host import available_memory
from mpigd.parallel import MEMORY_SHARE, memory_per_rank


def main(out: str, megabytes: float = 8.0) -> None:
    comm = MPI.COMM_WORLD
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    budget = memory_per_rank(comm)
    report = {
        "rank": comm.rank,
        "host": socket.gethostname(),
        "node_ranks": node.size,
        "ranks_in_budget": round(MEMORY_SHARE * available_memory() / budget),
    }
    values = np.ones(int(megabytes * 2**20 / 8))
    for _ in range(5):
        comm.Allreduce(MPI.IN_PLACE, values)
    report["sum_ok"] = bool(values[0] == comm.size**5)
    reports = comm.gather(report)
    if comm.rank == 0:
        with open(out, "w") as f:
            json.dump(reports, f)


if __name__ == "__main__":
    main(sys.argv[1], *map(float, sys.argv[2:]))
