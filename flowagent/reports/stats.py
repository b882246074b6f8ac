"""What a run's merged flows tell: the report behind ``flowagent stats`` and the viewer.

Everything here is read from the aggregates the sidecar keeps for every session (so it is
right even when old session trees were pruned): per-function profiles from mergeable
duration distributions (exact quantiles while small, see :mod:`flowagent.model.histogram`),
flow variants, error clusters, frequent paths, shapes and their drift, the
processes' CPU and memory, and what was lost on the way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..model import histogram as H
from ..store.api import Store


def _hist_stats(h: dict[int, int]) -> dict[str, Any]:
    return {"count": H.count(h), **{f"{k}_ns": v for k, v in H.summary(h).items()}}


def functions(store: Store, run_id: str) -> list[dict[str, Any]]:
    fns: Mapping[int, Mapping[str, Any]] = store.functions(run_id)
    out: list[dict[str, Any]] = []
    for r in store.node_stats(run_id):
        fn = fns.get(r.fid, {})
        out.append({
            "function": fn.get("name", "?"), "kind": fn.get("kind"), "calls": r.calls,
            "errors": r.errors, "partials": r.partials, "roots": r.roots,
            "total_ns": r.total_ns, "self_ns": r.self_ns, "cpu_ns": r.cpu_ns or 0,
            "mean_ns": r.total_ns // r.calls if r.calls else None,
            "min_ns": r.min_ns, "max_ns": r.max_ns,
            **{f"{k}_ns": v for k, v in H.summary(r.hist).items()},
        })
    out.sort(key=lambda f: (-f["total_ns"], f["function"]))
    return out


def variants(store: Store, run_id: str) -> list[dict[str, Any]]:
    fns: Mapping[int, Mapping[str, Any]] = store.functions(run_id)
    rows = store.variant_stats(run_id)
    total = sum(r.count for r in rows) or 1
    return [{
        "variant": r.variant, "root": fns.get(r.root_fid, {}).get("name", "?"),
        "count": r.count, "share": r.count / total, "failed": r.errors,
        "first_seen_ns": r.first_ns, "examples": list(r.examples),
        "duration": _hist_stats(dict(r.hist)),
    } for r in rows]


def error_clusters(store: Store, run_id: str) -> list[dict[str, Any]]:
    fns: Mapping[int, Mapping[str, Any]] = store.functions(run_id)
    return [{
        "exception": store.shape_text(r.exc_sid) or "?",
        "function": fns.get(r.fid, {}).get("name", "?"),
        "path": json.loads(r.path), "handled": bool(r.handled), "count": r.count,
        "first_seen_ns": r.first_ns, "last_seen_ns": r.last_ns,
        "examples": list(r.examples),
    } for r in store.cluster_stats(run_id)]


def frequent_paths(store: Store, run_id: str, limit: int = 20) -> list[dict[str, Any]]:
    return [{"path": json.loads(r.path), "count": r.count}
            for r in store.path_counts(run_id, limit)]


def shape_variants(store: Store, run_id: str) -> dict[str, dict[str, list[Any]]]:
    """Per function: its input and output shape variants, in order of first appearance."""
    fns = store.functions(run_id)
    rows = store.shape_counts(run_id)
    # Start times of the sessions that first showed each variant (only those: a run may
    # hold a million sessions).
    firsts = store.session_starts({r.first_session for r in rows if r.first_session})
    out: dict[str, dict[str, list[Any]]] = {}  # "params": names; "in"/"out": shape dicts
    for r in rows:
        fn = fns.get(r.fid)
        if fn is None:
            continue
        entry = out.setdefault(fn["name"], {"params": fn["params"], "in": [], "out": []})
        entry[r.io].append({"shape": r.shape, "count": r.count,
                            "first_session": r.first_session,
                            "first_seen_ns": firsts.get(r.first_session or "", 0)})
    for entry in out.values():
        for io in ("in", "out"):
            entry[io].sort(key=lambda v: (v["first_seen_ns"], v["shape"] or ""))
    return out


def shapes_and_drift(variants_by_fn: dict[str, dict[str, Any]]
                     ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Per function: merged input/output shapes (optional fields marked ``?``); and every
    shape drift event (a field appearing, disappearing or changing type) with the session
    where it first happened."""
    from .drift import Variant, drift, input_drift
    from .shapetree import merge_inputs, merge_shapes

    merged: dict[str, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    for fn, entry in sorted(variants_by_fn.items()):
        params = entry["params"]
        out: dict[str, Any] = {"inputs": {}, "output": None}
        try:
            ins = {v["shape"]: v["count"] for v in entry["in"] if v["shape"]}
            if ins:
                out["inputs"] = merge_inputs(params, ins)
            outs = {v["shape"]: v["count"] for v in entry["out"] if v["shape"]}
            if outs:
                out["output"] = merge_shapes(outs).text
            for io, found in (
                    ("in", input_drift(params, [Variant(v["shape"], v["count"],
                                                        v["first_session"], v["first_seen_ns"])
                                                for v in entry["in"] if v["shape"]])),
                    ("out", drift([Variant(v["shape"], v["count"], v["first_session"],
                                           v["first_seen_ns"])
                                   for v in entry["out"] if v["shape"]]))):
                for e in found:
                    events.append({"function": fn, "io": io, "kind": e.kind, "path": e.path,
                                   "before": e.before, "after": e.after,
                                   "session": e.session, "seen_ns": e.seen})
        except ValueError:
            out["unparsable"] = True  # a damaged shape text: reported, never fatal
        merged[fn] = out
    return merged, events


def processes(store: Store, run_id: str) -> list[dict[str, Any]]:
    out = []
    for p in store.processes(run_id):
        info = json.loads(p["info"] or "{}")
        samples = store.samples(run_id, p["pid"])
        out.append({
            "pid": p["pid"], "ppid": p["ppid"], "argv": info.get("argv", []),
            "events": p["stored_events"], "dropped_events": p["dropped_events"],
            "samples": [{"ts_ns": s.ts_ns, "cpu_s": s.cpu_s, "rss_bytes": s.rss_bytes}
                        for s in samples],
            "cpu_s": samples[-1].cpu_s if samples else None,
            "max_rss_bytes": max((s.rss_bytes for s in samples), default=None),
        })
    return out


def report(store: Store, run_id: str) -> dict[str, Any]:
    run = store.run(run_id) or {"run_id": run_id}
    vs = variants(store, run_id)
    durations = H.merge_all(dict(r.hist) for r in store.variant_stats(run_id))
    fns = functions(store, run_id)
    variants_by_fn = shape_variants(store, run_id)
    merged, drift_events = shapes_and_drift(variants_by_fn)
    return {
        "run": run,
        "loss": {k: run.get(k, 0) for k in ("produced_events", "dropped_events",
                                             "dropped_batches", "corrupt_frames",
                                             "duplicate_frames", "agent_errors", "sampled_out",
                                             "profile_displacements",
                                             "incomplete_sessions", "hook_errors")},
        "session_durations": _hist_stats(durations),
        "functions": fns,
        "error_hotspots": sorted((f for f in fns if f["errors"]),
                                 key=lambda f: (-f["errors"], f["function"])),
        "error_clusters": error_clusters(store, run_id),
        "variants": vs,
        "frequent_paths": frequent_paths(store, run_id),
        "shapes": {fn: dict(variants_by_fn[fn], merged=merged.get(fn))
                   for fn in variants_by_fn},
        "drift": drift_events,
        "processes": processes(store, run_id),
    }
