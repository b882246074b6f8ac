#!/usr/bin/env bash
# Installs everything the test suite needs (Debian packages when run as root, a virtualenv,
# the Node tools the export and viewer tests use), then runs the suite on Python 3.11 and,
# where it is installed, again on Python 3.12 (browser tests run once, on the first).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v dot >/dev/null || need_apt+=(graphviz)
command -v node >/dev/null || need_apt+=(nodejs npm)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
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

py311=${PYTHON:-python3}
. scripts/_env.sh "$py311" .venv test
status=0
.venv/bin/python -m pytest -n 2 -q "$@" || status=$?

py312=""
for candidate in $(ls -d "$HOME"/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null) \
                 $(command -v python3.12 2>/dev/null); do
  # a pyenv shim exists even where 3.12 is not selected: take the first one that runs
  if "$candidate" --version >/dev/null 2>&1; then py312=$candidate; break; fi
done
if [ -n "$py312" ]; then
  . scripts/_env.sh "$py312" .venv312 test
  echo "== the same suite on $("$py312" --version) (browser tests ran above)" >&2
  .venv312/bin/python -m pytest -n 2 -q -m "not browser" "$@" || status=$?
fi
exit $status
