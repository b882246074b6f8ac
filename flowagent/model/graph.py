"""The merged architecture graph as a networkx DiGraph, built from stored aggregates.

:func:`merge` is a pure function of two graphs and is associative and commutative (counts add,
minima and maxima combine), so runs and processes merge in any order to the same graph.
:func:`to_contract` renders a graph as the export contract's merged-graph dict.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import networkx as nx

from ..protocol.wire import RESULT_NAMES as RESULTS

from . import histogram as H
from .shapes import input_shape

_SUMS = ("calls", "errors", "partials", "total_ns", "self_ns", "roots", "cpu_ns")


def from_aggregates(agg: dict[str, Any]) -> nx.DiGraph:
    """One run's aggregates (``SQLiteStore.aggregates``) → graph keyed by function name."""
    fns = agg["functions"]
    g = nx.DiGraph(runs=[agg["run_id"]], total_sessions=agg["total_sessions"], paths={})
    for n in agg["nodes"]:
        fn = fns.get(n["fid"])
        if fn is None:
            continue
        g.add_node(fn["name"], module=fn["module"], qualname=fn["qualname"], kind=fn["kind"],
                   params=fn["params"], calls=n["calls"], errors=n["errors"],
                   partials=n["partials"], total_ns=n["total_ns"], self_ns=n["self_ns"],
                   min_ns=n["min_ns"], max_ns=n["max_ns"], roots=n["roots"],
                   cpu_ns=n.get("cpu_ns") or 0, hist=H.decode(n.get("hist")), in_shapes={},
                   out_shapes={})
    for s in agg["shapes"]:
        fn = fns.get(s["fid"])
        if fn is None or fn["name"] not in g or s["shape"] is None:
            continue
        bucket = g.nodes[fn["name"]]["in_shapes" if s["io"] == "in" else "out_shapes"]
        bucket[s["shape"]] = bucket.get(s["shape"], 0) + s["count"]
    for e in agg["edges"]:
        a, b = fns.get(e["caller_fid"]), fns.get(e["callee_fid"])
        if a is None or b is None:
            continue
        g.add_edge(a["name"], b["name"])
        branches = g.edges[a["name"], b["name"]].setdefault("branches", {})
        res = RESULTS[e["result"]]
        branches[res] = branches.get(res, 0) + e["count"]
    for p in agg["paths"]:
        g.graph["paths"][p["path"]] = g.graph["paths"].get(p["path"], 0) + p["count"]
    return g


def _add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def merge(a: nx.DiGraph, b: nx.DiGraph) -> nx.DiGraph:
    """Pure merge of two merged graphs (neither input is modified)."""
    g = nx.DiGraph(runs=sorted(set(a.graph.get("runs", [])) | set(b.graph.get("runs", []))),
                   total_sessions=a.graph.get("total_sessions", 0) + b.graph.get(
                       "total_sessions", 0),
                   paths=_add_counts(a.graph.get("paths", {}), b.graph.get("paths", {})))
    for src in (a, b):
        for name, attrs in src.nodes(data=True):
            if name not in g:
                g.add_node(name, **{k: (dict(v) if isinstance(v, dict) else v)
                                    for k, v in attrs.items()})
                continue
            n = g.nodes[name]
            for k in _SUMS:
                n[k] = n.get(k, 0) + attrs.get(k, 0)
            n["min_ns"] = min(n["min_ns"], attrs["min_ns"])
            n["max_ns"] = max(n["max_ns"], attrs["max_ns"])
            n["hist"] = H.merge(n["hist"], attrs["hist"])
            n["in_shapes"] = _add_counts(n["in_shapes"], attrs["in_shapes"])
            n["out_shapes"] = _add_counts(n["out_shapes"], attrs["out_shapes"])
        for u, v, attrs in src.edges(data=True):
            if g.has_edge(u, v):
                g.edges[u, v]["branches"] = _add_counts(g.edges[u, v]["branches"],
                                                        attrs["branches"])
            else:
                g.add_edge(u, v, branches=dict(attrs["branches"]))
    return g


def merge_all(graphs: Iterable[nx.DiGraph]) -> nx.DiGraph:
    out = nx.DiGraph(runs=[], total_sessions=0, paths={})
    for g in graphs:
        out = merge(out, g)
    return out


def _top(counts: dict[str, int]) -> str | None:
    if not counts:
        return None
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def to_contract(g: nx.DiGraph, top_paths: int = 20) -> dict[str, Any]:
    """The merged-graph export contract (see the README)."""
    nodes = []
    for name in sorted(g.nodes):
        n = g.nodes[name]
        params = n.get("params", [])

        def inputs(text: str) -> dict[str, str]:
            return input_shape(params, text)

        top_in = _top(n["in_shapes"])
        nodes.append({
            "id": name, "function_name": name, "module": n["module"], "qualname": n["qualname"],
            "kind": n.get("kind"), "occurrences": n["calls"], "errors": n["errors"],
            "partials": n["partials"], "roots": n["roots"],
            "input_shape": inputs(top_in) if top_in else {},
            "output_shape": _top(n["out_shapes"]),
            # Ties broken by the shape text: the contract must not depend on merge order.
            "input_shapes": [{"shape": inputs(s), "count": c} for s, c in sorted(
                n["in_shapes"].items(), key=lambda kv: (-kv[1], kv[0]))],
            "output_shapes": [{"shape": s, "count": c} for s, c in sorted(
                n["out_shapes"].items(), key=lambda kv: (-kv[1], kv[0]))],
            "total_ns": n["total_ns"], "self_ns": n["self_ns"], "min_ns": n["min_ns"],
            "max_ns": n["max_ns"], "mean_ns": n["total_ns"] // n["calls"] if n["calls"] else None,
            "cpu_ns": n.get("cpu_ns") or 0,
            **{f"{k}_ns": v for k, v in H.summary(n["hist"]).items()},
        })
    edges = []
    for u, v in sorted(g.edges):
        for branch, count in sorted(g.edges[u, v]["branches"].items()):
            edges.append({"from": u, "to": v, "branch": branch, "frequency": count})
    paths = sorted(g.graph.get("paths", {}).items(), key=lambda kv: (-kv[1], kv[0]))[:top_paths]
    return {
        "graph_type": "merged", "runs": list(g.graph.get("runs", [])),
        "nodes": nodes, "edges": edges,
        "stats": {
            "total_sessions": g.graph.get("total_sessions", 0),
            "frequent_paths": [{"path": json.loads(p), "count": c} for p, c in paths],
            "error_nodes": sorted(n for n in g.nodes if g.nodes[n]["errors"]),
        },
    }
