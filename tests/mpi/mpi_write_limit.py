"""Run by the tests under ``mpiexec -n P``: ``python -m mpigd ARGV`` with the files of the
last rank limited to LIMIT bytes (``RLIMIT_FSIZE``, as ``ulimit -f`` sets it), so that its
writes past LIMIT fail with EFBIG, as a disk that fills up fails them, while the other
ranks write on. Python ignores the SIGXFSZ that comes with the error.

Usage: python tests/mpi/mpi_write_limit.py LIMIT ARGV...
"""

import resource
import sys

from mpi4py import MPI

from mpigd.cli import main

if MPI.COMM_WORLD.rank == MPI.COMM_WORLD.size - 1:
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), hard))
sys.exit(main(sys.argv[2:]))
