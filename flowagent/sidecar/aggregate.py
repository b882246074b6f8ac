"""The running totals of a run's finished sessions.

What one session adds (a :class:`~flowagent.sidecar.sessiontree.Contribution`) is folded
from its records as they stream in (:mod:`flowagent.sidecar.sessiontree`). :class:`Aggregates`
adds them up in memory and writes only what changed at each commit. Every total is a sum, a
min, a max, an earliest/latest, or a duration distribution (counts add), so sessions can be added
in any order and runs merged in any order to the same result.

Aggregated per run:

* nodes (per function): calls, errors, partials, total and self time, min/max, roots, and a
  duration distribution (exact while small, then a histogram: p50/p95/p99 survive merging);
* edges (caller → callee, per result) with counts and time;
* shape variants per function and direction (in/out) with the first session that showed it;
* root-to-leaf paths (each distinct path counted once per session);
* flow variants: sessions grouped by the canonical shape of their call tree;
* error clusters: (exception type, function where it was raised, call path, handled?).
"""

from __future__ import annotations

import json
from typing import Any

from . import histogram as H
from .sessiontree import Contribution, session_contributions

__all__ = ["Aggregates", "Contribution", "session_contributions"]

EXAMPLES = 3  # example sessions kept per variant and per error cluster
_SUMS = (0, 1, 2, 3, 4, 7, 8)  # node stats that add: see Contribution.nodes


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
        self._add_stats(c, session_id)
        d = self._dirty
        novel = False
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

    def add_alike(self, c: Contribution, k: int, first_session: str, durations: dict[int, int],
                  last: int) -> bool:
        """Add ``k`` sessions that differ only in their timing (one-call sessions of the same
        function, caller, shapes and result) at once: ``c`` holds their summed statistics,
        ``durations`` their root durations as a distribution, ``c.start`` and ``last`` the
        earliest and latest start. The same totals as :meth:`add` once per session, except the
        example sessions (:meth:`example`, in the order the sessions ended); True when the
        first of them showed something new."""
        self._add_stats(c, first_session)
        d = self._dirty
        novel = False
        if c.variant:
            v = self.variants.get(c.variant)
            if v is None:
                v = self.variants[c.variant] = [c.root_fid, 0, 0, {}, c.start, []]
                novel = True
            v[1] += k
            v[2] += c.failed * k
            H.merge_into(v[3], durations)
            v[4] = min(v[4], c.start)
            d["variants"].add(c.variant)
        for key, count in c.errors.items():
            cl = self.clusters.get(key)
            if cl is None:
                cl = self.clusters[key] = [0, c.start, last, []]
                novel = True
            cl[0] += count
            cl[1] = min(cl[1], c.start)
            cl[2] = max(cl[2], last)
            d["clusters"].add(key)
        return novel

    def examples(self, variant: str, cluster: tuple | None) -> tuple[list, list | None]:
        """The example lists of a variant and an error cluster added by :meth:`add_alike`,
        for the caller to extend in session order (up to :data:`EXAMPLES`)."""
        v = self.variants[variant]
        if not isinstance(v[5], list):
            v[5] = json.loads(v[5])
        if cluster is None:
            return v[5], None
        cl = self.clusters[cluster]
        if not isinstance(cl[3], list):
            cl[3] = json.loads(cl[3])
        return v[5], cl[3]

    def _add_stats(self, c: Contribution, session_id: str) -> None:
        """Nodes, edges, shapes and paths: the totals that only add."""
        d = self._dirty
        for fid, s in c.nodes.items():
            n = self.nodes.get(fid)
            if n is None:
                self.nodes[fid] = [*s, dict(c.hists[fid])]
            else:
                for i in _SUMS:
                    n[i] += s[i]
                n[5] = min(n[5], s[5])
                n[6] = max(n[6], s[6])
                H.merge_into(n[9], c.hists[fid])
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
