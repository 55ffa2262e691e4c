#!/usr/bin/env bash
# The memory-safety step of tests/run.sh: mpigd's C kernels and its C text parser built with
# AddressSanitizer and UndefinedBehaviorSanitizer, and the in-process tests that drive them
# (the kernel, sparse, estimator, memory-safety, fuzz, parser and hashing tests) run
# against that build. Any read or write
# outside a buffer, or undefined behaviour (an overflowing index, a NaN cast to an index),
# aborts the run. Needs the .venv that tests/run.sh set up and gcc's sanitizer runtimes.
#
# The sanitized copy of the package lives in a temporary folder that is the working
# directory of the run, so `import mpigd` finds it before the editable install; tests that
# launch mpiexec or `python -m mpigd` are skipped here (their processes would load the
# ordinary build) and run in the main step. Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cc=${CC:-gcc}
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp -r "$root/mpigd" "$build/mpigd"
rm -f "$build"/mpigd/kernels/_fused*.so "$build"/mpigd/io/_text*.so
suffix=$(python -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
include=$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
"$cc" -shared -fPIC -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
    -fno-sanitize-recover=all -fopenmp-simd -fno-trapping-math -ffp-contract=off -I"$include" \
    "$root/mpigd/kernels/_fused.c" -o "$build/mpigd/kernels/_fused$suffix"
"$cc" -shared -fPIC -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
    -fno-sanitize-recover=all -fno-trapping-math -I"$include" \
    "$root/mpigd/io/_text.c" -o "$build/mpigd/io/_text$suffix"
runtimes="$("$cc" -print-file-name=libasan.so) $("$cc" -print-file-name=libubsan.so)"
cd "$build"
export LD_PRELOAD=$runtimes MPIGD_SANITIZED=1 MPIGD_KERNELS=compiled
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
python -c "import mpigd.kernels._fused as f, mpigd.io._text as t, sys; sys.exit(not all(
    m.__file__.startswith('$build') for m in (f, t)))" || {
    echo "sanitize.sh: the sanitized kernels or parser are not the ones imported" >&2
    exit 1
}
# The text parsers' fuzz tests are pure Python and NumPy: nothing there for the sanitizers.
fuzz=$root/tests/kernels/test_fuzz.py
python -m pytest -q -p no:cacheprovider --rootdir="$root" -c "$root/pyproject.toml" "$@" \
    "$root/tests/kernels/test_memory_safety.py" "$fuzz" \
    "$root/tests/kernels/test_kernels.py" "$root/tests/io/test_sparse.py" "$root/tests/estimators" \
    "$root/tests/io/test_parse.py" "$root"/tests/io/test_hashing.py \
    --deselect "$fuzz::test_libsvm_parses_what_it_spells_or_names_the_line" \
    --deselect "$fuzz::test_csv_parses_what_it_spells_or_names_the_line"
