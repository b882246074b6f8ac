"""``flowagent diff RUN_A RUN_B``: what changed in how the program flows between two runs.

Compared from the aggregates of both runs: functions and call edges that appeared or went
away, call frequencies per session that shifted, input/output shape variants that are new or
gone, error clusters that are new, and functions whose typical duration moved beyond noise.

Noise rule for timing: a function counts as slower (or faster) only with at least
``MIN_CALLS`` calls in both runs, a p50 ratio beyond ``RATIO`` (either way) and an absolute
p50 difference of at least ``MIN_DELTA_NS`` (p50 is exact for up to ``histogram.EXACT``
distinct durations, and within 1/8 beyond).
"""

from __future__ import annotations

import json
from typing import Any

from .sidecar import histogram as H
from .store.sqlite import SQLiteStore

MIN_CALLS = 5
RATIO = 1.25
MIN_DELTA_NS = 1_000
SHIFT = 1.5  # per-session frequency change that counts as a shift


def _side(store: SQLiteStore, run_id: str) -> dict[str, Any]:
    fns = store.functions(run_id)
    name = {fid: f["name"] for fid, f in fns.items()}
    sessions = max(store.db.execute("SELECT COUNT(*) FROM sessions WHERE run_id=?",
                                    (run_id,)).fetchone()[0], 1)
    nodes = {name[r["fid"]]: {"calls": r["calls"], "hist": H.decode(r["hist"])}
             for r in store.db.execute("SELECT * FROM graph_nodes WHERE run_id=?", (run_id,))
             if r["fid"] in name}
    edges: dict[tuple[str, str], int] = {}
    for r in store.db.execute("SELECT * FROM graph_edges WHERE run_id=?", (run_id,)):
        if r["caller_fid"] in name and r["callee_fid"] in name:
            key = (name[r["caller_fid"]], name[r["callee_fid"]])
            edges[key] = edges.get(key, 0) + r["count"]
    shapes: dict[tuple[str, str, str], int] = {}
    for r in store.db.execute("SELECT * FROM shape_counts WHERE run_id=?", (run_id,)):
        if r["fid"] in name:
            text = store.shape_text(r["shape_sid"]) or "?"
            if r["io"] == "in":
                text = json.dumps(dict(zip(fns[r["fid"]]["params"], json.loads(text))))
            shapes[(name[r["fid"]], r["io"], text)] = r["count"]
    clusters = {}
    for r in store.db.execute("SELECT * FROM error_clusters WHERE run_id=?", (run_id,)):
        key = (store.shape_text(r["exc_sid"]) or "?", name.get(r["fid"], "?"),
               bool(r["handled"]))
        clusters[key] = clusters.get(key, 0) + r["count"]
    return {"sessions": sessions, "nodes": nodes, "edges": edges, "shapes": shapes,
            "clusters": clusters}


def diff(store: SQLiteStore, run_a: str, run_b: str) -> dict[str, Any]:
    a, b = _side(store, run_a), _side(store, run_b)
    fa, fb = set(a["nodes"]), set(b["nodes"])
    ea, eb = set(a["edges"]), set(b["edges"])
    shifts = []
    for key in sorted(ea & eb):
        ra = a["edges"][key] / a["sessions"]
        rb = b["edges"][key] / b["sessions"]
        if max(a["edges"][key], b["edges"][key]) >= MIN_CALLS and (
                rb > ra * SHIFT or ra > rb * SHIFT):
            shifts.append({"from": key[0], "to": key[1], "per_session_a": round(ra, 3),
                           "per_session_b": round(rb, 3)})
    timing = []
    for fn in sorted(fa & fb):
        na, nb = a["nodes"][fn], b["nodes"][fn]
        if na["calls"] < MIN_CALLS or nb["calls"] < MIN_CALLS:
            continue
        pa, pb = H.quantile(na["hist"], 0.5), H.quantile(nb["hist"], 0.5)
        if not pa or not pb or abs(pb - pa) < MIN_DELTA_NS:
            continue
        ratio = pb / pa
        if ratio >= RATIO or ratio <= 1 / RATIO:
            timing.append({"function": fn, "p50_a_ns": pa, "p50_b_ns": pb,
                           "ratio": round(ratio, 2),
                           "change": "slower" if ratio > 1 else "faster"})
    sa, sb = set(a["shapes"]), set(b["shapes"])
    return {
        "run_a": run_a, "run_b": run_b,
        "sessions": {"a": a["sessions"], "b": b["sessions"]},
        "functions": {"new": sorted(fb - fa), "removed": sorted(fa - fb)},
        "edges": {"new": [{"from": u, "to": v} for u, v in sorted(eb - ea)],
                  "removed": [{"from": u, "to": v} for u, v in sorted(ea - eb)]},
        "frequency_shifts": shifts,
        "shapes": {
            "new": [{"function": f, "io": io, "shape": s} for f, io, s in sorted(sb - sa)
                    if f in fa],
            "gone": [{"function": f, "io": io, "shape": s} for f, io, s in sorted(sa - sb)
                     if f in fb],
        },
        "errors": {
            "new": [{"exception": e, "function": f, "handled": h, "count": b["clusters"][k]}
                    for k in sorted(set(b["clusters"]) - set(a["clusters"]))
                    for e, f, h in [k]],
            "gone": [{"exception": e, "function": f, "handled": h}
                     for k in sorted(set(a["clusters"]) - set(b["clusters"]))
                     for e, f, h in [k]],
        },
        "timing": timing,
    }
