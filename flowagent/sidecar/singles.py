"""Sessions of exactly one call, stored a frame at a time.

A program that serves many tiny requests, or calls one selected function from unselected code
in a loop, makes one session per call: hundreds of thousands of them. Taking each through a
session tree, a contribution, the aggregates and two statements (its row made when it starts,
updated when it ends) costs the sidecar tens of microseconds per session, so the drain after
such a program ends took far longer than the program. A one-call session is fully described
by its root record, though, so a frame's one-call sessions are grouped by what they share
(function, caller, shapes, result, exception), each group is added to the aggregates once
with summed statistics and a duration distribution, and their rows are inserted whole in one
statement. The stored result is the same as the per-session path's (a test compares the two).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ..protocol.wire import ERROR, INCOMPLETE, PARTIAL, CallColumns
from ..store.api import RESULTS, SessionEnd, SessionRow
from ..model import histogram as H
from .aggregate import EXAMPLES
from .retention import EXEMPLAR, FAILED, RECENT
from .sessiontree import Contribution

if TYPE_CHECKING:
    from .ingest import Ingestor, Proc


def pick(ing: Ingestor, proc: Proc, calls: CallColumns,
         starts: list) -> dict[int, tuple[int, tuple]]:
    """The sessions of a frame that start and end in it with their root as their only
    record: session -> (record index, start entry ``(fid, t0, thread, thread name)``), in
    frame order. Empty where the grouped path does not serve the process: sessions
    reloaded from the store (a resumed run), and runs with session hooks (they take each
    session as it ends)."""
    n = len(calls)
    if not starts or not n or ing.hooks is not None or proc.pk in ing.resumed:
        return {}
    cids, sess, ress = calls.cols[0], calls.cols[2], calls.cols[7]
    counts = {sess[0]: n} if sess.count(sess[0]) == n else Counter(sess)
    pending, done = proc.pending, proc.done
    started = {s[0]: s for s in starts}
    wanted = {ses for ses in started if counts.get(ses) == 1 and ses not in pending
              and ses not in done}
    if not wanted:
        return {}
    out = {}
    for i, ses in enumerate(sess):
        if ses in wanted and cids[i] == ses and ress[i] != INCOMPLETE:
            st = started[ses]
            out[ses] = (i, (st[1], st[2], st[3], str(st[4]) if len(st) > 4 else None))
    return out


def store_singles(ing: Ingestor, proc: Proc, calls: CallColumns,
                  picks: dict[int, tuple[int, tuple]], names: dict[int, str],
                  chunk: int) -> None:
    """Store the one-call sessions ``picks`` of a frame (see :func:`pick`). ``names`` holds
    the session names the frame set; ``chunk`` is the frame's chunk."""
    _cids, _pars, _ses, fids, pfids, ins, outs, ress, excs, t0s, t1s, thrs, cpus = calls.cols
    durs = calls.dur
    fmap, smap, namer = proc.fids, proc.sids, proc.namer
    groups: dict[tuple, list[int]] = {}
    for i, _start in picks.values():
        key = (fids[i], pfids[i], ins[i], outs[i], ress[i], excs[i])
        g = groups.get(key)
        if g is None:
            groups[key] = [i]
        else:
            g.append(i)
    pk = proc.pk
    novel_at: set[int] = set()  # record index of the first session of a group that was novel
    row_of: dict[tuple, tuple] = {}  # what the sessions of a group share in their rows
    examples_of: dict[tuple, tuple] = {}  # the group's variant's and error cluster's examples
    fn_names = ing.fn_names
    for key, idx in groups.items():
        fid, pfid, in_s, out_s, res, exc = key
        f = fmap.get(fid, 0)
        ds = [durs[i] if durs[i] > 0 else 0 for i in idx]
        k = len(idx)
        total = sum(ds)
        hist: dict[int, int] = {}
        for d, n in Counter(ds).items():
            H.add(hist, d, n)
        c = Contribution()
        c.nodes[f] = [k, k if res == ERROR else 0, k if res == PARTIAL else 0, total, total,
                      min(ds), max(ds), k, sum(cpus[i] for i in idx)]
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
        row_of[key] = (f, RESULTS[res], int(failed), c.variant, (f,), raised,
                       fn_names.get(f, "?"))
        c.root_fid = f
        starts = [t0s[i] for i in idx]
        c.start = min(starts)
        c.failed = failed
        if ing.agg.add_alike(c, k, f"{pk}-{calls.cols[2][idx[0]]}", hist, max(starts)):
            novel_at.add(idx[0])
        examples_of[key] = ing.agg.examples(c.variant, cluster)
    # The rows, in frame order (retention's error cap counts sessions in the order they end).
    sid = ing.store.next_session_rowid()
    run_id, pid = ing.run_id, proc.pid
    shift = proc.anchor[0] - proc.anchor[1]
    threads, done = proc.threads, proc.done
    cap = ing.retention.error_cap
    rows: list[SessionRow] = []
    links = []
    recent = 0
    for ses, (i, start) in picks.items():
        key = (fids[i], pfids[i], ins[i], outs[i], ress[i], excs[i])
        f, result, failed, variant, used, raised, name = row_of[key]
        session_id = f"{pk}-{ses}"
        for examples in examples_of[key]:
            if examples is not None and len(examples) < EXAMPLES and session_id not in examples:
                examples.append(session_id)
        if i in novel_at:
            kept = EXEMPLAR
        elif result != "success" and ing.failed_kept < cap:
            kept = FAILED
            ing.failed_kept += 1
        else:
            kept = RECENT
            recent += 1
        thr = thrs[i]
        t0, t1 = t0s[i] + shift, t1s[i] + shift
        rows.append(SessionRow(sid, session_id, run_id, pid, pk, SessionEnd(
            names.get(ses, name) if names else name, f,
            start[3] or threads.get(start[2]) or threads.get(thr) or str(thr),
            result, True, t0, t1, 1, failed, variant, kept, used, raised)))
        links.append((sid, chunk, 1))
        done[ses] = sid
        sid += 1
    ing._recent_since_prune += recent
    proc.trim_done()
    ing.store.insert_sessions(rows)
    ing.store.link_chunks(links)
    if ing.finished_sink is not None:
        ing._finished.extend(r.session_id for r in rows)

