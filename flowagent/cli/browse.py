"""``flowagent runs``, ``sessions`` and ``trace``: listing what was recorded.
"""

from __future__ import annotations


from ..errors import NotFoundError
from .common import _iso, _ms, _print_json, _run_id, _store

TYPE_CHECKING = False  # `flowagent run` imports as little as it can: no typing, no argparse
if TYPE_CHECKING:
    import argparse
    from typing import Any, TextIO


def cmd_runs(ns: argparse.Namespace, out: TextIO) -> int:
    import json

    store = _store(ns.data_dir, ns.store)
    runs = store.runs()
    if ns.json:
        _print_json(runs, out)
        return 0
    if not runs:
        out.write("no runs yet; record one with 'flowagent run app.py'\n")
        return 0
    out.write(f"{'RUN':<24} {'STARTED (UTC)':<19} {'EXIT':>4} {'SESSIONS':>8} {'CALLS':>8} "
              f"{'ERRORS':>6} {'DROPPED':>7}  COMMAND\n")
    for r in runs:
        cmd = " ".join(json.loads(r["argv"] or "[]"))
        exit_code = "-" if r["exit_code"] is None else str(r["exit_code"])
        out.write(f"{r['run_id']:<24} {_iso(r['started_ns']):<19} {exit_code:>4} "
                  f"{r['sessions']:>8} {r['calls']:>8} {r['errors']:>6} "
                  f"{r['dropped_events']:>7}  {cmd}\n")
    return 0


def cmd_sessions(ns: argparse.Namespace, out: TextIO) -> int:
    store = _store(ns.data_dir, ns.store)
    run_id = _run_id(store, ns.run)
    rows = store.sessions(run_id, result=ns.result, limit=ns.limit, offset=0)
    if ns.json:
        _print_json(rows, out)
        return 0
    out.write(f"{'SESSION':<20} {'RESULT':<10} {'START (UTC)':<19} {'DURATION':>11} "
              f"{'CALLS':>6}  ROOT\n")
    for s in rows:
        out.write(f"{s['session_id']:<20} {s['result'] or 'open':<10} {_iso(s['started_ns']):<19} "
                  f"{_ms(s['duration_ns']):>11} {s['calls']:>6}  {s['name'] or '?'}\n")
    total = store.count_sessions(run_id)
    if total > len(rows):
        out.write(f"({len(rows)} of {total} sessions shown; --limit N shows more)\n")
    return 0


_MARKS = {"success": ("✓", "+"), "error": ("✗", "x"), "partial": ("~", "~"),
          "incomplete": ("…", "?")}


def _fmt_in(shape: dict[str, str] | None) -> str:
    if shape is None:
        return "(...)"  # shapes not sampled for this call (the shape budget)
    return "(" + ", ".join(f"{k}: {v}" for k, v in shape.items()) + ")"


def cmd_trace(ns: argparse.Namespace, out: TextIO) -> int:
    store = _store(ns.data_dir, ns.store)
    g = store.session_graph(ns.session_id)
    if g is None:
        raise NotFoundError(f"no session {ns.session_id!r}; 'flowagent sessions' lists them")
    if ns.json:
        from ..reports.export.jsonfmt import session_json

        _print_json(session_json(g), out)
        return 0
    utf = (getattr(out, "encoding", None) or "").lower().replace("-", "") == "utf8"
    idx = 0 if utf else 1
    branch, last, pipe, blank = ("├─ ", "└─ ", "│  ", "   ") if utf else ("|- ", "`- ", "|  ", "   ")
    arrow = "→" if utf else "->"
    out.write(f"session {g['session_id']}  {g['name']}  {g['result_type']}"
              f"{'' if g['complete'] else ' (incomplete)'}\n")
    children: dict[Any, list[dict]] = {}
    for n in g["nodes"]:
        children.setdefault(n["parent_id"], []).append(n)
    roots = children.get(None, [])

    def show(n: dict, prefix: str, is_last: bool) -> None:
        mark = _MARKS.get(n["result_type"], ("?", "?"))[idx]
        dur = _ms(n["timestamp_end"] - n["timestamp_start"])
        outcome = n["exception_type"] if n["result_type"] == "error" else n["output_shape"]
        out.write(f"{prefix}{last if is_last else branch}{mark} {n['function_name']}  {dur}  "
                  f"{_fmt_in(n['input_shape'])} {arrow} {outcome or '?'}\n")
        kids = children.get(n["id"], [])
        for i, k in enumerate(kids):
            show(k, prefix + (blank if is_last else pipe), i == len(kids) - 1)

    for i, r in enumerate(roots):
        show(r, "", i == len(roots) - 1)
    return 0
