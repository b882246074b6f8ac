"""Requests that cross services, read back as one distributed session.

Each ``flowagent run`` records one service. An outgoing HTTP call stores the W3C span id it
sent, and a request that arrived with that span id as its ``traceparent`` parent stores it
too (:mod:`flowagent.store.traces`). Given several runs (of one store or of several), this
module joins them: every recorded request whose caller span is a call of one of the runs
becomes a subtree under that call, recursively, so a request that went from a Flask app to
a FastAPI app to a third service reads as one tree, each hop in its own process timeline.

Function names are qualified with their service (``svc_a:__main__:main``) whenever the runs
belong to more than one service, in sessions and in the merged graph alike, so two
programs' ``__main__:main`` stay two functions. With one run nothing changes.

Pure reading: the store is asked only through its own functions.
"""

from __future__ import annotations

import copy
import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..service import qualified, service_of
from ..store import traces

MAX_NODES = 200_000  # calls one distributed session may gather (a runaway fan-out stops here)


@dataclass(frozen=True)
class RunRef:
    """One run to read: the store holding it, its id, and its service name."""

    store: Any
    run_id: str
    service: str

    @classmethod
    def of(cls, store: Any, run_id: str) -> "RunRef":
        return cls(store, run_id, service_of(store.run(run_id) or {}))


@dataclass
class Links:
    """Who called whom across the runs: ``parent[(run index, session id)]`` is the client
    call ``(run index, session id, call id)`` a recorded request came from, and ``children``
    the reverse, by call."""

    parent: dict[tuple[int, str], tuple[int, str, int]] = field(default_factory=dict)
    children: dict[tuple[int, str, int], list[tuple[int, str]]] = field(default_factory=dict)


def qualify_names(refs: list[RunRef]) -> bool:
    """Whether function names need their service: the runs are of more than one service."""
    return len({r.service for r in refs}) > 1


def links(refs: list[RunRef]) -> Links:
    """The client-call → request links between the sessions of ``refs``."""
    spans: dict[str, tuple[int, str, int]] = {}
    joined: list[tuple[int, dict[str, Any]]] = []
    for i, ref in enumerate(refs):
        j, sent = traces.run_links(ref.store, ref.run_id)
        for s in sent:
            spans.setdefault(s["span_id"], (i, s["session_id"], s["call_id"]))
        joined.extend((i, row) for row in j)
    out = Links()
    for i, row in joined:
        caller = spans.get(row["parent_span"])
        key = (i, row["session_id"])
        if caller is None or caller[:2] == key:
            continue
        out.parent[key] = caller
        out.children.setdefault(caller, []).append(key)
    return out


def _qualify_node(node: dict[str, Any], service: str, qualify: bool, ref: RunRef,
                  session_id: str) -> dict[str, Any]:
    node = dict(node)
    node["service"] = service
    node["run_id"] = ref.run_id
    node["session_id"] = session_id
    if qualify:
        node["function_name"] = qualified(service, node["function_name"])
        if node.get("caller"):
            node["caller"] = qualified(service, node["caller"])
    return node


def stitch(refs: list[RunRef], key: tuple[int, str], lk: Links,
           graph: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The distributed session rooted at the session ``key`` (run index, session id): its
    own calls and, under each client call, the requests that call made in the other runs."""
    i, session_id = key
    ref = refs[i]
    root = graph if graph is not None else ref.store.session_graph(session_id)
    if root is None:
        return None
    qualify = qualify_names(refs)
    out = {k: v for k, v in root.items() if k not in ("nodes", "edges")}
    nodes = [_qualify_node(n, ref.service, qualify, ref, session_id) for n in root["nodes"]]
    edges = [dict(e) for e in root["edges"]]
    if qualify:
        out["name"] = qualified(ref.service, root["name"])
    next_id = max((n["id"] for n in nodes), default=0) + 1
    seen = {key}
    services = [ref.service]
    runs = [ref.run_id]
    # (hop key, the id of the client call it hangs under, in the output graph)
    queue = deque((child, n["id"]) for n in root["nodes"]
                  for child in lk.children.get((i, session_id, n["id"]), ()))
    hops = 0
    while queue and len(nodes) < MAX_NODES:
        (j, sid), under = queue.popleft()
        if (j, sid) in seen:
            continue
        seen.add((j, sid))
        hop_ref = refs[j]
        g = hop_ref.store.session_graph(sid)
        if g is None or not g["nodes"]:
            continue
        hops += 1
        ids: dict[int, int] = {}
        for n in g["nodes"]:
            ids[n["id"]] = next_id
            next_id += 1
        for n in g["nodes"]:
            q = _qualify_node(n, hop_ref.service, qualify, hop_ref, sid)
            q["id"] = ids[n["id"]]
            q["parent_id"] = ids.get(n["parent_id"]) if n["parent_id"] else under
            nodes.append(q)
            if q["parent_id"]:
                edges.append({"from": q["parent_id"], "to": q["id"],
                              "branch": n["result_type"]})
            for child in lk.children.get((j, sid, n["id"]), ()):
                queue.append((child, q["id"]))
        if hop_ref.service not in services:
            services.append(hop_ref.service)
        if hop_ref.run_id not in runs:
            runs.append(hop_ref.run_id)
    out["nodes"] = nodes
    out["edges"] = edges
    out["services"] = services
    out["runs"] = runs
    out["hops"] = hops
    return out


def _top_level(refs: list[RunRef], lk: Links) -> list[tuple[int, int, str]]:
    """(start time, run index, session id) of every kept session that is not a hop of a
    kept client session, in start order."""
    kept: dict[tuple[int, str], int] = {}
    for i, ref in enumerate(refs):
        for s in ref.store.sessions(ref.run_id, limit=1 << 62):
            if s.get("tree_kept", 1):
                kept[(i, s["session_id"])] = s.get("started_ns") or 0
    top = []
    for key, started in kept.items():
        caller = lk.parent.get(key)
        if caller is not None and caller[:2] in kept:
            continue  # shown under the call that made it
        top.append((started, key[0], key[1]))
    top.sort()
    return top


def sessions(refs: list[RunRef]) -> Iterator[dict[str, Any]]:
    """Every kept session of the runs as session graphs, one at a time; with more than one
    run, each request that came from another of them is inside its caller's session."""
    if len(refs) == 1:
        yield from refs[0].store.iter_session_graphs(refs[0].run_id)
        return
    lk = links(refs)
    for _, i, sid in _top_level(refs, lk):
        g = stitch(refs, (i, sid), lk)
        if g is not None and g["nodes"]:
            yield g


def session(refs: list[RunRef], index: int, session_id: str) -> dict[str, Any] | None:
    """One session of ``refs[index]`` with the hops it caused in the other runs (and, if it
    is itself a hop, the distributed session it belongs to, from its outermost caller)."""
    lk = links(refs)
    key = (index, session_id)
    seen = {key}
    while key in lk.parent:
        caller = lk.parent[key][:2]
        if caller in seen:
            break
        seen.add(caller)
        key = caller
    return stitch(refs, key, lk)


def _qualified_path(service: str, path: str) -> str:
    try:
        names = json.loads(path)
    except ValueError:
        return path
    if not isinstance(names, list):
        return path
    return json.dumps([qualified(service, n) if isinstance(n, str) else n for n in names])


def aggregates(refs: list[RunRef]) -> Iterable[dict[str, Any]]:
    """Each run's merged-graph aggregates, function names qualified with the service when
    the runs are of several services (input of :func:`flowagent.model.graph.merge_all`)."""
    qualify = qualify_names(refs)
    for ref in refs:
        agg = ref.store.aggregates(ref.run_id)
        if qualify:
            agg = copy.copy(agg)
            agg["functions"] = {fid: dict(fn, name=qualified(ref.service, fn["name"]))
                                for fid, fn in agg["functions"].items()}
            agg["paths"] = [dict(p, path=_qualified_path(ref.service, p["path"]))
                            for p in agg["paths"]]
        yield agg
