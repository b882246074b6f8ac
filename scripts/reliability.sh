#!/usr/bin/env bash
# The reliability suite (see RELIABILITY.md), with its figures.
#
#   bash scripts/reliability.sh          # the fast part (what CI runs inside tests/)
#   bash scripts/reliability.sh --full   # everything: FLOWAGENT_FULL=1 (slow tests, 50 runs
#                                        # per concurrency scenario, more fuzzing), gevent,
#                                        # and third-party test suites with/without flowagent
#
# Extra arguments go to pytest (e.g. -k overload). Needs PyPI (or a filled pip cache) the
# first time in --full mode: gevent and the third-party sdists are installed into
# ${XDG_CACHE_HOME:-~/.cache}/flowagent-reliability, never into the project's virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."

full=0
if [ "${1:-}" = "--full" ]; then full=1; shift; fi

py=${PYTHON:-python3}
if ! .venv/bin/python -c "import flowagent, pytest, xdist, hypothesis, psutil" 2>/dev/null; then
  . scripts/_env.sh "$py" .venv test  # a fresh checkout: make the virtualenv first
fi

cache="${XDG_CACHE_HOME:-$HOME/.cache}/flowagent-reliability"
mkdir -p "$cache"
figures=$(mktemp "${TMPDIR:-/tmp}/flowagent-figures.XXXXXX")
trap 'rm -f "$figures"' EXIT
export FLOWAGENT_FIGURES="$figures"

status=0
started=$(date +%s)
if [ $full = 1 ]; then
  export FLOWAGENT_FULL=1
  if ! .venv/bin/python -c "import gevent" 2>/dev/null && [ ! -d "$cache/site/gevent" ]; then
    echo "reliability: installing gevent into $cache/site (for the concurrency tests)" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check --target "$cache/site" \
      gevent >&2 || echo "reliability: gevent not installable; its test is skipped" >&2
  fi
  [ -d "$cache/site/gevent" ] && export FLOWAGENT_RELIABILITY_SITE="$cache/site"
fi

echo "== pytest tests/reliability ($([ $full = 1 ] && echo full || echo fast))" >&2
.venv/bin/python -m pytest tests/reliability -n 2 -q "$@" || status=$?
pytest_done=$(date +%s)

if [ $full = 1 ]; then
  echo "== third-party test suites, plain and under flowagent" >&2
  .venv/bin/python tests/reliability/thirdparty.py --cache "$cache" || status=$?
fi
finished=$(date +%s)

echo
echo "== reliability figures"
.venv/bin/python - "$figures" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
for r in sorted(rows, key=lambda r: r["test"]):
    name = r["test"].split("::")[-1]
    print(f"- {name}: {r['figure']}")
print(f"({len(rows)} figures)")
EOF
echo "timings: pytest $((pytest_done - started)) s" \
     "$([ $full = 1 ] && echo ", third-party suites $((finished - pytest_done)) s")"
exit $status
