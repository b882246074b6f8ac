#!/usr/bin/env bash
# Records the demo shop application under flowagent, then shows what was recorded.
# Everything it needs is installed into ./.venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_env.sh "${PYTHON:-python3}" .venv ""
FA=.venv/bin/flowagent
echo "== flowagent run demo/run_demo.py"
$FA run demo/run_demo.py
echo
echo "== flowagent sessions (first 12)"
$FA sessions --limit 12
session=$($FA sessions --json --limit 1000 | .venv/bin/python -c \
  'import json,sys; print(next(s["session_id"] for s in json.load(sys.stdin) if s["name"]=="<request>:POST /checkout" and s["result"]=="error"))')
echo
echo "== flowagent trace $session   (a checkout request that failed with HTTP 500)"
$FA trace "$session"
$FA export --format dot -o .flowagent/architecture.dot
$FA export --format mermaid -o .flowagent/architecture.mmd
$FA export --format chrome -o .flowagent/trace.json
echo
echo "The data is in .flowagent/flowagent.db. Next:"
echo "  .venv/bin/flowagent view --open                    # the web viewer (http://127.0.0.1:8765/)"
echo "  .venv/bin/flowagent stats                          # profiles, flow variants, error clusters"
echo "  .venv/bin/flowagent export --format json           # merged architecture graph"
echo "  dot -Tsvg .flowagent/architecture.dot -o arch.svg   # needs graphviz"
echo "  open .flowagent/trace.json in https://ui.perfetto.dev (Chrome trace format)"
