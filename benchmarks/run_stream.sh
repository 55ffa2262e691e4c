#!/usr/bin/env bash
# Streaming rows from disk against reading them plainly and against rows in memory
# (benchmarks/stream.py), and training within a budget (peak RSS of each rank, the model
# against the in-memory run's), on two files of different shapes:
#   dense: 1M x 256 float64 (2.0 GB), --memory 512MiB
#   csr:   2M x 100,000, 50 values a row, flat popularity (1.2 GB), --memory 256MiB
# at P = 1 and 2, three runs each. Writes benchmarks/results/stream/*.json and stream.md.
#
#   bash benchmarks/run_stream.sh [WORKDIR]     (WORKDIR holds the data: ~3.5 GB)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/mpigd-stream}
out=benchmarks/results/stream
mkdir -p "$work" "$out"
[ -f "$work/dense.h5" ] || mpigd data make "$work/dense.h5" --rows 1000000 --features 256 --quiet
[ -f "$work/csr.h5" ] || mpigd data make "$work/csr.h5" --rows 2000000 --features 100000 \
    --density 0.0005 --popularity flat --quiet
for spec in dense:512MiB csr:256MiB; do
    name=${spec%%:*} memory=${spec#*:}
    for ranks in 1 2; do
        for run in 1 2 3; do
            mpiexec -n "$ranks" python benchmarks/stream.py "$work/$name.h5" --memory "$memory" \
                --json "$out/$name-P$ranks-$run.json" > /dev/null
        done
    done
    for how in memory streamed; do  # training: each rank's peak RSS, and the model
        extra=() && [ "$how" = streamed ] && extra=(--memory "$memory")
        mpiexec -n 2 /usr/bin/time -f "peak_kb %M" python -m mpigd train "$work/$name.h5" \
            --model logistic --l2 1e-4 --tol 1e-10 --ftol 0 --quiet "${extra[@]}" \
            --out "$work/$name-$how.h5" 2> "$work/$name-$how.log"
    done
done
python benchmarks/stream_report.py "$work" "$out" > "$out/stream.md"
cat "$out/stream.md"
