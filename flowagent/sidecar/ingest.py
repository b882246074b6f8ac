"""Rings → batches → session trees → stored chunks and merged-graph aggregates.

Consistency rule: everything a frame carries (its calls, the sessions it finishes, the
aggregates they change, and the process's last stored sequence number) is written in one
SQLite transaction, and only after that commits is the ring's tail advanced. A sidecar that
dies between the two replays those frames on restart, and the sequence check stores them
once.

Cost rule: a frame's calls are stored as the frame's own compressed payload (one INSERT, see
:mod:`flowagent.store.chunks`) and folded into their sessions' trees in one pass
(:mod:`flowagent.sidecar.sessiontree`); no per-call row is built or written, and an open
session holds only its tree's open calls, so memory does not grow with a session's length.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import compress, islice
from operator import itemgetter, ne, not_
from typing import Any

from ..protocol.clock import to_mono, to_wall, wall_offset
from ..protocol.ring import RingError, RingReader
from ..protocol.rundir import (RING_SUFFIX, ring_process_key, rings_dir, session_id,
                               session_number)
from ..protocol.wire import CALL_FIELDS, INCOMPLETE, Decoder
from ..store import chunks as C
from ..store.api import (RESULTS, FunctionDef, ProcessProgress, SessionEnd, Store)
from ..store.traces import add_entries as add_trace_entries
from .aggregate import Aggregates
from .hooks import session_payload
from . import singles
from .retention import EXEMPLAR, FAILED, RECENT, Retention
from .sessiontree import NODE_ROOTS, Namer, SessionTree
from .totals import zero_totals

# Positions of a call record's fields read by name (see sessiontree).
_SES, _FID, _RES, _T0, _T1, _THR = (
    CALL_FIELDS.index(f) for f in ("ses", "fid", "res", "t0", "t1", "thr"))

# Payload bytes drained per transaction: bounds the sidecar's memory when a ring holds a lot
# (a replay, a sidecar catching up), and the time the store's write lock is held.
READ_BUDGET = 4 << 20


def _session_runs(sessions: list[int]) -> list[tuple[int, int, int]]:
    """(session, start, end) of each run of consecutive calls of one session in a frame
    (usually the whole frame: a process's flows rarely interleave within one batch)."""
    if sessions.count(sessions[0]) == len(sessions):
        return [(sessions[0], 0, len(sessions))]
    # Where the session changes, found by C-level builtins (a frame of one-call sessions
    # has a run per call).
    starts = [0, *compress(range(1, len(sessions)), map(ne, sessions[1:], sessions[:-1]))]
    ends = [*starts[1:], len(sessions)]
    return list(zip(map(sessions.__getitem__, starts), starts, ends))


def _start_thread_names(starts: list[list[Any]]) -> dict[int, str]:
    """Thread id -> name of the starts that name their thread (``[ses, fid, t0, thr, name]``),
    the last one per thread in frame order."""
    named = starts if min(map(len, starts)) > 4 else [s for s in starts if len(s) > 4]
    if not named:
        return {}
    threads = list(map(itemgetter(3), named))
    if threads.count(threads[0]) == len(threads):  # usually: one thread, its last name
        return {int(threads[0]): str(named[-1][4])}
    last = dict(zip(threads, map(itemgetter(4), named)))
    return {int(thr): str(name) for thr, name in last.items()}


@dataclass
class Pending:
    """A session whose root call has not finished (yet): its row and its folding tree."""

    rowid: int
    tree: SessionTree
    name: str | None = None
    thread_name: str | None = None


WATCH_NS = 50_000_000  # how often processes with open sessions are checked for being gone


def process_gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie waiting for its parent counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, not ours to signal
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


@dataclass
class Proc:
    pk: str
    reader: RingReader
    pid: int
    namer: Namer
    last_seq: int = 0
    fids: dict[int, int] = field(default_factory=dict)
    sids: dict[int, int] = field(default_factory=dict)
    threads: dict[int, str] = field(default_factory=dict)
    anchor: tuple[int, int] = (0, 0)
    pending: dict[int, Pending] = field(default_factory=dict)
    stored: int = 0
    duplicates: int = 0
    agent_errors: int = 0
    info: dict[Any, Any] = field(default_factory=dict)
    last_counters: dict[Any, Any] = field(default_factory=dict)
    sampled_out: int = 0
    displaced: tuple[int, int] = (0, 0)  # profile backend: (times, ns) not recorded
    gone_ns: int = 0  # wall clock when the process was first seen gone (0: alive or unknown)
    # Sessions whose root already ended -> their row: calls that work they started (a
    # thread, a task) makes afterwards are stored with them, never reopen them.
    done: dict[int, int] = field(default_factory=dict)

    def trim_done(self) -> None:
        """Forget the oldest finished sessions beyond :data:`_DONE_KEPT`, as many at a time
        (deleting a dict's first key one by one makes each later ``next(iter(...))`` walk the
        deleted slots: quadratic over a run; and a copy of the newest per fewer forgotten
        costs a copied entry per session or more when sessions are tiny and many)."""
        if len(self.done) >= 2 * _DONE_KEPT:
            # islice walks the older half without a tuple per entry (the items iterator
            # reuses its tuple when nobody keeps it)
            newest = list(islice(self.done.items(), len(self.done) - _DONE_KEPT, None))
            self.done.clear()
            self.done.update(newest)


_DONE_KEPT = 1 << 16  # finished sessions remembered per process for such late calls


def _under_parent(contrib: Any, parent_fid: int | None, result: int) -> None:
    """A child process's session in the merged graph: its root is called by the call that
    started it (an edge), not an entry point of the program, and it is part of a flow,
    not a flow (variant, root-to-leaf paths) of its own."""
    contrib.variant = ""
    contrib.paths = {}
    if not parent_fid or not contrib.root_fid:
        return
    edge = contrib.edges.setdefault((parent_fid, contrib.root_fid, result), [0, 0])
    edge[0] += 1
    edge[1] += contrib.duration
    node = contrib.nodes.get(contrib.root_fid)
    if node is not None and node[NODE_ROOTS] > 0:
        node[NODE_ROOTS] -= 1


class Ingestor:
    def __init__(self, store: Store, run_id: str, run_dir: str,
                 retention: Retention = Retention(), hooks: Any = None) -> None:
        self.store = store
        self.run_id = run_id
        self.ring_dir = rings_dir(run_dir)
        self.procs: dict[str, Proc] = {}
        self.bad_rings: set[str] = set()
        self._decoder: Decoder | None = None  # made with the first frame (zstandard loads)
        self.fn_ids: dict[str, int] = {
            r["name"]: fid for fid, r in store.functions(run_id).items()}
        self.fn_names: dict[int, str] = {fid: name for name, fid in self.fn_ids.items()}
        self.agg = Aggregates.load(store, run_id)
        self.undecodable = 0
        self.retention = retention
        self.hooks = hooks
        self.failed_kept = store.count_kept(run_id, FAILED)
        self._recent_since_prune = 0
        self.sampled_out = 0
        # Receives the ids of finished sessions once they are committed (the OTLP sender).
        self.finished_sink: Callable[[list[str]], None] | None = None
        self._finished: list[str] = []
        self._next_watch = 0
        self.resumed: set[str] = set()  # processes whose state was reloaded from the store
        # Sessions of child processes, until they finish -> the function of the call that
        # started them (their root's caller in the merged graph).
        self.parent_functions: dict[str, str] = {}
        # One-call session rows written when the transaction ends (retention decided there).
        self.held = singles.Held()

    def decoder(self) -> Decoder:
        if self._decoder is None:
            self._decoder = Decoder()
        return self._decoder

    # -- discovery -------------------------------------------------------------------------
    def discover(self) -> None:
        try:
            names = os.listdir(self.ring_dir)
        except FileNotFoundError:
            return
        for name in names:
            if not name.endswith(RING_SUFFIX) or name in self.bad_rings:
                continue
            pk = ring_process_key(name)
            if pk in self.procs:
                continue
            try:
                reader = RingReader(os.path.join(self.ring_dir, name))
            except (RingError, OSError, ValueError):
                self.bad_rings.add(name)  # counted as foreign_rings in the totals
                continue
            fids: dict[int, int] = {}
            proc = Proc(pk=pk, reader=reader, pid=reader.pid, info=reader.info(), fids=fids,
                        namer=Namer(self._name_of(fids)))
            row = self.store.process_state(self.run_id, pk)
            if row is not None:  # a restarted sidecar: resume where the store says
                proc.last_seq, proc.stored, proc.duplicates = (row.last_seq, row.stored_events,
                                                               row.duplicate_frames)
                reader.tail = max(reader.tail, row.ring_tail)
                self.resumed.add(pk)
                self._reload(proc, row.info)
            else:
                self.store.add_process(self.run_id, pk, reader.pid, reader.ppid, proc.info,
                                       reader.created_ns)
            self.procs[pk] = proc

    def _name_of(self, fids: dict[int, int]) -> Callable[[int], str]:
        """A process's function names by its own ids (``fids`` fills in as defs arrive)."""
        names = self.fn_names
        return lambda wire_fid: names.get(fids.get(wire_fid, 0), "?")

    def _reload(self, proc: Proc, saved: Any) -> None:
        """Rebuild the id maps and open sessions of a process from the store (resume): each
        open session's tree is folded again from its stored chunks."""
        proc.fids.update({int(k): v for k, v in saved.get("fids", {}).items()})
        proc.sids.update({int(k): v for k, v in saved.get("sids", {}).items()})
        proc.threads.update({int(k): v for k, v in saved.get("threads", {}).items()})
        anchor = saved.get("anchor", (0, 0))
        proc.anchor = (anchor[0], anchor[1])
        wire_fid = {v: k for k, v in proc.fids.items()}
        for s in self.store.open_sessions(self.run_id, proc.pk):
            ses = session_number(s.session_id)
            thread = int(s.thread) if s.thread and s.thread.lstrip("-").isdigit() else 0
            tree = SessionTree(ses, proc.namer, wire_fid.get(s.root_fid, 0),
                               to_mono(s.started_ns, proc.anchor), thread)
            for data in self.store.session_chunk_data(s.rowid):
                rows, _anchor = C.decode(data)
                tree.feed([r for r in rows if r[_SES] == ses])
            proc.pending[ses] = Pending(s.rowid, tree, s.name)

    # -- draining --------------------------------------------------------------------------
    def poll(self) -> int:
        """Drain every ring once; returns the number of call records stored."""
        self.discover()
        stored = 0
        for proc in list(self.procs.values()):
            stored += self._drain(proc)
            proc.reader.retire_if_done()
        self._watch_processes()
        return stored

    def _watch_processes(self) -> None:
        """Note when each process with open sessions is first seen gone: a killed process's
        open sessions ran until then, not just until their last recorded event."""
        now = time.time_ns()
        if now < self._next_watch:
            return
        self._next_watch = now + WATCH_NS
        for proc in self.procs.values():
            if proc.pending and not proc.gone_ns and process_gone(proc.pid):
                proc.gone_ns = now

    def _drain(self, proc: Proc) -> int:
        reader = proc.reader
        frames = [(seq, payload) for seq, payload, end in reader.read(READ_BUDGET)]
        end = reader.last_end
        counters = reader.counters()
        if not frames and counters == proc.last_counters:
            return 0  # nothing new: no write at all (the sidecar polls every few ms)
        proc.last_counters = counters
        stored = 0
        with self.store.transaction():
            for seq, payload in frames:
                if seq <= proc.last_seq:
                    proc.duplicates += 1
                    continue
                try:
                    batch = self.decoder().decode_columns(payload)
                except ValueError:
                    self.undecodable += 1
                    proc.last_seq = seq
                    continue
                try:
                    with self.store.savepoint():
                        stored += self._apply(proc, batch, payload)
                except Exception:
                    # Validated, yet unusable (ids out of range, values out of the store's
                    # range): drop this frame's rows, count it, keep going.
                    self.undecodable += 1
                proc.last_seq = seq
            self._flush_held()
            self._save_proc(proc, end if end is not None else reader.tail, counters)
            self.agg.flush(self.store, self.run_id)
        self._hand_over_finished()
        if end is not None:
            reader.commit(end)
        return stored

    def _flush_held(self) -> None:
        if self.held:
            self._recent_since_prune -= self.held.flush(self.store, self.retention.recent)

    def _hand_over_finished(self) -> None:
        if self._finished:
            finished, self._finished = self._finished, []
            if self.finished_sink is not None:
                self.finished_sink(finished)

    def _save_proc(self, proc: Proc, tail: int, c: dict[str, int]) -> None:
        info = dict(proc.info, fids=proc.fids, sids=proc.sids, threads=proc.threads,
                    anchor=list(proc.anchor))
        self.store.save_process(self.run_id, proc.pk, ProcessProgress(
            proc.last_seq, min(tail, 2**63 - 1), c["produced_events"], c["dropped_events"],
            c["dropped_batches"], proc.stored, proc.duplicates,
            proc.reader.corrupt_frames + self.undecodable, proc.agent_errors, c["closed"],
            info))

    # -- applying one batch ------------------------------------------------------------------
    def _fn(self, name: str, module: str, qualname: str, file: str, line: int, kind: str,
            params: Any) -> int:
        fid = self.fn_ids.get(name)
        if fid is None:
            fid = len(self.fn_ids) + 1
            self.store.add_function(self.run_id, FunctionDef(fid, name, module, qualname, file,
                                                             line, kind, params))
            self.fn_ids[name] = fid
            self.fn_names[fid] = name
        return fid

    def _apply(self, proc: Proc, batch: dict[str, Any], payload: bytes) -> int:
        store = self.store
        a = batch.get("anchor")
        if isinstance(a, list) and len(a) == 2:
            proc.anchor = (int(a[0]), int(a[1]))
        for fid, module, qualname, file, line, params, kind in batch.get("defs", ()):
            proc.fids[fid] = self._fn(f"{module}:{qualname}", module, qualname, file, line,
                                      kind, params)
        for sid, value in batch.get("strings", ()):
            text = json.dumps(value) if isinstance(value, list) else str(value)
            proc.sids[sid] = store.shape_id(text)
        for ident, name in batch.get("threads", ()):
            proc.threads[int(ident)] = str(name)
        proc.agent_errors = int(batch.get("agent_errors", proc.agent_errors))
        proc.sampled_out = int(batch.get("sampled_out", proc.sampled_out))
        d = batch.get("profile_displaced")
        if isinstance(d, list) and len(d) == 2:
            proc.displaced = (int(d[0]), int(d[1]))
        calls = batch["calls"]
        starts = batch.get("starts", ())
        # a child process's session hangs under its parent call: never the grouped path
        linked = {link[0] for link in batch.get("links", ())}
        picks = singles.pick(self, proc, calls, [s for s in starts if s[0] not in linked]
                             if linked else starts)
        thread_names = None
        if picks:
            # The picked sessions are stored below, with the frame's other one-call
            # sessions; their starts only name threads. Every start of a recorder that names
            # its thread carries the name, so the names are taken column-wise: the last one
            # per thread in frame order, as the loop below would leave them.
            thread_names = _start_thread_names(starts)
            starts = list(compress(starts, map(not_, map(picks.__contains__,
                                                         map(itemgetter(0), starts)))))
        for ses, fid, t0, thr, *name in starts:
            opened = self._open(proc, ses, fid, t0, thr)
            if name:
                opened.thread_name = str(name[0])
                proc.threads[int(thr)] = opened.thread_name
        if thread_names:
            proc.threads.update(thread_names)
        for ses, name in batch.get("names", ()):
            named = proc.pending.get(ses)
            if named is not None:
                named.name = str(name)
        if "traces" in batch:
            add_trace_entries(store, self.run_id, proc.pk, batch["traces"])
        for ses, parent, call, function, pid in batch.get("links", ()):
            store.add_session_link(self.run_id, session_id(proc.pk, ses), parent, call,
                                   function, pid)
            self.parent_functions[session_id(proc.pk, ses)] = function
        n_calls = len(calls)
        if not n_calls:
            return 0
        chunk = store.add_chunk(self.run_id, proc.pk, C.WIRE, n_calls, payload)
        links: dict[int, int] = {}
        late_links = False
        finished = []
        cids, sessions, fids, t0s, threads = map(calls.col, (0, 2, 3, 9, 11))
        runs = _session_runs(sessions) if len(picks) < n_calls else []
        if picks and runs:  # the picked sessions' runs (most) are left out column-wise
            runs = list(compress(runs, map(not_, map(picks.__contains__,
                                                      map(itemgetter(0), runs)))))
        for ses, lo, hi in runs:
            p: Pending | None = proc.pending.get(ses)
            if p is None:
                late = proc.done.get(ses)
                if late is not None:
                    if not late_links:
                        self._flush_held()  # the session may be one of them
                        late_links = True
                    links[late] = links.get(late, 0) + hi - lo
                    continue
                p = self._open(proc, ses, fids[lo] if cids[lo] == ses else 0, t0s[lo],
                               threads[lo])
            run = calls if hi - lo == n_calls else calls.slice(lo, hi)
            links[p.rowid] = links.get(p.rowid, 0) + p.tree.feed(run)
            if p.tree.root is not None:
                finished.append(ses)
        if links:
            store.link_chunks([(rowid, chunk, n) for rowid, n in links.items()])
        proc.stored += n_calls
        for ses in dict.fromkeys(finished):
            self._finish(proc, ses, complete=True)
        if picks:
            given = {ses: str(name) for ses, name in batch.get("names", ()) if ses in picks}
            singles.store_singles(self, proc, calls, picks, batch.get("starts", ()), given,
                                  chunk)
        return n_calls

    def _open(self, proc: Proc, ses: int, root_fid: int, t0: int, thr: int) -> Pending:
        """The session ``ses`` (ids and clock of the process) as a pending session row."""
        p = proc.pending.get(ses)
        if p is not None:
            return p
        # While one-call sessions are held, row ids go on from theirs (as if they were written).
        wanted = self.held.reserve()
        rowid = self.store.open_session(session_id(proc.pk, ses), self.run_id,
                                        proc.fids.get(root_fid, 0), proc.pid, proc.pk, str(thr),
                                        to_wall(t0, proc.anchor), wanted)
        if wanted is not None and rowid != wanted:  # a replay: the row existed
            self.held.unreserve(wanted)
        p = Pending(rowid, SessionTree(ses, proc.namer, root_fid, t0, thr))
        proc.pending[ses] = p
        return p

    def _finish(self, proc: Proc, ses: int, complete: bool) -> None:
        p = proc.pending.pop(ses)
        done = proc.done
        done[ses] = p.rowid
        proc.trim_done()
        tree = p.tree
        if not complete:
            # Open until its process was seen gone (or the run ended): in the process's own
            # clock through its wall/monotonic anchor.
            if proc.anchor[0] and proc.gone_ns:
                tree.end = max(tree.end, to_mono(proc.gone_ns, proc.anchor))
            placeholders = tree.placeholders()
            if placeholders:
                tree.feed(placeholders)
                chunk = self.store.add_chunk(self.run_id, proc.pk, C.WIRE, len(placeholders),
                                             C.encode(placeholders, proc.anchor),
                                             placeholders=len(placeholders))
                self.store.link_chunks([(p.rowid, chunk, len(placeholders))])
        tree.finish()
        fids, sids = proc.fids, proc.sids
        contrib = tree.contribution(lambda f: fids.get(f, 0), lambda s: sids.get(s, 0))
        session_key = session_id(proc.pk, ses)
        parent_function = self.parent_functions.pop(session_key, None)
        if parent_function is not None and tree.root is not None:
            _under_parent(contrib, self.fn_ids.get(parent_function), tree.root[_RES])
        novel = self.agg.add(contrib, session_key)
        root = tree.root
        if root is None:
            return
        names = self.fn_names
        root_fid = fids.get(root[_FID], 0)
        result = RESULTS[root[_RES]] if complete else RESULTS[INCOMPLETE]
        errors = tree.error_calls()
        name = p.name or names.get(root_fid, "?")
        thread = (p.thread_name or proc.threads.get(tree.thread) or proc.threads.get(root[_THR])
                  or str(root[_THR]))
        if novel:
            kept = EXEMPLAR
        elif result != "success" and self.failed_kept < self.retention.error_cap:
            kept = FAILED
            self.failed_kept += 1
        else:
            kept = RECENT
            self._recent_since_prune += 1
        n_calls = tree.calls()
        shift = wall_offset(proc.anchor)
        t0, t1 = root[_T0] + shift, root[_T1] + shift
        used = sorted({fids.get(f, 0) for f in tree.fids()})
        raised = tuple((fids.get(f, 0), sids.get(e, 0), n)
                       for (f, e), n in tree.raised().items() if sids.get(e, 0))
        self.store.finish_session(p.rowid, SessionEnd(
            name, root_fid, thread, result, complete, t0, t1, n_calls, errors, contrib.variant,
            kept, tuple(used), raised))
        if self.finished_sink is not None:
            self._finished.append(session_key)
        if self.hooks is not None:
            self.hooks.session(session_payload(
                session_key, self.run_id, name, result, complete, proc.pid, t0, t1 - t0,
                n_calls, errors, contrib, names))

    def prune(self, force: bool = False) -> int:
        """Drop the trees of the oldest 'recent' sessions beyond the retention window."""
        if not force and self._recent_since_prune < max(self.retention.recent // 10, 100):
            return 0
        self._recent_since_prune = 0
        return self.store.prune_recent(self.run_id, RECENT, self.retention.recent)

    def drain_to_end(self) -> None:
        """Poll until nothing moves any more: new records, a reader position, or a reader
        still deciding whether a bad frame was torn (it re-reads it on the next poll)."""
        marker = None
        while True:
            stored = self.poll()
            now = tuple((p.pk, p.reader.tail, p.reader.corrupt_bytes, p.reader._suspect)
                        for p in self.procs.values())
            if not stored and now == marker:
                return
            marker = now

    def finish_all(self, keep_open: frozenset[str] = frozenset()) -> int:
        """End of run: every session still open is stored as incomplete, except those of the
        processes in ``keep_open`` (still running: a later resume continues them). Returns
        how many."""
        n = 0
        now = time.time_ns()
        with self.store.transaction():
            for proc in self.procs.values():
                if proc.pk in keep_open:
                    continue
                if proc.pending and not proc.gone_ns:
                    proc.gone_ns = now  # gone since the last look, or still running at the end
                for ses in list(proc.pending):
                    self._finish(proc, ses, complete=False)
                    n += 1
            self.agg.flush(self.store, self.run_id)
        self._hand_over_finished()
        return n

    def totals(self) -> dict[str, int]:
        t = zero_totals()
        t.update(processes=len(self.procs), foreign_rings=len(self.bad_rings))
        for p in self.procs.values():
            c = p.reader.counters()
            t["produced_events"] += c["produced_events"]
            t["dropped_events"] += c["dropped_events"]
            t["dropped_batches"] += c["dropped_batches"]
            t["corrupt_frames"] += p.reader.corrupt_frames
            t["duplicate_frames"] += p.duplicates
            t["agent_errors"] += p.agent_errors
            t["stored_events"] += p.stored
            t["sampled_out"] += p.sampled_out
            t["profile_displacements"] += p.displaced[0]
            t["profile_displaced_ns"] += p.displaced[1]
        t["corrupt_frames"] += self.undecodable + len(self.bad_rings)
        return t


__all__ = ["Ingestor", "Retention"]
