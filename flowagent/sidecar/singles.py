"""Sessions of exactly one call, stored a frame at a time.

A program that serves many tiny requests, or calls one selected function from unselected code
in a loop, makes one session per call: hundreds of thousands of them. Taking each through a
session tree, a contribution, the aggregates and two statements (its row made when it starts,
updated when it ends) costs the sidecar tens of microseconds per session, so the drain after
such a program ends took far longer than the program. A one-call session is fully described
by its root record, though, so a frame's one-call sessions are grouped by what they share
(function, caller, shapes, result, exception), each group is added to the aggregates once
with summed statistics and a duration distribution, and their rows, built column by column,
are inserted whole in one statement. The stored result is the same as the per-session path's
(a test compares the two).
"""

from __future__ import annotations

import json
from collections import Counter
from itertools import compress, islice, repeat
from operator import add, eq, itemgetter, ne, sub
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..protocol.clock import wall_offset
from ..protocol.rundir import session_id, session_ids
from ..protocol.wire import ERROR, INCOMPLETE, PARTIAL, CallColumns
from ..store.api import RESULTS
from ..model import histogram as H
from .aggregate import EXAMPLES
from .retention import EXEMPLAR, FAILED, PRUNED, RECENT
from .sessiontree import Contribution

if TYPE_CHECKING:
    from ..store.api import Store
    from .ingest import Ingestor, Proc


def pick(ing: Ingestor, proc: Proc, calls: CallColumns, starts: list[Any]) -> dict[int, int]:
    """The sessions of a frame that start and end in it with their root as their only
    record: session -> its record's index, in frame order. Empty where the grouped path does
    not serve the process: sessions reloaded from the store (a resumed run), and runs with
    session hooks (they take each session as it ends).

    Column at a time, with C-level builtins: a frame of one-call sessions holds thousands."""
    n = len(calls)
    if not starts or not n or ing.hooks is not None or proc.pk in ing.resumed:
        return {}
    cids, sess, ress = calls.col(0), calls.col(2), calls.col(7)
    # One difference at a time: with several arguments, set.difference walks every one
    # after the first, and ``proc.done`` holds up to 128k sessions; with one, it walks the
    # set (a frame's starts) and looks each up.
    wanted = set(map(itemgetter(0), starts)).difference(proc.pending).difference(proc.done)
    if not wanted:
        return {}
    if len(set(sess)) != n:  # some sessions have several records here: not theirs
        counts = Counter(sess)
        wanted = {ses for ses in wanted if counts.get(ses) == 1}
    if cids == sess and INCOMPLETE not in ress:  # every record is a session's root
        if wanted.issuperset(sess):
            return dict(zip(sess, range(n)))  # all of them
        return dict(compress(zip(sess, range(n)), map(wanted.__contains__, sess)))
    ok = map(all, zip(map(wanted.__contains__, sess), map(eq, cids, sess),
                      map(ne, ress, repeat(INCOMPLETE))))
    return dict(compress(zip(sess, range(n)), ok))


class _Take:
    """The values at ``idx`` (ascending record indices of a frame of ``n``) of the frame's
    columns: the column itself when that is every record, slices where the indices run
    consecutively (a frame's one-call sessions are most of its records: a few runs around
    the others), else a lookup per index."""

    __slots__ = ("idx", "whole", "slices")

    def __init__(self, idx: list[int], n: int) -> None:
        self.idx = idx
        m = len(idx)
        self.whole = m == n and (not m or (idx[0] == 0 and idx[-1] == n - 1))
        self.slices: list[slice] | None = None
        if m and not self.whole:
            # where a run ends: at most _RUNS of them are looked for (a gap of 1 is a small
            # int, no new object per index)
            breaks = list(islice(compress(range(1, m), map(ne, map(sub, idx[1:], idx),
                                                           repeat(1))), _RUNS))
            if len(breaks) < _RUNS:
                bounds = [0, *breaks, m]
                self.slices = [slice(idx[a], idx[b - 1] + 1) for a, b in zip(bounds, bounds[1:])]

    def __call__(self, col: list[Any]) -> list[Any]:
        if self.whole:
            return col
        if self.slices is not None:
            out = col[self.slices[0]]
            for part in self.slices[1:]:
                out += col[part]
            return out
        return list(map(col.__getitem__, self.idx))


_RUNS = 16  # runs of consecutive indices gathered as slices
_FEW_KEYS = 8  # groups of a frame found by a pass per group (more: one pass in Python)


def store_singles(ing: Ingestor, proc: Proc, calls: CallColumns, picks: dict[int, int],
                  starts: list[Any], names: dict[int, str], chunk: int) -> None:
    """Store the one-call sessions ``picks`` of a frame (see :func:`pick`). ``starts`` are
    the frame's session starts, ``names`` the session names the frame set; ``chunk`` is the
    frame's chunk. Rows are built column by column: no object per session."""
    _cids, _pars, _ses, fids, pfids, ins, outs, ress, excs, t0s, t1s, thrs, cpus = calls.cols
    durs = calls.dur
    sel = list(picks.values())  # record indices, frame order
    sess = list(picks)
    m = len(sel)
    take = _Take(sel, len(calls))
    key_cols = [take(col) for col in (fids, pfids, ins, outs, ress, excs)]
    # Sessions are grouped by the key columns that vary in the frame: usually none (a frame
    # of one function's sessions, alike), or the shapes the budget sampled for some.
    varying = [col for col in key_cols if col.count(col[0]) != m]
    # each session's key: its values of the varying columns; None where all are alike
    keys: list[Any] | None = None
    groups: dict[Any, list[int]]  # key -> record indices, frame order
    full: dict[Any, tuple[Any, ...]]  # key -> the group's values of every key column
    if not varying:
        key = tuple(col[0] for col in key_cols)
        groups, full = {key: sel}, {key: key}
    else:
        keys = varying[0] if len(varying) == 1 else list(zip(*varying))
        distinct = dict.fromkeys(keys)
        groups, full = {}, {}
        if len(distinct) <= _FEW_KEYS:  # a pass per group, no Python loop per session
            for key in distinct:
                at = list(compress(range(m), map(eq, keys, repeat(key))))
                groups[key] = at if take.whole else list(map(sel.__getitem__, at))
                full[key] = tuple(col[at[0]] for col in key_cols)
        else:
            for j, (key, i) in enumerate(zip(keys, sel)):
                g = groups.get(key)
                if g is None:
                    groups[key] = [i]
                    full[key] = tuple(col[j] for col in key_cols)
                else:
                    g.append(i)
    fmap, smap, namer = proc.fids, proc.sids, proc.namer
    pk = proc.pk
    novel_at: set[int] = set()  # record index of the first session of a group that was novel
    # what the sessions of a group share in their rows
    row_of: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    # the group's variant's and error cluster's examples
    examples_of: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    fn_names = ing.fn_names
    for key, idx in groups.items():
        fid, pfid, in_s, out_s, res, exc = full[key]
        f = fmap.get(fid, 0)
        take_g = take if idx is sel else _Take(idx, len(calls))
        ds = take_g(durs)
        if min(ds) < 0:
            ds = list(map(max, ds, repeat(0)))
        k = len(idx)
        total = sum(ds)
        hist: dict[int, int] = {}
        for d, n in Counter(ds).items():
            H.add(hist, d, n)
        c = Contribution()
        c.nodes[f] = [k, k if res == ERROR else 0, k if res == PARTIAL else 0, total, total,
                      min(ds), max(ds), k, sum(take_g(cpus))]
        c.hists[f] = hist
        if pfid:
            c.edges[(fmap.get(pfid, 0), f, res)] = [k, total]
        for io, wire_sid in (("in", in_s), ("out", out_s)):
            s = smap.get(wire_sid, 0) if wire_sid else 0
            if s:
                c.shapes[(f, io, s)] = k
        path = namer.path_json((fid,))
        c.paths[path] = k
        cluster = None
        if res == ERROR:
            cluster = (smap.get(exc, 0) if exc else 0, f, path, 0)
            c.errors[cluster] = k
        c.variant = (namer.leaves.get(fid) or namer.leaf(fid)).hex()
        failed = res == ERROR
        raised = ((f, smap[exc], 1),) if failed and smap.get(exc, 0) else ()
        row_of[key] = (fn_names.get(f, "?"), f, RESULTS[res], int(failed), c.variant,
                       f" {f} ", json.dumps([list(t) for t in raised]) if raised else None)
        c.root_fid = f
        starts_ns = take_g(t0s)
        c.start = min(starts_ns)
        c.failed = failed
        if ing.agg.add_alike(c, k, session_id(pk, calls.col(2)[idx[0]]), hist, max(starts_ns)):
            novel_at.add(idx[0])
        examples_of[key] = ing.agg.examples(c.variant, cluster)

    # Example sessions, in frame order, until every list the frame's groups add to is full.
    open_lists = {id(x): x for ex in examples_of.values() for x in ex
                  if x is not None and len(x) < EXAMPLES}
    if open_lists:
        for key, ses in zip(repeat(next(iter(groups))) if keys is None else keys, sess):
            one_id = session_id(pk, ses)
            for examples in examples_of[key]:
                if examples is not None and len(examples) < EXAMPLES \
                        and one_id not in examples:
                    examples.append(one_id)
            if all(len(x) >= EXAMPLES for x in open_lists.values()):
                break
    if keys is None:  # one group: its row's values repeated
        shared_cols = [[v] * m for v in row_of[next(iter(groups))]]
    else:  # a value the groups share repeated, else each session's group's
        group_rows = list(row_of.values())
        shared_cols = []
        for j, v in enumerate(group_rows[0]):
            if all(row[j] == v for row in group_rows):
                shared_cols.append([v] * m)
            else:
                by_key = {key: row[j] for key, row in row_of.items()}
                shared_cols.append(list(map(by_key.__getitem__, keys)))
    results = shared_cols[2]
    # Which trees are kept: the novel first session of a group as an exemplar; failed ones
    # up to the cap, counted in frame order (the order sessions end); the rest as recent.
    kept = [RECENT] * m
    n_novel = n_failed = 0
    for i in novel_at:  # a record index is in ``sel`` once
        kept[sel.index(i)] = EXEMPLAR
        n_novel += 1
    cap = ing.retention.error_cap
    if ing.failed_kept < cap and results.count("success") != m:
        for j, result in enumerate(results):
            if result != "success" and kept[j] == RECENT:
                if ing.failed_kept >= cap:
                    break
                kept[j] = FAILED
                ing.failed_kept += 1
                n_failed += 1
    ing._recent_since_prune += m - n_novel - n_failed
    thread_col = _thread_column(proc.threads, starts, sess, take(thrs))
    name_col = shared_cols[0]
    if names:
        for j, ses in enumerate(sess):
            if ses in names:
                name_col[j] = names[ses]
    shift = wall_offset(proc.anchor)
    t0 = list(map(add, take(t0s), repeat(shift)))
    t1 = list(map(add, take(t1s), repeat(shift)))
    durations = take(durs)  # as the decoder made them: t1 - t0
    held = ing.held
    sid = held.next_sid(ing.store)
    sids = range(sid, sid + m)
    # The ids (``<pk>-<number>``) are left to the store where every number makes one: a
    # compact store keeps the number only.
    numbered = min(sess) >= 0
    ids = None if numbered else session_ids(pk, sess)
    held.add_columns((
        sids, ids, [ing.run_id] * m, name_col, shared_cols[1], [proc.pid] * m, [pk] * m,
        thread_col, results, [1] * m, t0, t1, durations, [1] * m, shared_cols[3],
        shared_cols[4], kept, shared_cols[5], shared_cols[6]), chunk,
        sess if numbered else [None] * m)
    proc.done.update(zip(sess, sids))
    proc.trim_done()
    if ing.finished_sink is not None:
        ing._finished.extend(ids if ids is not None else session_ids(pk, sess))


def _thread_column(threads: dict[int, str], starts: list[Any], sess: list[int],
                   record_threads: list[int]) -> list[str]:
    """Each picked session's thread: its start's name, else the name known for the start's
    thread or the record's, else the record's thread id."""
    if min(map(len, starts)) > 4:  # every start names its thread: usually one name
        start_names = list(map(itemgetter(4), starts))
        first = start_names[0]
        if type(first) is str and first and start_names.count(first) == len(start_names):
            return [first] * len(sess)  # the picked sessions are among the starts
        start_name = dict(zip(map(itemgetter(0), starts), start_names))
        col = list(map(start_name.__getitem__, sess))
        if all(type(v) is str and v for v in set(col)):
            return col
    start_thread = dict(zip(map(itemgetter(0), starts), map(itemgetter(3), starts)))
    pairs = list(zip(map(start_thread.__getitem__, sess), record_threads))
    by_pair = {p: threads.get(p[0]) or threads.get(p[1]) or str(p[1])
               for p in dict.fromkeys(pairs)}
    thread_col = list(map(by_pair.__getitem__, pairs))
    named = [s for s in starts if len(s) > 4 and s[4]]
    if named:
        pos = dict(zip(sess, range(len(sess))))
        for s in named:
            j = pos.get(s[0])
            if j is not None and str(s[4]):
                thread_col[j] = str(s[4])
    return thread_col


_SID, _KEPT = 0, 16  # places of the row id and tree_kept in a sessions row
_PRUNE_RECENT = {RECENT: PRUNED}  # a tree_kept value as pruning leaves it (get(v, v))
_SHARED = 7  # values a group's sessions share in their rows (store_singles' row_of)


class Held:
    """The one-call session rows of the write transaction under way, written when it ends
    (:meth:`flush`), or before anything else writes or reads session rows.

    Retention is decided for them as a whole there: of the run's recent sessions only the
    newest ``recent`` keep their trees, and rows are numbered in the order they are
    written, so a held recent session with at least ``recent`` held recent sessions after it
    would be pruned by the next pruning whatever comes later. It is written pruned, with no
    link to its frame's chunk, instead of being written, linked, and then unlinked and
    marked row by row: the sessions of a drain (a program that made hundreds of thousands
    of them before the sidecar caught up) are written once.

    Rows are held column by column, a block (a list per column of the ``sessions`` table)
    per frame as it was made: marking a row pruned is one store into its block's
    ``tree_kept`` column, no column is copied into a longer one, and the row tuples are
    only made as the store's insert reads them."""

    def __init__(self) -> None:
        self._blocks: list[_Block] = []
        self._rows = 0
        self._next = 0  # the next free row id while rows are held

    def __bool__(self) -> bool:
        return self._rows > 0

    def __len__(self) -> int:
        return self._rows

    def next_sid(self, store: Store) -> int:
        return self._next if self else store.next_session_rowid()

    def reserve(self) -> int | None:
        """A row id for a session row written now, while rows are held (None: none held,
        the store numbers it)."""
        if not self:
            return None
        self._next += 1
        return self._next - 1

    def unreserve(self, sid: int) -> None:
        if sid == self._next - 1:
            self._next = sid

    def add(self, rows: Iterable[tuple[Any, ...]], chunk: int) -> None:
        """Whole rows (in the ``sessions`` table's column order) of sessions in ``chunk``."""
        rows = list(rows)
        if rows:
            self.add_columns(tuple(map(list, zip(*rows))), chunk)

    def add_columns(self, cols: Sequence[Sequence[Any] | None], chunk: int,
                    numbers: Sequence[int | None] | None = None) -> None:
        """Rows given column by column (equally long, in the ``sessions`` table's column
        order) of sessions in ``chunk``; ``numbers``: their session numbers where the rows
        are one-call sessions made by :func:`store_singles` (ids ``<pk>-<number>``; the ids
        column may then be None, see ``Store.insert_session_columns``). The columns are
        held as they are (the ``tree_kept`` one must be a list of its own)."""
        if len(cols) != _COLUMNS or len({len(c) for c in cols if c is not None}) != 1 \
                or (cols[1] is None and (numbers is None or None in numbers)):
            raise ValueError("held session rows need every column, equally long")
        block = _Block(list(cols), numbers, chunk)
        sids, kept = block.cols[_SID], block.cols[_KEPT]
        if not sids:
            return
        if type(kept) is not list:
            block.cols[_KEPT] = list(kept)
        self._blocks.append(block)
        self._rows += len(sids)
        self._next = sids[-1] + 1

    def flush(self, store: Store, recent: int) -> int:
        """Write the held rows and their links; returns how many were written pruned."""
        if not self:
            return 0
        blocks = self._blocks
        over = sum(b.cols[_KEPT].count(RECENT) for b in blocks) - recent
        for b in blocks:  # the oldest held recent rows, in row order
            if over <= 0:
                break
            kept = b.cols[_KEPT]
            recent = kept.count(RECENT)
            if recent <= over:  # every recent row of the block
                kept[:] = map(_PRUNE_RECENT.get, kept, kept)
                over -= recent
            else:  # up to the over-th recent row
                end = list(compress(range(len(kept)), map(RECENT.__eq__, kept)))[over - 1] + 1
                kept[:end] = map(_PRUNE_RECENT.get, kept[:end], kept[:end])
                over = 0
        pruned = 0
        touched = []
        links: list[tuple[int, int, int]] = []
        for b in blocks:
            store.insert_session_columns(b.cols, b.numbers)
            kept, sids = b.cols[_KEPT], b.cols[_SID]
            n_pruned = kept.count(PRUNED)  # held rows are pruned only here (a retry too)
            pruned += n_pruned
            if n_pruned:
                touched.append(b.chunk)
                links += zip(compress(sids, map(PRUNED.__ne__, kept)), repeat(b.chunk),
                             repeat(1))
            else:
                links += zip(sids, repeat(b.chunk), repeat(1))
        store.link_chunks(links)
        if touched:  # as pruning leaves them: gone when unlinked, else compacted
            store.release_chunks(list(dict.fromkeys(touched)))
        # Let go only once written: a write that failed (and was rolled back) is tried
        # again with the transaction's next flush.
        self._blocks = []
        self._rows = 0
        return pruned


@dataclass
class _Block:
    """Held rows of one frame: the ``sessions`` table's columns, the session numbers of
    one-call sessions (see :meth:`Held.add_columns`) and the frame's chunk."""

    cols: list[Any]  # the ids column may be None (see Held.add_columns)
    numbers: Sequence[int | None] | None
    chunk: int


_COLUMNS = 19  # columns of a sessions row
