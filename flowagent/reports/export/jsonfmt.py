"""JSON export: the seed's session-graph and merged-graph contracts.

The store keeps times as integer nanoseconds; the JSON contract shows them as ISO 8601 UTC
strings with microseconds, which is what people and most tools read without help. Results
are fresh dicts: a caller may mutate them without touching the store's objects.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flowagent.reports.export._common import duration_ns, start_ns
from flowagent.model.contract import MergedGraph, SessionGraph

_EPOCH = datetime(1970, 1, 1)

# Keys listed first, in this order; any other key of the input follows unchanged.
_SESSION_KEYS = ("session_id", "run_id", "name", "result_type", "complete")
_MERGED_NODE_KEYS = ("id", "function_name", "occurrences", "input_shape", "output_shape")


def iso_utc(ns: int | None) -> str | None:
    """Unix epoch nanoseconds → ``2026-11-22T14:55:00.123456Z`` (truncated to microseconds).

    Integer arithmetic throughout: going through a float would lose the last microseconds.
    """
    if ns is None:
        return None
    moment = _EPOCH + timedelta(microseconds=int(ns) // 1000)
    return moment.isoformat(timespec="microseconds") + "Z"


def _session_node(node: Mapping[str, Any]) -> dict[str, Any]:
    end = node.get("timestamp_end")
    return {
        "id": node.get("id"),
        "function_name": node.get("function_name"),
        "caller": node.get("caller"),
        "input_shape": copy.deepcopy(node.get("input_shape")),
        "output_shape": copy.deepcopy(node.get("output_shape")),
        "result_type": node.get("result_type"),
        "exception_type": node.get("exception_type"),
        "timestamp_start": iso_utc(node.get("timestamp_start")),
        "timestamp_end": iso_utc(end),
        # An unfinished call (no end) has no duration rather than a made-up one.
        "duration_ms": round(duration_ns(node) / 1e6, 6) if end is not None else None,
        "thread": node.get("thread"),
        "thread_name": node.get("thread_name"),
        "pid": node.get("pid"),
        "parent_id": node.get("parent_id"),
        "cpu_ns": node.get("cpu_ns"),  # None unless recorded with --cpu-time
    }


def session_json(g: SessionGraph) -> dict[str, Any]:
    """A session graph in the seed's JSON contract (nodes in start order)."""
    out: dict[str, Any] = {key: g.get(key) for key in _SESSION_KEYS if key in g}
    out.setdefault("session_id", g.get("session_id"))
    nodes = sorted(g.get("nodes", ()), key=start_ns)
    out["nodes"] = [_session_node(node) for node in nodes]
    out["edges"] = [
        {"from": edge.get("from"), "to": edge.get("to"), "branch": edge.get("branch")}
        for edge in g.get("edges", ())
    ]
    return out


def merged_json(g: MergedGraph) -> dict[str, Any]:
    """The merged architecture graph in the seed's JSON contract.

    Contract fields come first; every extra field of the store (module, errors, shape
    variants, timings, ...) is kept after them.
    """
    source: dict[str, Any] = copy.deepcopy(dict(g))
    nodes = []
    for node in source.pop("nodes", ()):
        ordered = {key: node.pop(key, None) for key in _MERGED_NODE_KEYS}
        ordered.update(node)
        nodes.append(ordered)
    edges = []
    for edge in source.pop("edges", ()):
        ordered = {
            "from": edge.pop("from", None),
            "to": edge.pop("to", None),
            "branch": edge.pop("branch", None),
            "frequency": edge.pop("frequency", 0),
        }
        ordered.update(edge)
        edges.append(ordered)
    stats = source.pop("stats", None) or {}
    out_stats = {
        "total_sessions": stats.pop("total_sessions", 0),
        "frequent_paths": [
            {"path": list(item.get("path", ())), "count": item.get("count", 0)}
            for item in stats.pop("frequent_paths", ())
        ],
        "error_nodes": list(stats.pop("error_nodes", ())),
        **stats,
    }
    source.pop("graph_type", None)
    return {"graph_type": "merged", **source, "nodes": nodes, "edges": edges, "stats": out_stats}


def dumps(obj: Any) -> str:
    """The project's JSON text: indented, UTF-8 characters kept, key order preserved."""
    return json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False)
