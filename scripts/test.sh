#!/usr/bin/env bash
# Installs everything the test suite needs (Debian packages when run as root, a virtualenv,
# the Node tools the export and viewer tests use), then runs the suite on Python 3.11 and,
# where they are installed, again on Python 3.12 and 3.13 (browser tests run once, on the
# first). Each run prints how long it took; pytest workers: one per core (at least 2).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v dot >/dev/null || need_apt+=(graphviz)
command -v node >/dev/null || need_apt+=(nodejs npm)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# PostgreSQL for the shared-store tests (they start their own server with initdb + pg_ctl;
# Debian keeps those under /usr/lib/postgresql/<version>/bin, off PATH)
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "flowagent tests: installing ${need_apt[*]} (Debian packages)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "flowagent tests: missing ${need_apt[*]}; the tests that need them are skipped" >&2
  fi
fi
if command -v npm >/dev/null; then
  for dir in tests/tools/*/; do
    if [ -f "$dir/package-lock.json" ] && [ ! -d "$dir/node_modules" ]; then
      npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2
    fi
  done
fi

jobs=${FLOWAGENT_TEST_JOBS:-$(nproc 2>/dev/null || echo 2)}
[ "$jobs" -ge 2 ] || jobs=2

py311=${PYTHON:-python3}
. scripts/_env.sh "$py311" .venv test
status=0
# Static checks first: a new lint finding or a type error in the strictly typed packages
# (pyproject.toml: [tool.ruff], [tool.mypy]) fails the run like a failing test.
.venv/bin/ruff check --quiet . || { echo "== ruff: findings above" >&2; status=1; }
.venv/bin/mypy || { echo "== mypy: errors above" >&2; status=1; }
start=$SECONDS
.venv/bin/python -m pytest -n "$jobs" -q "$@" || status=$?
echo "== $("$py311" --version): $((SECONDS - start)) s" >&2

find_python() {  # the first interpreter of version $1 that runs (pyenv, then PATH)
  for candidate in $(ls -d "$HOME"/.pyenv/versions/"$1".*/bin/python"$1" 2>/dev/null) \
                   $(command -v python"$1" 2>/dev/null); do
    # a pyenv shim exists even where the version is not selected: take one that runs
    if "$candidate" --version >/dev/null 2>&1; then echo "$candidate"; return; fi
  done
}

for version in 3.12 3.13; do
  py=$(find_python "$version")
  [ -n "$py" ] || { echo "== Python $version is not installed: not tested on it" >&2; continue; }
  venv=.venv${version/./}
  . scripts/_env.sh "$py" "$venv" test
  echo "== the same suite on $("$py" --version) (browser tests ran above)" >&2
  start=$SECONDS
  "$venv/bin/python" -m pytest -n "$jobs" -q -m "not browser" "$@" || status=$?
  echo "== $("$py" --version): $((SECONDS - start)) s" >&2
done
exit $status
