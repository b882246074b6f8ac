"""One entry point's flows as a readable tree: where its sessions go, how often, how long.

An *entry* is a function that starts sessions (a request route, ``__main__:main``, a test, an
import). Its true totals come from the run's aggregates: the flow variants rooted at it
(sessions grouped by the shape of their call tree) give exact session counts, failures and
duration percentiles (mergeable histograms). The tree itself is the prefix tree of the call
paths of its kept session trees (retention keeps every variant's exemplars, every error up to
a cap and a recent window), newest first up to ``SAMPLE`` sessions: per step, the share of
those sessions that reach it, its calls per session, its duration percentiles and its error
and handled-error branches with their exception types.
"""

from __future__ import annotations

from typing import Any

from flowagent.model import histogram as H
from flowagent.store.api import RESULTS, Store

SAMPLE = 300      # kept session trees read per entry
MAX_NODES = 400   # steps drawn; the rest is counted as cut
MAX_DEPTH = 24


def entries(report: dict[str, Any], roots: list[dict[str, Any]] | None = None
            ) -> list[dict[str, Any]]:
    """Entry points of a run, most sessions first, from :func:`flowagent.reports.stats.report`'s flow
    variants, plus ``roots`` (``queries.session_roots``) that have none (a store written
    without variants still lists where its sessions start)."""
    out: dict[str, dict[str, Any]] = {}
    for v in report["variants"]:
        e = out.setdefault(v["root"], {"entry": v["root"], "sessions": 0, "failed": 0,
                                       "variants": 0})
        e["sessions"] += v["count"]
        e["failed"] += v["failed"]
        e["variants"] += 1
    for r in roots or ():
        out.setdefault(r["name"], {"entry": r["name"], "sessions": r["sessions"], "failed": 0,
                                   "variants": 0})
    return sorted(out.values(), key=lambda e: (-e["sessions"], e["entry"]))


def _kept_sessions(store: Store, run_id: str, entry: str) -> list[str]:
    return store.root_sessions(run_id, entry, SAMPLE)


def _percentiles(samples: list[int]) -> dict[str, int | None]:
    if not samples:
        return {"p50_ns": None, "p95_ns": None, "p99_ns": None}
    s = sorted(samples)

    def pick(q: float) -> int:  # nearest rank
        return s[min(len(s) - 1, int(q * len(s)))]

    return {"p50_ns": pick(0.5), "p95_ns": pick(0.95), "p99_ns": pick(0.99)}


class _Step:
    __slots__ = ("function", "children", "sessions", "calls", "errors", "partials",
                 "exceptions", "durations", "_last")

    def __init__(self, function: str) -> None:
        self.function = function
        self.children: dict[str, _Step] = {}
        self.sessions = self.calls = self.errors = self.partials = 0
        self.exceptions: dict[str, int] = {}
        self.durations: list[int] = []
        self._last = -1  # the last sample that reached this step (counts sessions once)


def _add_session(root: _Step, graph: dict[str, Any], sample: int) -> None:
    nodes = graph.get("nodes") or []
    kids: dict[Any, list[dict[str, Any]]] = {}
    top = []
    for n in nodes:
        (kids.setdefault(n["parent_id"], []) if n.get("parent_id") else top).append(n)
    stack = [(root, n, 0) for n in top[:1]]
    while stack:
        step, call, depth = stack.pop()
        if step._last != sample:
            step._last = sample
            step.sessions += 1
        step.calls += 1
        if call.get("timestamp_end") and call.get("timestamp_start"):
            step.durations.append(call["timestamp_end"] - call["timestamp_start"])
        if call.get("result_type") == "error":
            step.errors += 1
            exc = call.get("exception_type") or "?"
            step.exceptions[exc] = step.exceptions.get(exc, 0) + 1
        elif call.get("result_type") == "partial":
            step.partials += 1
        if depth >= MAX_DEPTH:
            continue
        for child in sorted(kids.get(call["id"], ()), key=lambda c: c["timestamp_start"] or 0):
            name = child["function_name"]
            sub = step.children.get(name)
            if sub is None:
                sub = step.children[name] = _Step(name)
            stack.append((sub, child, depth + 1))


def flow(store: Store, run_id: str, entry: str, report: dict[str, Any]
         ) -> dict[str, Any] | None:
    """The flow tree of ``entry`` (None when no session starts there)."""
    variants = [v for v in report["variants"] if v["root"] == entry]
    kept = _kept_sessions(store, run_id, entry)
    if not variants and not kept:
        return None
    total = sum(v["count"] for v in variants)
    names = {fid: f["name"] for fid, f in store.functions(run_id).items()}
    hists = [dict(v.hist) for v in store.variant_stats(run_id)
             if names.get(v.root_fid) == entry]
    merged = H.merge_all(hists)
    root = _Step(entry)
    sampled = 0
    for sid in kept:
        # Raw stored rows, named through one function map: building each session's full
        # graph contract (shapes, threads, callers) would cost several times as much.
        nodes = [{"id": c["call_id"], "parent_id": c["parent_id"] or None,
                  "function_name": names.get(c["fid"], "?"), "result_type": RESULTS[c["result"]],
                  "exception_type": store.shape_text(c["exc_sid"]) if c["exc_sid"] else None,
                  "timestamp_start": c["t0"], "timestamp_end": c["t1"]}
                 for c in store.session_calls(sid)]
        if nodes:
            _add_session(root, {"nodes": nodes}, sampled)
            sampled += 1

    count = 0
    cut = 0

    def out(step: _Step, depth: int) -> dict[str, Any]:
        nonlocal count, cut
        count += 1
        children = []
        for child in sorted(step.children.values(), key=lambda c: (-c.sessions, c.function)):
            if count >= MAX_NODES:
                cut += 1
                continue
            children.append(out(child, depth + 1))
        return {
            "function": step.function, "sessions": step.sessions,
            "share": step.sessions / sampled if sampled else 0.0,
            "calls_per_session": round(step.calls / step.sessions, 2) if step.sessions else 0,
            "errors": step.errors, "partials": step.partials,
            "exceptions": sorted(step.exceptions.items(), key=lambda kv: -kv[1]),
            **_percentiles(step.durations), "children": children,
        }

    tree = out(root, 0) if sampled else None
    if variants:
        duration = {"p50_ns": H.quantile(merged, 0.5), "p95_ns": H.quantile(merged, 0.95),
                    "p99_ns": H.quantile(merged, 0.99)}
        failed = sum(v["failed"] for v in variants)
    else:  # no variant aggregates: what the kept sessions say
        total = sampled
        duration = _percentiles(root.durations)
        failed = root.errors
    return {
        "entry": entry, "sessions": total, "failed": failed, "duration": duration,
        "sampled": sampled, "cut": cut, "tree": tree,
        "variants": [{"variant": v["variant"], "count": v["count"],
                      "share": v["count"] / total if total else 0, "failed": v["failed"],
                      "duration": v["duration"], "examples": v["examples"]}
                     for v in variants],
    }
