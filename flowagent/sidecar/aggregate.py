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

from ..store.api import (AggregateRows, ClusterStats, EdgeStats, NodeStats, PathCount,
                         ShapeCount, VariantStats)
from ..model import histogram as H
from .sessiontree import Contribution

__all__ = ["Aggregates", "Contribution"]

EXAMPLES = 3  # example sessions kept per variant and per error cluster
ClusterKey = tuple[int, int, str, int]  # exc_sid, fid, path, handled
_SUMS = (0, 1, 2, 3, 4, 7, 8)  # node stats that add: see Contribution.nodes


def _examples(current: str | list[str], session: str) -> list[str]:
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
        # (exc_sid, fid, path, handled) -> count, first, last, examples
        self.clusters: dict[ClusterKey, list[Any]] = {}
        self._dirty: dict[str, set[Any]] = {k: set() for k in (
            "nodes", "edges", "shapes", "paths", "variants", "clusters")}

    @classmethod
    def load(cls, store: Any, run_id: str) -> "Aggregates":
        a = cls()
        rows = store.load_aggregates(run_id)
        for n in rows.nodes:
            a.nodes[n.fid] = [n.calls, n.errors, n.partials, n.total_ns, n.self_ns, n.min_ns,
                              n.max_ns, n.roots, n.cpu_ns, dict(n.hist)]
        for e in rows.edges:
            a.edges[(e.caller_fid, e.callee_fid, e.result)] = [e.count, e.total_ns]
        for s in rows.shapes:
            a.shapes[(s.fid, s.io, s.shape_sid)] = [s.count, s.first_session]
        for p in rows.paths:
            a.paths[p.path] = p.count
        for v in rows.variants:
            a.variants[v.variant] = [v.root_fid, v.count, v.errors, dict(v.hist), v.first_ns,
                                     list(v.examples)]
        for c in rows.clusters:
            a.clusters[(c.exc_sid, c.fid, c.path, c.handled)] = [
                c.count, c.first_ns, c.last_ns, list(c.examples)]
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

    def examples(self, variant: str, cluster: ClusterKey | None
                 ) -> tuple[list[str], list[str] | None]:
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
        for shape, count in c.shapes.items():
            s = self.shapes.setdefault(shape, [0, session_id])
            s[0] += count
            d["shapes"].add(shape)
        for path, count in c.paths.items():
            self.paths[path] = self.paths.get(path, 0) + count
            d["paths"].add(path)

    def flush(self, store: Any, run_id: str) -> None:
        d = self._dirty
        if any(d.values()):
            store.write_aggregates(run_id, AggregateRows(
                tuple(NodeStats(f, *self.nodes[f]) for f in d["nodes"]),
                tuple(EdgeStats(*k, *self.edges[k]) for k in d["edges"]),
                tuple(ShapeCount(*k, *self.shapes[k]) for k in d["shapes"]),
                tuple(PathCount(p, self.paths[p]) for p in d["paths"]),
                tuple(VariantStats(k, v[0], v[1], v[2], v[3], v[4], tuple(v[5]))
                      for k, v in ((k, self.variants[k]) for k in d["variants"])),
                tuple(ClusterStats(k[0], k[1], k[2], k[3], v[0], v[1], v[2], tuple(v[3]))
                      for k, v in ((k, self.clusters[k]) for k in d["clusters"]))))
        for s in d.values():
            s.clear()
