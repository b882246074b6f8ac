"""``flowagent diff RUN_A RUN_B``: what changed in how the program flows between two runs.

Compared from the aggregates of both runs: functions and call edges that appeared or went
away, call frequencies per session that shifted, input/output shape variants that are new or
gone, error clusters that are new, functions whose typical duration moved beyond noise, and
shifts in how calls end: each function's and each flow variant's result mix (success, error,
partial) and each request route's HTTP status mix, with the counts of both sides.

Noise rule for timing: a function counts as slower (or faster) only with at least
``MIN_CALLS`` calls in both runs, a p50 ratio beyond ``RATIO`` (either way) and an absolute
p50 difference of at least ``MIN_DELTA_NS`` (p50 is exact for up to ``histogram.EXACT``
distinct durations, and within 1/8 beyond).

Noise rule for result and status mixes: a share (say the error rate) counts as shifted only
with at least ``MIN_CALLS`` calls (sessions, for a flow variant) on both sides, a change of at
least ``RATE_DELTA`` (5 percentage points) and a two-proportion z score of at least
``Z_MIN``, so a handful of calls that happen to fail differently is not reported.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from ..model import histogram as H
from ..model.shapes import input_shape
from ..store.api import Store

MIN_CALLS = 5
RATIO = 1.25
MIN_DELTA_NS = 1_000
SHIFT = 1.5  # per-session frequency change that counts as a shift
RATE_DELTA = 0.05  # result or status share change that counts (with Z_MIN and MIN_CALLS)
Z_MIN = 2.0
RESULT_KINDS = ("success", "error", "partial")
REQUEST_PREFIX = "<request>:"


def _z(ka: int, na: int, kb: int, nb: int) -> float:
    """Two-proportion z score of ``ka/na`` against ``kb/nb`` (pooled); infinite when both
    sides are all-or-nothing in opposite ways."""
    pooled = (ka + kb) / (na + nb)
    se = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    diff = abs(kb / nb - ka / na)
    return diff / se if se else (math.inf if diff else 0.0)


def shifted(a: Mapping[str, int], b: Mapping[str, int], keys: Any) -> list[str]:
    """The keys whose share of ``calls`` moved beyond noise between ``a`` and ``b``."""
    na, nb = a["calls"], b["calls"]
    if na < MIN_CALLS or nb < MIN_CALLS:
        return []
    out = []
    for k in keys:
        ka, kb = a.get(k, 0), b.get(k, 0)
        if abs(kb / nb - ka / na) >= RATE_DELTA - 1e-9 and _z(ka, na, kb, nb) >= Z_MIN:
            out.append(k)
    return out


def _status_code(shape: str) -> str | None:
    """``"HTTP 503"`` (the output shape of a request root) -> ``"503"``."""
    if shape.startswith('"') and shape.endswith('"'):
        shape = shape[1:-1]
    return shape[5:] if shape.startswith("HTTP ") else None


def _side(store: Store, run_id: str) -> dict[str, Any]:
    fns = store.functions(run_id)
    name = {fid: f["name"] for fid, f in fns.items()}
    sessions = max(store.count_sessions(run_id), 1)
    nodes = {name[r.fid]: {"calls": r.calls, "hist": dict(r.hist),
                           "results": {"calls": r.calls, "error": r.errors,
                                       "partial": r.partials,
                                       "success": r.calls - r.errors - r.partials}}
             for r in store.node_stats(run_id) if r.fid in name}
    statuses: dict[str, dict[str, int]] = {}
    for r in store.shape_counts(run_id, "out"):
        fn = name.get(r.fid, "")
        code = _status_code(r.shape or "") if fn.startswith(REQUEST_PREFIX) else None
        if code is not None:
            mix = statuses.setdefault(fn, {"calls": 0})
            mix[code] = mix.get(code, 0) + r.count
            mix["calls"] += r.count
    variants: dict[str, dict[str, Any]] = {}
    roots = {r.variant: (name.get(r.root_fid, "?"), list(r.examples))
             for r in store.variant_stats(run_id)}
    for r in store.variant_results(run_id):
        root, examples = roots.get(r.variant, ("?", []))
        v = variants.setdefault(r.variant, {"root": root,
                                            "example": examples[0] if examples else None,
                                            "mix": {"calls": 0, "success": 0, "error": 0,
                                                    "partial": 0, "incomplete": 0}})
        v["mix"][r.result] = v["mix"].get(r.result, 0) + r.sessions
        v["mix"]["calls"] += r.sessions
    edges: dict[tuple[str, str], int] = {}
    for e in store.edge_stats(run_id):
        if e.caller_fid in name and e.callee_fid in name:
            key = (name[e.caller_fid], name[e.callee_fid])
            edges[key] = edges.get(key, 0) + e.count
    shapes: dict[tuple[str, str, str], int] = {}
    for r in store.shape_counts(run_id):
        if r.fid in name:
            text = r.shape or "?"
            if r.io == "in":
                text = json.dumps(input_shape(fns[r.fid]["params"], text))
            shapes[(name[r.fid], r.io, text)] = r.count
    clusters = {}
    for c in store.cluster_stats(run_id):
        key = (store.shape_text(c.exc_sid) or "?", name.get(c.fid, "?"), bool(c.handled))
        clusters[key] = clusters.get(key, 0) + c.count
    return {"sessions": sessions, "nodes": nodes, "edges": edges, "shapes": shapes,
            "clusters": clusters, "statuses": statuses, "variants": variants}


def _mix_shifts(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, list[dict]]:
    """Result shifts per function and per flow variant, status shifts per request route."""
    results = []
    for fn in sorted(set(a["nodes"]) & set(b["nodes"])):
        ma, mb = a["nodes"][fn]["results"], b["nodes"][fn]["results"]
        changed = shifted(ma, mb, RESULT_KINDS)
        if changed:
            results.append({"function": fn, "a": dict(ma), "b": dict(mb), "changed": changed})
    statuses = []
    for fn in sorted(set(a["statuses"]) & set(b["statuses"])):
        ma, mb = a["statuses"][fn], b["statuses"][fn]
        codes = sorted((set(ma) | set(mb)) - {"calls"})
        changed = shifted(ma, mb, codes)
        if changed:
            statuses.append({"function": fn, "changed": changed, **{
                side: {"calls": m["calls"], "status": {c: m.get(c, 0) for c in codes}}
                for side, m in (("a", ma), ("b", mb))}})
    variants = []
    for key in sorted(set(a["variants"]) & set(b["variants"])):
        va, vb = a["variants"][key], b["variants"][key]
        changed = shifted(va["mix"], vb["mix"], (*RESULT_KINDS, "incomplete"))
        if changed:
            variants.append({"variant": key, "root": vb["root"], "example_b": vb["example"],
                             "a": dict(va["mix"]), "b": dict(vb["mix"]), "changed": changed})
    return {"result_shifts": results, "status_shifts": statuses,
            "variant_result_shifts": variants}


def diff(store: Store, run_a: str, run_b: str) -> dict[str, Any]:
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
        **_mix_shifts(a, b),
    }
