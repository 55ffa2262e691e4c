#!/usr/bin/env bash
# Reproduces benchmarks/results/auto/: L-BFGS against Newton-CG (preconditioned by the
# Hessian's diagonal) to 1e-6 of the optimum, logistic regression at l2 = 1e-5 and 1e-3,
# P = 2, on six data sets of different shapes, for the rule of `--optimizer auto`
# (docs/optimizers.md): 400,000 x 262,144 CSR with Zipf-like and with flat column
# popularity (about 36 values a row), a hashed click log (Criteo's layout, 13 counts and
# 26 tokens hashed to 2^18 columns), dense 1,000,000 x 64 and 40,000 x 2,048 float32, and
# the real data/flights.h5. Needs about 1.5 GB in $TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/venv.sh mpich
tmp=${TMPDIR:-/tmp}/mpigd-auto
out=benchmarks/results/auto
mkdir -p "$tmp" "$out"
make() { [ -f "$tmp/$1" ] || mpigd data make "$tmp/$1" "${@:2}" --quiet; }
make zipf.h5 --rows 400000 --features 262144 --density 1.526e-4 --seed 11
make flat.h5 --rows 400000 --features 262144 --density 1.526e-4 --popularity flat --seed 12
make dense64.h5 --rows 1000000 --features 64 --seed 1
make wide.h5 --rows 40000 --features 2048 --dtype float32 --seed 13
make clicks.tsv --format criteo --rows 400000 --seed 14
[ -f "$tmp/clicks.h5" ] || mpiexec -n 2 mpigd data convert "$tmp/clicks.tsv" "$tmp/clicks.h5" \
    --label 0 --categorical 14-39 --hash-bits 18 --quiet
for set in zipf flat clicks wide dense64 flights; do
    file=$tmp/$set.h5
    [ "$set" = flights ] && file=data/flights.h5
    for l2 in 1e-5 1e-3; do
        mpiexec -n 2 python benchmarks/optimizers.py "$file" --l2 "$l2" \
            --optimizers lbfgs,newton --repeats 1 --out "$out/$set-$l2.json"
        echo
    done
done | tee "$out/auto.md"
