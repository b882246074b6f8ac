"""What one finished session adds to its run's merged graph, and the running totals.

:func:`session_contributions` is pure: call rows in, per-function and per-edge increments
out. :class:`Aggregates` adds them up in memory and writes only what changed at each commit.
Every total is a sum, a min or a max, so adding sessions in any order gives the same graph.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..agent.wire import ERROR, INCOMPLETE, PARTIAL

# Call row layout used by the sidecar (see ingest._apply).
CID, PAR, FID, PFID, INS, OUT, RES, EXC, T0, T1, THR = range(11)


@dataclass
class Contribution:
    nodes: dict[int, list[int]] = field(default_factory=dict)   # fid -> node stats
    edges: dict[tuple[int, int, int], list[int]] = field(default_factory=dict)
    shapes: dict[tuple[int, str, int], int] = field(default_factory=dict)
    paths: dict[str, int] = field(default_factory=dict)
    variant: str = ""


# node stats: calls, errors, partials, total_ns, self_ns, min_ns, max_ns, roots
_N = 8


def session_contributions(calls: list[tuple], ses: int, names: dict[int, str]) -> Contribution:
    out = Contribution()
    by_id = {c[CID]: c for c in calls}
    children: dict[int, list[tuple]] = {}
    for c in calls:
        if c[PAR] in by_id:
            children.setdefault(c[PAR], []).append(c)
    for c in calls:
        if c[RES] == INCOMPLETE:
            continue
        dur = max(c[T1] - c[T0], 0)
        child_time = sum(max(k[T1] - k[T0], 0) for k in children.get(c[CID], ()))
        n = out.nodes.get(c[FID])
        if n is None:
            n = out.nodes[c[FID]] = [0, 0, 0, 0, 0, dur, dur, 0]
        n[0] += 1
        n[1] += c[RES] == ERROR
        n[2] += c[RES] == PARTIAL
        n[3] += dur
        n[4] += max(dur - child_time, 0)
        n[5] = min(n[5], dur)
        n[6] = max(n[6], dur)
        n[7] += c[CID] == ses
        parent = by_id.get(c[PAR])
        if parent is not None:
            e = out.edges.setdefault((parent[FID], c[FID], c[RES]), [0, 0])
            e[0] += 1
            e[1] += dur
        if c[INS]:
            out.shapes[(c[FID], "in", c[INS])] = out.shapes.get((c[FID], "in", c[INS]), 0) + 1
        if c[OUT]:
            out.shapes[(c[FID], "out", c[OUT])] = out.shapes.get((c[FID], "out", c[OUT]), 0) + 1
    root = by_id.get(ses)
    if root is not None:
        for path in _leaf_paths(root, children, names):
            out.paths[path] = 1  # each distinct path counts once per session
        out.variant = _variant(root, children)
    return out


def _leaf_paths(root: tuple, children: dict[int, list[tuple]], names: dict[int, str]):
    stack = [(root, [names.get(root[FID], "?")])]
    while stack:
        node, path = stack.pop()
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


class Aggregates:
    """Running totals for one run, written back incrementally."""

    def __init__(self) -> None:
        self.nodes: dict[int, list[int]] = {}
        self.edges: dict[tuple[int, int, int], list[int]] = {}
        self.shapes: dict[tuple[int, str, int], list[Any]] = {}
        self.paths: dict[str, int] = {}
        self._dirty: dict[str, set] = {"nodes": set(), "edges": set(), "shapes": set(),
                                       "paths": set()}

    @classmethod
    def load(cls, store: Any, run_id: str) -> "Aggregates":
        a = cls()
        db = store.db
        for r in db.execute("SELECT * FROM graph_nodes WHERE run_id=?", (run_id,)):
            a.nodes[r["fid"]] = [r["calls"], r["errors"], r["partials"], r["total_ns"],
                                 r["self_ns"], r["min_ns"], r["max_ns"], r["roots"]]
        for r in db.execute("SELECT * FROM graph_edges WHERE run_id=?", (run_id,)):
            a.edges[(r["caller_fid"], r["callee_fid"], r["result"])] = [r["count"], r["total_ns"]]
        for r in db.execute("SELECT * FROM shape_counts WHERE run_id=?", (run_id,)):
            a.shapes[(r["fid"], r["io"], r["shape_sid"])] = [r["count"], r["first_session"]]
        for r in db.execute("SELECT * FROM paths WHERE run_id=?", (run_id,)):
            a.paths[r["path"]] = r["count"]
        return a

    def add(self, c: Contribution, session_id: str) -> None:
        for fid, s in c.nodes.items():
            n = self.nodes.get(fid)
            if n is None:
                self.nodes[fid] = list(s)
            else:
                for i in (0, 1, 2, 3, 4, 7):
                    n[i] += s[i]
                n[5] = min(n[5], s[5])
                n[6] = max(n[6], s[6])
            self._dirty["nodes"].add(fid)
        for key, (count, total) in c.edges.items():
            e = self.edges.setdefault(key, [0, 0])
            e[0] += count
            e[1] += total
            self._dirty["edges"].add(key)
        for key, count in c.shapes.items():
            s = self.shapes.setdefault(key, [0, session_id])
            s[0] += count
            self._dirty["shapes"].add(key)
        for path, count in c.paths.items():
            self.paths[path] = self.paths.get(path, 0) + count
            self._dirty["paths"].add(path)

    def flush(self, store: Any, run_id: str) -> None:
        db = store.db
        d = self._dirty
        if d["nodes"]:
            db.executemany("INSERT OR REPLACE INTO graph_nodes VALUES(?,?,?,?,?,?,?,?,?,?)",
                           [(run_id, f, *self.nodes[f]) for f in d["nodes"]])
        if d["edges"]:
            db.executemany("INSERT OR REPLACE INTO graph_edges VALUES(?,?,?,?,?,?)",
                           [(run_id, *k, *self.edges[k]) for k in d["edges"]])
        if d["shapes"]:
            db.executemany("INSERT OR REPLACE INTO shape_counts VALUES(?,?,?,?,?,?)",
                           [(run_id, *k, *self.shapes[k]) for k in d["shapes"]])
        if d["paths"]:
            db.executemany("INSERT OR REPLACE INTO paths VALUES(?,?,?)",
                           [(run_id, p, self.paths[p]) for p in d["paths"]])
        for s in d.values():
            s.clear()
