"""Two runs on one map: the architecture of run B with what changed since run A drawn on it.

:func:`flowagent.reports.diff.diff` decides what changed (new and gone functions and call edges,
frequency shifts, slower or faster functions, new error clusters, and, when it reports them,
result-mix shifts per function). Here that verdict is put on the map: the graph is run B's,
plus run A's gone functions and call edges (with no calls), and every node and edge of the
collapsed view carries ``compare`` tags that the page colours:

* node ``new`` / ``gone``: all its functions are new in B / only in A;
* node ``slower`` / ``faster``: one of its functions' p50 moved beyond noise;
* node ``errors``: one of its functions raises an error cluster B has and A had not;
* node ``shift``: the success/error/partial mix of one of its functions moved;
* edge ``new`` / ``gone``: all its calls are new / gone; ``shift``: calls per session moved.
"""

from __future__ import annotations

from typing import Any

ZERO = {"occurrences": 0, "errors": 0, "partials": 0, "roots": 0, "total_ns": 0, "self_ns": 0}


def union_contract(contract_b: dict[str, Any], contract_a: dict[str, Any]) -> dict[str, Any]:
    """Run B's merged graph plus A's functions and call edges that B lacks (with no calls)."""
    have = {n["id"] for n in contract_b["nodes"]}
    nodes = list(contract_b["nodes"])
    nodes += [dict(n, **ZERO) for n in contract_a["nodes"] if n["id"] not in have]
    pairs = {(e["from"], e["to"]) for e in contract_b["edges"]}
    gone: dict[tuple[str, str], dict[str, Any]] = {}
    for e in contract_a["edges"]:
        if (e["from"], e["to"]) not in pairs:
            gone.setdefault((e["from"], e["to"]), dict(e, frequency=0, branch="success"))
    return dict(contract_b, nodes=nodes, edges=[*contract_b["edges"], *gone.values()])


def _functions(items: Any, key: str = "function") -> set[str]:
    return {i[key] for i in items or () if isinstance(i, dict) and key in i}


def annotate(view: dict[str, Any], d: dict[str, Any], contract: dict[str, Any]
             ) -> dict[str, Any]:
    """Put the diff ``d`` (run A → run B) on ``view``, built from ``contract`` (the
    :func:`union_contract` of both runs)."""
    new_fns = set(d.get("functions", {}).get("new", ()))
    gone_fns = set(d.get("functions", {}).get("removed", ()))
    timing = {t["function"]: t.get("change") for t in d.get("timing", ()) if "function" in t}
    new_errors = _functions(d.get("errors", {}).get("new"))
    # Result-mix shifts are optional in a diff: read them only when present and well formed.
    shifts = [s for s in d.get("result_shifts") or () if isinstance(s, dict) and "function" in s]
    shifted = {s["function"] for s in shifts}
    new_edges = {(e["from"], e["to"]) for e in d.get("edges", {}).get("new", ())}
    gone_edges = {(e["from"], e["to"]) for e in d.get("edges", {}).get("removed", ())}
    freq_edges = {(e["from"], e["to"]) for e in d.get("frequency_shifts", ())}

    group_of = {m: n["id"] for n in view["nodes"] for m in n["members"]}
    for n in view["nodes"]:
        members = set(n["members"])
        tags = []
        if members <= new_fns:
            tags.append("new")
        elif members <= gone_fns:
            tags.append("gone")
        changes = {timing[m] for m in members if m in timing}
        if "slower" in changes:
            tags.append("slower")
        elif "faster" in changes:
            tags.append("faster")
        if members & new_errors:
            tags.append("errors")
        if members & shifted:
            tags.append("shift")
        n["compare"] = tags

    # Which function-level calls each drawn edge stands for: a collapsed edge is new (gone)
    # only when every call it carries is new (gone).
    under: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for e in contract["edges"]:
        key = (group_of.get(e["from"], ""), group_of.get(e["to"], ""))
        under.setdefault(key, set()).add((e["from"], e["to"]))
    for e in view["edges"]:
        pairs = under.get((e["source"], e["target"]), set())
        tags = []
        if pairs and pairs <= gone_edges:
            tags.append("gone")
            e["tag"] = "gone since A"
        elif pairs and pairs <= new_edges:
            tags.append("new")
        if pairs & freq_edges:
            tags.append("shift")
        e["compare"] = tags
    view["compare"] = {
        "run_a": d.get("run_a"), "run_b": d.get("run_b"), "sessions": d.get("sessions"),
        "new_functions": sorted(new_fns), "gone_functions": sorted(gone_fns),
        "new_edges": len(new_edges), "gone_edges": len(gone_edges),
        "slower": [t for t in d.get("timing", ()) if t.get("change") == "slower"],
        "faster": [t for t in d.get("timing", ()) if t.get("change") == "faster"],
        "new_errors": list(d.get("errors", {}).get("new", ())),
        "frequency_shifts": list(d.get("frequency_shifts", ())),
        "result_shifts": shifts,
    }
    return view


def other_run(run: dict[str, Any]) -> dict[str, Any] | None:
    """The run named by ``?compare=`` (None when absent or the run itself; 404 when unknown)."""
    from flask import request

    from .data import run_or_404

    other = (request.args.get("compare") or "").strip()[:200]
    if not other or other == run["run_id"]:
        return None
    return run_or_404(other)


def compared_view(run: dict[str, Any], other: dict[str, Any], opts: dict[str, Any]
                  ) -> dict[str, Any]:
    """The view of ``run`` (B) with the changes since ``other`` (A) on it."""
    from flowagent.reports.diff import diff

    from .data import _cached, merged_contract
    from .graphview import view_graph

    contract = union_contract(merged_contract(run), merged_contract(other))
    d = _cached(f"diff:{other['run_id']}", run,
                lambda store: diff(store, other["run_id"], run["run_id"]))
    return annotate(view_graph(contract, **opts), d, contract)
