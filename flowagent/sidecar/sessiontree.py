"""One session's call tree, built as its call records stream in, in memory bounded by the
tree's depth (never by its length).

A recorded process emits each call when it *ends*, so a session's records arrive children
first (post-order). Everything the sidecar derives from a tree can therefore be folded
bottom-up at the moment a call ends, and the call can then be forgotten:

* per-call statistics (count, total/self/min/max time, CPU, duration histogram) summed per
  *signature* (function, caller, result, shapes, exception), counted per batch over whole
  columns (one update per distinct signature and duration), spread into nodes/edges/shapes
  once per session in :meth:`SessionTree.contribution`;
* the canonical tree shape (flow variant): each call's subtree is an 8-byte digest of its
  function's name and its children's digests in start order (repeated siblings collapsed),
  memoized per process; names, not ids, so the same flow has the same variant in every
  process and every run;
* root-to-leaf paths: each call's set of paths below it, a memoized frozenset of tuples;
* error raise sites: an error whose callees did not raise waits on its caller, gathering the
  path and whether a caller handled it, until the root ends.

Only *open* calls (calls with an ended child that have not ended themselves: the current
stack) keep state. A call whose children number more than :data:`MAX_KIDS` distinct runs has
the oldest ones folded into a digest, so even a loop of a million different calls keeps a
bounded state.

Ids are whatever the records carry (a process's wire ids in the sidecar); :class:`Namer`
maps them to function names (paths, digests, the request-root test) and
:meth:`SessionTree.contribution` translates them to store ids once per session.

Records a parent ended *before* (a child task outliving its caller) cannot change the
parent's already folded digest; they still count in every per-call statistic.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

try:  # hashlib's own blake2b, without the OpenSSL library hashlib loads (~5 ms of a start)
    from _blake2 import blake2b as _blake2b
except ImportError:
    from hashlib import blake2b as _blake2b

from ..protocol.wire import (CALL_FIELDS, ERROR, INCOMPLETE, PARTIAL, CallColumns,
                             fold_extension)
from ..model.histogram import _SHIFT, EXACT, SUB, bucket, merge_into, to_buckets
from ..store.chunks import store_rows

MAX_KIDS = 1024    # distinct child runs kept per open call before the oldest are folded
MAX_HOPS = 256     # error paths longer than this are cut (as deep recursion collapses anyway)
_MEMO_CAP = 16_384  # entries per memo before it is cleared (a memo only saves work)
# Positions of a call record's fields read by name (records stay plain tuples: a field index
# costs nothing where an attribute lookup would).
_CID, _FID, _RES, _T0, _T1 = (CALL_FIELDS.index(f) for f in ("cid", "fid", "res", "t0", "t1"))
# A node's stats (``Contribution.nodes``): the position of how many sessions it is the root of.
NODE_ROOTS = 7


@dataclass
class Contribution:
    """What one finished session adds to its run's aggregates (store ids)."""

    nodes: dict[int, list[int]] = field(default_factory=dict)   # fid -> node stats:
    # calls, errors, partials, total_ns, self_ns, min_ns, max_ns, roots, cpu_ns
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


def _digest(data: bytes) -> bytes:
    return _blake2b(data, digest_size=8).digest()


class Namer:
    """Per-process caches from record ids to names, digests and path sets.

    ``name_of`` maps a function id of the records to its ``module:qualname``. The memos make
    a repeated subtree cost one dict lookup; they are cleared when they grow past a cap, so
    a run of ever-different trees costs time, never unbounded memory.
    """

    def __init__(self, name_of: Callable[[int], str]) -> None:
        self.name_of = name_of
        self.leaves: dict[int, bytes] = {}        # fid -> digest of a call without callees
        self.leaf_sets: dict[int, frozenset[Any]] = {}  # fid -> its paths: {(fid,)}
        self.inners: dict[tuple[Any, ...], bytes] = {}  # (fid, fold, *kid digests) -> digest
        self.prefixes: dict[tuple[Any, ...], frozenset[Any]] = {}  # (fid, paths below) -> paths
        self.unions: dict[tuple[Any, ...], frozenset[Any]] = {}  # (paths, paths) -> union
        self._json: dict[tuple[Any, ...], str] = {}

    def leaf(self, fid: int) -> bytes:
        d = self.leaves.get(fid)
        if d is None:
            d = self.leaves[fid] = _digest(self.name_of(fid).encode("utf-8", "replace"))
        return d

    def inner(self, fid: int, fold: bytes, kids: list[bytes]) -> bytes:
        key = (fid, fold, *kids)
        d = self.inners.get(key)
        if d is None:
            if len(self.inners) > _MEMO_CAP:
                self.inners.clear()
            d = self.inners[key] = _digest(b"".join((self.leaf(fid), b"(", fold, *kids, b")")))
        return d

    def leaf_paths(self, fid: int) -> frozenset[Any]:
        p = self.leaf_sets.get(fid)
        if p is None:
            p = self.leaf_sets[fid] = frozenset(((fid,),))
        return p

    def prefixed(self, fid: int, below: frozenset[Any]) -> frozenset[Any]:
        """Paths of a call: its name in front of each path below it (recursion collapses)."""
        key = (fid, below)
        p = self.prefixes.get(key)
        if p is None:
            if len(self.prefixes) > _MEMO_CAP:
                self.prefixes.clear()
            p = self.prefixes[key] = frozenset(
                s if s[0] == fid else (fid, *s) for s in below)
        return p

    def union(self, a: frozenset[Any], b: frozenset[Any]) -> frozenset[Any]:
        key = (a, b)
        u = self.unions.get(key)
        if u is None:
            if len(self.unions) > _MEMO_CAP:
                self.unions.clear()
            u = self.unions[key] = a | b
        return u

    def path_json(self, path: tuple[Any, ...]) -> str:
        text = self._json.get(path)
        if text is None:
            if len(self._json) > _MEMO_CAP:
                self._json.clear()
            text = self._json[path] = json.dumps([self.name_of(f) for f in path])
        return text


# State of an open call (one that has ended children but has not ended itself), a plain list
# because one is made for every call that has callees: the sidecar's hottest allocation.
O_FID, O_T0, O_CHILD_NS, O_ERR_CHILD, O_FOLD, O_KIDS, O_KID_T0, O_PATHS, O_WAITERS = range(9)
# O_FID: from the children's caller field (a placeholder needs it); O_T0: earliest child
# start; O_FOLD: digest of child runs folded away (beyond MAX_KIDS); O_KIDS/O_KID_T0: child
# digests in start order, repeats collapsed, and their starts; O_PATHS: frozenset of paths
# below; O_WAITERS: error raise sites climbing up ({key: count} or None).


def _add_kid(node: list[Any], digest: bytes, t0: int) -> None:
    """Out-of-order or overflowing case of adding a child digest (the in-order append of a
    new digest is inlined in :meth:`SessionTree.feed`)."""
    kids, kid_t0 = node[O_KIDS], node[O_KID_T0]
    if kids and t0 < kid_t0[-1]:  # ended after a later-started sibling: keep start order
        i = bisect_right(kid_t0, t0)
        if kids[i - 1:i] == [digest] or kids[i:i + 1] == [digest]:
            return
        kids.insert(i, digest)
        kid_t0.insert(i, t0)
    else:
        kids.append(digest)
        kid_t0.append(t0)
    if len(kids) > MAX_KIDS:
        half = MAX_KIDS // 2
        node[O_FOLD] = _digest(b"".join((node[O_FOLD], *kids[:half])))
        del kids[:half], kid_t0[:half]


class SessionTree:
    """Folds one session's call records (wire layout, :data:`~flowagent.protocol.wire.CALL_FIELDS`)
    into its statistics as they arrive."""

    def __init__(self, ses: int, namer: Namer, root_fid: int = 0, t0: int = 0,
                 thread: int = 0) -> None:
        self.ses = ses
        self.namer = namer
        self.root_fid = root_fid
        self.t0 = t0
        self.thread = thread
        self.end = t0
        self.root: tuple[Any, ...] | None = None   # the root's record, once it ended
        # signature (fid, caller fid, in, out, result, exception: a slice of the record) ->
        # calls, total, self, min, max, cpu, {duration or histogram bucket: calls}
        self.sigs: dict[tuple[Any, ...], list[Any]] = {}
        self.errors: dict[tuple[Any, ...], int] = {}
        self.paths: frozenset[Any] = frozenset()
        self.digest = b""
        self._open: dict[int, list[Any]] = {}  # cid -> open call state (O_* fields)
        self._root_seen = False  # set by the tree pass when the root's record went by

    def feed(self, calls: CallColumns | list[tuple[Any, ...]]) -> int:
        """Fold records of this session (in the order they ended); returns how many.

        Two passes over the columns. The tree (digests, paths, self time, error raise sites)
        depends on the order calls ended in, so it is a loop over the calls; the signature
        statistics are sums, minima, maxima and histograms, so they are counted per distinct
        (signature, duration) (in the C extension, or with ``Counter``) and spread once per
        distinct pair: a loop of tight calls repeats the same few durations over and over."""
        if not isinstance(calls, CallColumns):
            calls = CallColumns.from_rows(calls)
        n = len(calls)
        if not n:
            return 0
        cids, fids, pfids, ress, excs, t0s = map(
            calls.col, (0, 3, 4, 7, 8, 9))  # not the end times: see bounds
        durs = calls.dur
        shortest, end = calls.bounds or (min(durs), max(calls.col(_T1)))
        raw = calls.raw  # the C passes read the values from it (None: from the lists)
        if shortest < 0:  # a clock step: such a call counts as taking no time
            durs = [d if d > 0 else 0 for d in durs]
            raw = None
        # the parents, ins, outs and CPU times only the C passes read: left in the block
        # (None) while they read it there, made for the Python passes
        pars, ins, outs, cpus = map(calls.made if raw is not None and _fold_c is not None
                                    and _count_c is not None else calls.col, (1, 5, 6, 12))
        if end > self.end:
            self.end = end
        minus = None
        if _fold_c is not None and type(cids) is list and type(durs) is list:
            minus = _fold_c(self, cids, pars, fids, pfids, ins, outs, ress, excs, t0s, durs,
                            raw)  # None: a value out of int64, left to Python (unchanged)
        if minus is None:
            pars, ins, outs, cpus = map(calls.col, (1, 5, 6, 12))
            minus = self._fold_tree_py(cids, pars, fids, pfids, ins, outs, ress, excs, t0s,
                                       durs)
        if self._root_seen:  # the root's record, the last one if a replay repeated it
            self._root_seen = False
            self.root = calls.row(n - 1 - cids[::-1].index(self.ses))
        sigs = self.sigs
        if _count_c is None or not _count_c(sigs, fids, pfids, ins, outs, ress, excs, durs,
                                            cpus, INCOMPLETE, raw):
            ins, outs, cpus = map(calls.col, (5, 6, 12))
            self._count_sigs_py(fids, pfids, ins, outs, ress, excs, durs, cpus)
        for key, child_ns in minus.items():
            sigs[key][2] -= child_ns
        return n

    def _count_sigs_py(self, fids: list[Any], pfids: list[Any], ins: list[Any],
                       outs: list[Any], ress: list[Any], excs: list[Any], durs: list[Any],
                       cpus: list[Any]) -> None:
        """The signature statistics of :meth:`feed`, before the callees' time is taken off
        the self time. Its C twin, ``_fold.count_sigs``, updates the same accumulators in
        the same order (it declines values that are not int64, and this runs instead)."""
        if INCOMPLETE in ress:  # placeholders: in the tree, not in the statistics
            keep = [r != INCOMPLETE for r in ress]
            fids, pfids, ins, outs, ress, excs, durs, cpus = (
                list(compress(col, keep)) for col in (fids, pfids, ins, outs, ress, excs,
                                                      durs, cpus))
        sigs = self.sigs
        # acc: calls, total, self, min, max, cpu, {duration or histogram bucket: calls}
        for (*fields, d), count in Counter(zip(fids, pfids, ins, outs, ress, excs, durs)
                                           ).items():
            key = tuple(fields)
            acc = sigs.get(key)
            if acc is None:
                acc = sigs[key] = [0, 0, 0, d, d, 0, {}]
            acc[0] += count
            acc[1] += d * count
            acc[2] += d * count
            if d < acc[3]:
                acc[3] = d
            elif d > acc[4]:
                acc[4] = d
            # histogram.add inlined (once per distinct duration): exact values while few
            h = acc[6]
            b = ~d
            if b in h:
                h[b] += count
            elif len(h) < EXACT and (not h or next(iter(h)) < 0):
                h[b] = count
            else:
                to_buckets(h)
                b = bucket(d)
                h[b] = h.get(b, 0) + count
        if any(cpus):  # CPU time is opt-in (config cpu_time): zero columns cost one scan
            for *fields, cpu in zip(fids, pfids, ins, outs, ress, excs, cpus):
                sigs[tuple(fields)][5] += cpu

    def _fold_tree_py(self, cids: list[Any], pars: list[Any], fids: list[Any],
                      pfids: list[Any], ins: list[Any], outs: list[Any], ress: list[Any],
                      excs: list[Any], t0s: list[Any], durs: list[Any]) -> dict[Any, Any]:
        """The tree pass of :meth:`feed`. Returns, per signature, the time its calls spent in
        their callees (their total time minus this is their self time). Its C twin,
        ``_fold.fold_tree``, computes the same from the same state."""
        ses, namer, opened = self.ses, self.namer, self._open
        # The namer's memos are read inline (a method call per record costs as much as the
        # lookup); a miss goes through the method, which fills the memo.
        leaves, leaf_sets = namer.leaves, namer.leaf_sets
        inners, prefixes, unions = namer.inners, namer.prefixes, namer.unions
        pop, get = opened.pop, opened.get
        minus: dict[tuple[Any, ...], int] = {}
        for cid, par, fid, pfid, in_s, out_s, res, exc, t0, d in zip(
                cids, pars, fids, pfids, ins, outs, ress, excs, t0s, durs):
            node = pop(cid, None)
            up = None  # error raise sites below (or at) this call, on their way to the root
            if node is None:
                digest = leaves.get(fid) or namer.leaf(fid)
                paths = leaf_sets.get(fid) or namer.leaf_paths(fid)
            else:
                if res != INCOMPLETE:
                    child_ns = node[O_CHILD_NS]
                    key = (fid, pfid, in_s, out_s, res, exc)
                    minus[key] = minus.get(key, 0) + (child_ns if child_ns < d else d)
                kids = node[O_KIDS]
                digest = inners.get((fid, node[O_FOLD], *kids)) or namer.inner(
                    fid, node[O_FOLD], kids)
                below = node[O_PATHS]
                paths = prefixes.get((fid, below)) or namer.prefixed(fid, below)
                if node[O_WAITERS]:
                    up = self._climb(node[O_WAITERS], fid, res)
            if res == ERROR and (node is None or not node[O_ERR_CHILD]):
                site = (exc, fid, (fid,), -1)
                if up is None:
                    up = {site: 1}
                else:
                    up[site] = up.get(site, 0) + 1
            if cid == ses:
                self._root_seen = True
                self.paths = paths
                self.digest = digest
            elif par and par != cid:
                p = get(par)
                if p is None:
                    opened[par] = [pfid, t0, d, res == ERROR, b"", [digest], [t0], paths, up]
                    continue
                if t0 < p[O_T0]:
                    p[O_T0] = t0
                p[O_CHILD_NS] += d
                if res == ERROR:
                    p[O_ERR_CHILD] = True
                kids = p[O_KIDS]
                if kids[-1] != digest:
                    if t0 >= p[O_KID_T0][-1] and len(kids) < MAX_KIDS:
                        kids.append(digest)
                        p[O_KID_T0].append(t0)
                    else:
                        _add_kid(p, digest, t0)
                below = p[O_PATHS]
                if below is not paths:
                    p[O_PATHS] = unions.get((below, paths)) or namer.union(below, paths)
                if up:
                    waiting = p[O_WAITERS]
                    if waiting is None:
                        p[O_WAITERS] = up
                    else:
                        for k, c in up.items():
                            waiting[k] = waiting.get(k, 0) + c
                continue
            if up:
                self._settle(up)
        return minus

    def _climb(self, waiters: dict[tuple[Any, ...], int], fid: int, res: int
               ) -> dict[tuple[Any, ...], int]:
        """Error raise sites pass through a call on their way to the root: the call joins
        their path, and the first caller that did not fail decides whether the error was
        handled (a web framework's request root turning it into a 500 does not count)."""
        moved: dict[tuple[Any, ...], int] = {}
        for (exc, site, path, handled), count in waiters.items():
            if path[-1] != fid and len(path) < MAX_HOPS:
                path = (*path, fid)
            if handled < 0 and res != ERROR:
                handled = 0 if self.namer.name_of(fid).startswith("<request>:") else 1
            k = (exc, site, path, handled)
            moved[k] = moved.get(k, 0) + count
        return moved

    def _settle(self, waiters: dict[tuple[Any, ...], int]) -> None:
        for (exc, site, path, handled), count in waiters.items():
            k = (exc, site, path, max(handled, 0))
            self.errors[k] = self.errors.get(k, 0) + count

    def placeholders(self) -> list[tuple[Any, ...]]:
        """Records for the calls still open when their process died (known only through
        their children, which name them as caller) and the root if it never ended: marked
        ``incomplete``, children of the root, in start order, the root last."""
        out = []
        for cid, node in sorted(self._open.items(), key=lambda kv: kv[1][O_T0]):
            if cid != self.ses:
                out.append((cid, self.ses, self.ses, node[O_FID], self.root_fid, 0, 0,
                            INCOMPLETE, 0, node[O_T0], self.end, self.thread, 0))
        if self.root is None:
            out.append((self.ses, 0, self.ses, self.root_fid, 0, 0, 0, INCOMPLETE, 0,
                        self.t0, self.end, self.thread, 0))
        return out

    def finish(self) -> None:
        """The session is over: settle error raise sites whose callers never ended."""
        for node in self._open.values():
            if node[O_WAITERS]:
                self._settle(node[O_WAITERS])
        self._open.clear()

    # -- results ---------------------------------------------------------------------------
    def calls(self) -> int:
        return sum(a[0] for a in self.sigs.values())

    def error_calls(self) -> int:
        return sum(a[0] for k, a in self.sigs.items() if k[4] == ERROR)

    def fids(self) -> set[int]:
        return {k[0] for k in self.sigs}

    def raised(self) -> dict[tuple[int, int], int]:
        """(function, exception) → calls that ended with that exception."""
        out: dict[tuple[int, int], int] = {}
        for k, a in self.sigs.items():
            if k[4] == ERROR:
                out[(k[0], k[5])] = out.get((k[0], k[5]), 0) + a[0]
        return out

    def contribution(self, fid_map: Callable[[int], int],
                     sid_map: Callable[[int], int]) -> Contribution:
        """What this session adds to the run's aggregates, in store ids."""
        out = Contribution()
        nodes, edges, shapes = out.nodes, out.edges, out.shapes
        for (fid, pfid, ins, out_s, res, _exc), a in self.sigs.items():
            f = fid_map(fid)
            n = nodes.get(f)
            count, total, self_ns, lo, hi, cpu, hist = a
            if n is None:
                nodes[f] = [count, 0, 0, total, self_ns, lo, hi, 0, cpu]
                n = nodes[f]
                out.hists[f] = dict(hist)
            else:
                merge_into(out.hists[f], hist)
                n[0] += count
                n[3] += total
                n[4] += self_ns
                n[5] = min(n[5], lo)
                n[6] = max(n[6], hi)
                n[8] += cpu
            if res == ERROR:
                n[1] += count
            elif res == PARTIAL:
                n[2] += count
            if pfid:  # a call with a recorded caller (the root and thread roots have none)
                e = edges.setdefault((fid_map(pfid), f, res), [0, 0])
                e[0] += count
                e[1] += total
            for io, wire_sid in (("in", ins), ("out", out_s)):
                s = sid_map(wire_sid) if wire_sid else 0
                if s:
                    shapes[(f, io, s)] = shapes.get((f, io, s), 0) + count
        namer = self.namer
        for (exc, site, path, handled), count in self.errors.items():
            key = (sid_map(exc) if exc else 0, fid_map(site), namer.path_json(path[::-1]),
                   handled)
            out.errors[key] = out.errors.get(key, 0) + count
        root = self.root
        if root is not None:
            if root[_RES] != INCOMPLETE:
                nodes[fid_map(root[_FID])][NODE_ROOTS] += 1
            for path in self.paths:
                out.paths[namer.path_json(path)] = 1  # each distinct path once per session
            out.variant = self.digest.hex()
            out.root_fid = fid_map(root[_FID])
            out.duration = max(root[_T1] - root[_T0], 0)
            out.start = root[_T0]
            out.failed = root[_RES] == ERROR
        return out


_fold = fold_extension()


def _c_fold() -> Callable[..., dict[Any, Any]] | None:
    """The C tree pass, configured with this module's constants; None where the Python
    twin runs (see :func:`fold_extension`)."""
    if _fold is None:
        return None
    _fold.configure(ERROR, INCOMPLETE, b"", MAX_KIDS, _add_kid)
    return _fold.fold_tree  # type: ignore[no-any-return]


_fold_c = _c_fold()


def _c_count() -> Callable[..., bool] | None:
    """The C signature statistics, configured with the histogram's constants; None where
    the tree pass is the Python one."""
    if _fold is None:
        return None
    _fold.configure_sigs(EXACT, SUB, _SHIFT, to_buckets)
    return _fold.count_sigs  # type: ignore[no-any-return]


_count_c = _c_count()
# Which tree pass folds sessions: "c" or "python".
FOLD_CORE = "python" if _fold_c is None else "c"


def _identity(x: int) -> int:
    return x


def session_contributions(calls: list[tuple[Any, ...]], ses: int, names: dict[int, str]
                          ) -> Contribution:
    """One whole session's contribution from its call rows in store layout (call_id,
    parent_id, fid, caller_fid, in_sid, out_sid, result, exc_sid, t0, t1, thread[, cpu_ns]),
    in any order: the pure form of what the sidecar folds as records stream in."""
    rows = store_rows(calls, ses)
    # Children first, as a process emits them: by end time; a parent that ends at the same
    # nanosecond as its child started no later and was given a smaller id.
    rows.sort(key=lambda r: (r[10], -r[9], -r[0]))
    root = next((r for r in rows if r[_CID] == ses), None)
    tree = SessionTree(ses, Namer(lambda f: names.get(f, "?")), root[_FID] if root else 0)
    tree.feed(rows)
    tree.finish()
    return tree.contribution(_identity, _identity)
