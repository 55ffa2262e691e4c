#!/usr/bin/env bash
# Reproduces benchmarks/results/optimizers-*: every optimiser to 1e-6 of the optimum, for
# logistic regression on a 1,000,000 x 64 synthetic dataset and on data/flights.h5, at
# P = 1 and 2. Needs about 600 MB in $TMPDIR for the synthetic file.
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/venv.sh mpich
data=${TMPDIR:-/tmp}/mpigd-logistic-1M-64.h5
[ -f "$data" ] || mpigd data make "$data" --rows 1000000 --features 64 --model logistic --seed 1 --quiet
out=benchmarks/results
for ranks in 1 2; do
    for set in flights synthetic; do
        file=data/flights.h5
        [ "$set" = synthetic ] && file=$data
        mpiexec -n "$ranks" python benchmarks/optimizers.py "$file" --l2 1e-4 \
            --out "$out/optimizers-$set-P$ranks.json"
        echo
    done
done | tee "$out/optimizers.md"
