# Shared by scripts/demo.sh and scripts/test.sh: make a virtualenv with flowagent installed.
# Usage: . scripts/_env.sh PYTHON VENV_DIR EXTRAS
set -euo pipefail
_py=${1:-python3}
_venv=${2:-.venv}
_extras=${3:-}
if [ ! -x "$_venv/bin/python" ]; then
  echo "flowagent setup: creating $_venv with $($_py --version 2>&1)" >&2
  "$_py" -m venv "$_venv"
fi
_stamp="$_venv/.flowagent-installed$_extras"
# Reinstall when the build changed: pyproject.toml, setup.py or the C accelerator's sources
# (an editable install compiles the extension once: a changed C file needs a rebuild).
if [ ! -f "$_stamp" ] || [ pyproject.toml -nt "$_stamp" ] || [ setup.py -nt "$_stamp" ] \
    || [ -n "$(find flowagent \( -name '*.c' -o -name '*.h' \) -newer "$_stamp" -print -quit)" ]; then
  echo "flowagent setup: installing flowagent${_extras:+[$_extras]} into $_venv" >&2
  "$_venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  "$_venv/bin/python" -m pip install -q --disable-pip-version-check -e ".${_extras:+[$_extras]}" >&2
  touch "$_stamp"
fi
