"""What one finished session adds to its run's aggregates, and the running totals.

:func:`session_contributions` is pure: call rows in, increments out. :class:`Aggregates`
adds them up in memory and writes only what changed at each commit. Every total is a sum, a
min, a max, an earliest/latest, or a histogram (bucket counts add), so sessions can be added
in any order and runs merged in any order to the same result.

Aggregated per run:

* nodes (per function): calls, errors, partials, total and self time, min/max, roots, and a
  duration histogram (p50/p95/p99 survive merging);
* edges (caller → callee, per result) with counts and time;
* shape variants per function and direction (in/out) with the first session that showed it;
* root-to-leaf paths (each distinct path counted once per session);
* flow variants: sessions grouped by the canonical shape of their call tree;
* error clusters: (exception type, function where it was raised, call path, handled?).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..agent.wire import ERROR, INCOMPLETE, PARTIAL
from . import histogram as H

# Call row layout used by the sidecar (see ingest._apply).
CID, PAR, FID, PFID, INS, OUT, RES, EXC, T0, T1, THR, CPU = range(12)
# node stats: calls, errors, partials, total_ns, self_ns, min_ns, max_ns, roots, cpu_ns
_SUMS = (0, 1, 2, 3, 4, 7, 8)
EXAMPLES = 3  # example sessions kept per variant and per error cluster


@dataclass
class Contribution:
    nodes: dict[int, list[int]] = field(default_factory=dict)   # fid -> node stats
    hists: dict[int, dict[int, int]] = field(default_factory=dict)
    edges: dict[tuple[int, int, int], list[int]] = field(default_factory=dict)
    shapes: dict[tuple[int, str, int], int] = field(default_factory=dict)
    paths: dict[str, int] = field(default_factory=dict)
    errors: dict[tuple[int, int, str, int], int] = field(default_factory=dict)
    variant: str = ""
    root_fid: int = 0
    duration: int = 0
    start: int = 0
    failed: bool = False


def session_contributions(calls: list[tuple], ses: int, names: dict[int, str]) -> Contribution:
    out = Contribution()
    by_id = {c[CID]: c for c in calls}
    children: dict[int, list[tuple]] = {}
    for c in calls:
        if c[PAR] in by_id and c[PAR] != c[CID]:
            children.setdefault(c[PAR], []).append(c)
    for c in calls:
        if c[RES] == INCOMPLETE:
            continue
        dur = max(c[T1] - c[T0], 0)
        child_time = sum(max(k[T1] - k[T0], 0) for k in children.get(c[CID], ()))
        n = out.nodes.get(c[FID])
        if n is None:
            n = out.nodes[c[FID]] = [0, 0, 0, 0, 0, dur, dur, 0, 0]
            out.hists[c[FID]] = {}
        n[0] += 1
        n[1] += c[RES] == ERROR
        n[2] += c[RES] == PARTIAL
        n[3] += dur
        n[4] += max(dur - child_time, 0)
        n[5] = min(n[5], dur)
        n[6] = max(n[6], dur)
        n[7] += c[CID] == ses
        n[8] += c[CPU] if len(c) > CPU else 0
        H.add(out.hists[c[FID]], dur)
        parent = by_id.get(c[PAR])
        if parent is not None:
            e = out.edges.setdefault((parent[FID], c[FID], c[RES]), [0, 0])
            e[0] += 1
            e[1] += dur
        if c[INS]:
            out.shapes[(c[FID], "in", c[INS])] = out.shapes.get((c[FID], "in", c[INS]), 0) + 1
        if c[OUT]:
            out.shapes[(c[FID], "out", c[OUT])] = out.shapes.get((c[FID], "out", c[OUT]), 0) + 1
        if c[RES] == ERROR and not any(k[RES] == ERROR for k in children.get(c[CID], ())):
            # The raise site (no recorded callee raised): cluster by where and how we got there.
            key = (c[EXC], c[FID], _path(c, by_id, names), _handled(c, by_id, names))
            out.errors[key] = out.errors.get(key, 0) + 1
    root = by_id.get(ses)
    if root is not None:
        for path in _leaf_paths(root, children, names):
            out.paths[path] = 1  # each distinct path counts once per session
        out.variant = _variant(root, children)
        out.root_fid = root[FID]
        out.duration = max(root[T1] - root[T0], 0)
        out.start = root[T0]
        out.failed = root[RES] == ERROR
    return out


def _path(call: tuple, by_id: dict[int, tuple], names: dict[int, str]) -> str:
    path: list[str] = []
    node: tuple | None = call
    hops = 0
    while node is not None and hops < 256:
        hops += 1
        name = names.get(node[FID], "?")
        if not path or path[-1] != name:  # recursion collapses
            path.append(name)
        node = by_id.get(node[PAR])
    return json.dumps(path[::-1])


def _handled(call: tuple, by_id: dict[int, tuple], names: dict[int, str]) -> int:
    """1 when a recorded function of the program caught the exception (returned normally
    after it). A web framework turning it into a 500 (the synthetic request root) does not
    count: for the program that error went unhandled."""
    node = by_id.get(call[PAR])
    hops = 0
    while node is not None and hops < 256:
        hops += 1
        if node[RES] != ERROR:
            return 0 if names.get(node[FID], "").startswith("<request>:") else 1
        node = by_id.get(node[PAR])
    return 0


def _leaf_paths(root: tuple, children: dict[int, list[tuple]], names: dict[int, str]):
    stack = [(root, [names.get(root[FID], "?")])]
    seen_calls: set[int] = set()
    while stack:
        node, path = stack.pop()
        if node[CID] in seen_calls:
            continue  # a cycle in damaged data: never loop
        seen_calls.add(node[CID])
        kids = children.get(node[CID])
        if not kids:
            yield json.dumps(path)
            continue
        seen = set()
        for k in kids:
            name = names.get(k[FID], "?")
            if name in seen:
                continue
            seen.add(name)
            stack.append((k, path if path[-1] == name else path + [name]))


def _variant(root: tuple, children: dict[int, list[tuple]]) -> str:
    """Canonical call-tree shape: repeated sibling subtrees collapsed, hashed."""
    def canon(node: tuple, depth: int) -> str:
        kids = children.get(node[CID], ())
        if depth > 64 or not kids:
            return str(node[FID])
        parts: list[str] = []
        for k in sorted(kids, key=lambda k: k[T0]):
            s = canon(k, depth + 1)
            if not parts or parts[-1] != s:
                parts.append(s)
        return f"{node[FID]}({','.join(parts)})"

    return hashlib.blake2b(canon(root, 0).encode(), digest_size=8).hexdigest()


def _examples(current: str | list, session: str) -> list[str]:
    ex = json.loads(current) if isinstance(current, str) else list(current)
    if session not in ex and len(ex) < EXAMPLES:
        ex.append(session)
    return ex


class Aggregates:
    """Running totals for one run, written back incrementally."""

    def __init__(self) -> None:
        self.nodes: dict[int, list[Any]] = {}      # stats + [hist dict]
        self.edges: dict[tuple[int, int, int], list[int]] = {}
        self.shapes: dict[tuple[int, str, int], list[Any]] = {}
        self.paths: dict[str, int] = {}
        self.variants: dict[str, list[Any]] = {}   # root_fid, count, errors, hist, first, ex
        self.clusters: dict[tuple, list[Any]] = {}  # count, first, last, examples
        self._dirty: dict[str, set] = {k: set() for k in (
            "nodes", "edges", "shapes", "paths", "variants", "clusters")}

    @classmethod
    def load(cls, store: Any, run_id: str) -> "Aggregates":
        a = cls()
        db = store.db
        for r in db.execute("SELECT * FROM graph_nodes WHERE run_id=?", (run_id,)):
            a.nodes[r["fid"]] = [r["calls"], r["errors"], r["partials"], r["total_ns"],
                                 r["self_ns"], r["min_ns"], r["max_ns"], r["roots"],
                                 r["cpu_ns"] or 0, H.decode(r["hist"])]
        for r in db.execute("SELECT * FROM graph_edges WHERE run_id=?", (run_id,)):
            a.edges[(r["caller_fid"], r["callee_fid"], r["result"])] = [r["count"], r["total_ns"]]
        for r in db.execute("SELECT * FROM shape_counts WHERE run_id=?", (run_id,)):
            a.shapes[(r["fid"], r["io"], r["shape_sid"])] = [r["count"], r["first_session"]]
        for r in db.execute("SELECT * FROM paths WHERE run_id=?", (run_id,)):
            a.paths[r["path"]] = r["count"]
        for r in db.execute("SELECT * FROM variants WHERE run_id=?", (run_id,)):
            a.variants[r["variant"]] = [r["root_fid"], r["count"], r["errors"], H.decode(r["hist"]),
                                        r["first_ns"], json.loads(r["examples"])]
        for r in db.execute("SELECT * FROM error_clusters WHERE run_id=?", (run_id,)):
            a.clusters[(r["exc_sid"], r["fid"], r["path"], r["handled"])] = [
                r["count"], r["first_ns"], r["last_ns"], json.loads(r["examples"])]
        return a

    def add(self, c: Contribution, session_id: str) -> bool:
        """Add one session; True when it showed something new worth keeping its tree for (a
        new flow variant or a new error cluster)."""
        d = self._dirty
        novel = False
        for fid, s in c.nodes.items():
            n = self.nodes.get(fid)
            if n is None:
                self.nodes[fid] = [*s, dict(c.hists[fid])]
            else:
                for i in _SUMS:
                    n[i] += s[i]
                n[5] = min(n[5], s[5])
                n[6] = max(n[6], s[6])
                n[9] = H.merge(n[9], c.hists[fid])
            d["nodes"].add(fid)
        for key, (count, total) in c.edges.items():
            e = self.edges.setdefault(key, [0, 0])
            e[0] += count
            e[1] += total
            d["edges"].add(key)
        for key, count in c.shapes.items():
            s = self.shapes.setdefault(key, [0, session_id])
            s[0] += count
            d["shapes"].add(key)
        for path, count in c.paths.items():
            self.paths[path] = self.paths.get(path, 0) + count
            d["paths"].add(path)
        if c.variant:
            v = self.variants.get(c.variant)
            if v is None:
                v = self.variants[c.variant] = [c.root_fid, 0, 0, {}, c.start, []]
                novel = True
            v[1] += 1
            v[2] += c.failed
            H.add(v[3], c.duration)
            v[4] = min(v[4], c.start)
            v[5] = _examples(v[5], session_id)
            d["variants"].add(c.variant)
        for key, count in c.errors.items():
            cl = self.clusters.get(key)
            if cl is None:
                cl = self.clusters[key] = [0, c.start, c.start, []]
                novel = True
            cl[0] += count
            cl[1] = min(cl[1], c.start)
            cl[2] = max(cl[2], c.start)
            cl[3] = _examples(cl[3], session_id)
            d["clusters"].add(key)
        return novel

    def flush(self, store: Any, run_id: str) -> None:
        db = store.db
        d = self._dirty
        if d["nodes"]:
            db.executemany("INSERT OR REPLACE INTO graph_nodes VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                           [(run_id, f, *self.nodes[f][:9], H.encode(self.nodes[f][9]))
                            for f in d["nodes"]])
        if d["edges"]:
            db.executemany("INSERT OR REPLACE INTO graph_edges VALUES(?,?,?,?,?,?)",
                           [(run_id, *k, *self.edges[k]) for k in d["edges"]])
        if d["shapes"]:
            db.executemany("INSERT OR REPLACE INTO shape_counts VALUES(?,?,?,?,?,?)",
                           [(run_id, *k, *self.shapes[k]) for k in d["shapes"]])
        if d["paths"]:
            db.executemany("INSERT OR REPLACE INTO paths VALUES(?,?,?)",
                           [(run_id, p, self.paths[p]) for p in d["paths"]])
        if d["variants"]:
            db.executemany("INSERT OR REPLACE INTO variants VALUES(?,?,?,?,?,?,?,?)",
                           [(run_id, k, v[0], v[1], v[2], H.encode(v[3]), v[4], json.dumps(v[5]))
                            for k, v in ((k, self.variants[k]) for k in d["variants"])])
        if d["clusters"]:
            db.executemany("INSERT OR REPLACE INTO error_clusters VALUES(?,?,?,?,?,?,?,?,?)",
                           [(run_id, *k, v[0], v[1], v[2], json.dumps(v[3]))
                            for k, v in ((k, self.clusters[k]) for k in d["clusters"])])
        for s in d.values():
            s.clear()
