#!/usr/bin/env bash
# Installs flowagent (editable) and the benchmark peers into ./.venv (or $VENV).
# Usage (from the repository root or anywhere):  bash benchmarks/setup.sh
#   3.12:  PYTHON=python3.12 VENV=.venv312 bash benchmarks/setup.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
venv="$(cd "$root" && realpath -m "${VENV:-.venv}")"
if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
# flowagent itself: installed editable once (reinstalling it under other running tests would
# briefly remove it, so an existing install is left alone). Checked from / : from the
# checkout, the source tree itself would import without any install (and no extension built).
if ! (cd / && "$venv/bin/python" -c "import flowagent") >/dev/null 2>&1; then
    "$venv/bin/python" -m pip install --quiet -e "$root"
fi
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
# GNU time reports the peak RSS of a process tree (launcher + program + sidecar).
if [ ! -x /usr/bin/time ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -qq time >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq time; }) \
        || echo "benchmarks: could not install GNU time; tree RSS falls back to os.wait4"
fi
echo "benchmarks: peers installed into $venv"
