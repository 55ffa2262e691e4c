#!/usr/bin/env bash
# Set up .venv if needed and run the whole test suite: lint, serial unit tests, and the
# multi-rank tests, which launch mpiexec with 1 to 4 ranks themselves.
# Extra arguments go to pytest (e.g. -k partition, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/venv.sh mpich,test
ruff check .
exec python -m pytest "$@"
