"""Rings → batches → session trees → store rows and merged-graph aggregates.

Consistency rule: everything a frame carries (its call rows, the sessions it finishes, the
aggregates they change, and the process's last stored sequence number) is written in one
SQLite transaction, and only after that commits is the ring's tail advanced. A sidecar that
dies between the two replays those frames on restart, and the sequence check stores them
once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..agent.ring import RingError, RingReader
from ..agent.wire import ERROR, INCOMPLETE, PARTIAL, Decoder
from ..store.sqlite import RESULTS, SQLiteStore
from .aggregate import Aggregates, session_contributions


@dataclass
class Pending:
    """A session whose root call has not finished (yet)."""

    rowid: int
    root_fid: int
    t0: int
    thread: int
    name: str | None = None
    calls: list[tuple] = field(default_factory=list)
    thread_name: str | None = None


@dataclass
class Proc:
    pk: str
    reader: RingReader
    pid: int
    last_seq: int = 0
    fids: dict[int, int] = field(default_factory=dict)
    sids: dict[int, int] = field(default_factory=dict)
    threads: dict[int, str] = field(default_factory=dict)
    anchor: tuple[int, int] = (0, 0)
    pending: dict[int, Pending] = field(default_factory=dict)
    stored: int = 0
    duplicates: int = 0
    agent_errors: int = 0
    info: dict = field(default_factory=dict)
    last_counters: dict = field(default_factory=dict)
    sampled_out: int = 0


@dataclass(frozen=True)
class Retention:
    """Which full session trees are kept (aggregates are always kept for every session).

    Every session that showed a new flow variant or a new error cluster is kept as an
    exemplar; sessions that failed are kept up to ``error_cap``; of the rest, the most recent
    ``recent`` are kept and older ones are pruned to their summary row.
    """

    recent: int = 10_000
    error_cap: int = 1_000


# sessions.tree_kept values
PRUNED, RECENT, FAILED, EXEMPLAR = 0, 1, 2, 3


class Ingestor:
    def __init__(self, store: SQLiteStore, run_id: str, run_dir: str,
                 retention: Retention = Retention(), hooks: Any = None) -> None:
        self.store = store
        self.db = store.db
        self.run_id = run_id
        self.ring_dir = os.path.join(run_dir, "rings")
        self.procs: dict[str, Proc] = {}
        self.bad_rings: set[str] = set()
        self.decoder = Decoder()
        self.fn_ids: dict[str, int] = {
            r["name"]: fid for fid, r in store.functions(run_id).items()}
        self.fn_names: dict[int, str] = {fid: name for name, fid in self.fn_ids.items()}
        self.agg = Aggregates.load(store, run_id)
        self.undecodable = 0
        self.retention = retention
        self.hooks = hooks
        self.failed_kept = store.db.execute(
            "SELECT COUNT(*) FROM sessions WHERE run_id=? AND tree_kept=?",
            (run_id, FAILED)).fetchone()[0]
        self._recent_since_prune = 0
        self.sampled_out = 0

    # -- discovery -------------------------------------------------------------------------
    def discover(self) -> None:
        try:
            names = os.listdir(self.ring_dir)
        except FileNotFoundError:
            return
        for name in names:
            if not name.endswith(".ring") or name in self.bad_rings:
                continue
            pk = name[:-5].rpartition("-")[2]
            if pk in self.procs:
                continue
            try:
                reader = RingReader(os.path.join(self.ring_dir, name))
            except (RingError, OSError, ValueError):
                self.bad_rings.add(name)  # counted as foreign_rings in the totals
                continue
            proc = Proc(pk=pk, reader=reader, pid=reader.pid, info=reader.info())
            row = self.db.execute("SELECT last_seq, ring_tail, stored_events, duplicate_frames "
                                  "FROM processes WHERE run_id=? AND pk=?",
                                  (self.run_id, pk)).fetchone()
            if row is not None:  # a restarted sidecar: resume where the store says
                proc.last_seq, proc.stored, proc.duplicates = row[0], row[2], row[3]
                reader.tail = max(reader.tail, row[1])
                self._reload(proc)
            else:
                self.db.execute(
                    "INSERT INTO processes(run_id, pk, pid, ppid, info, started_ns) "
                    "VALUES(?,?,?,?,?,?)", (self.run_id, pk, reader.pid, reader.ppid,
                                            json.dumps(proc.info), reader.created_ns))
            self.procs[pk] = proc

    def _reload(self, proc: Proc) -> None:
        """Rebuild the id maps and open sessions of a process from the store (resume)."""
        row = self.db.execute("SELECT info FROM processes WHERE run_id=? AND pk=?",
                              (self.run_id, proc.pk)).fetchone()
        saved = json.loads(row[0]) if row and row[0] else {}
        proc.fids = {int(k): v for k, v in saved.get("fids", {}).items()}
        proc.sids = {int(k): v for k, v in saved.get("sids", {}).items()}
        proc.threads = {int(k): v for k, v in saved.get("threads", {}).items()}
        proc.anchor = tuple(saved.get("anchor", (0, 0)))  # type: ignore[assignment]
        for s in self.db.execute("SELECT sid, session_id, root_fid, started_ns, name FROM "
                                 "sessions WHERE run_id=? AND pk=? AND complete=0 AND "
                                 "result IS NULL", (self.run_id, proc.pk)).fetchall():
            ses = int(s["session_id"].rpartition("-")[2])
            p = Pending(s["sid"], s["root_fid"], s["started_ns"], 0, s["name"])
            p.calls = [tuple(r) for r in self.db.execute(
                "SELECT call_id, parent_id, fid, caller_fid, in_sid, out_sid, result, exc_sid, "
                "t0, t1, thread, cpu_ns FROM calls WHERE sid=?", (s["sid"],))]
            proc.pending[ses] = p

    # -- draining --------------------------------------------------------------------------
    def poll(self) -> int:
        """Drain every ring once; returns the number of call records stored."""
        self.discover()
        stored = 0
        for proc in list(self.procs.values()):
            stored += self._drain(proc)
        return stored

    def _drain(self, proc: Proc) -> int:
        reader = proc.reader
        frames = [(seq, payload) for seq, payload, end in reader.read()]
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
                    batch = self.decoder.decode(payload)
                except ValueError:
                    self.undecodable += 1
                    proc.last_seq = seq
                    continue
                self.db.execute("SAVEPOINT frame")
                try:
                    stored += self._apply(proc, batch)
                except Exception:
                    # Validated, yet unusable (ids out of range, values out of SQLite's
                    # range): drop this frame's rows, count it, keep going.
                    self.db.execute("ROLLBACK TO frame")
                    self.undecodable += 1
                self.db.execute("RELEASE frame")
                proc.last_seq = seq
            self._save_proc(proc, end if end is not None else reader.tail, counters)
            self.agg.flush(self.store, self.run_id)
        if end is not None:
            reader.commit(end)
        return stored

    def _save_proc(self, proc: Proc, tail: int, c: dict[str, int]) -> None:
        info = dict(proc.info, fids=proc.fids, sids=proc.sids, threads=proc.threads,
                    anchor=list(proc.anchor))
        self.db.execute(
            "UPDATE processes SET last_seq=?, ring_tail=?, produced_events=?, dropped_events=?, "
            "dropped_batches=?, stored_events=?, duplicate_frames=?, corrupt_frames=?, "
            "agent_errors=?, closed=?, info=? WHERE run_id=? AND pk=?",
            (proc.last_seq, min(tail, 2**63 - 1), c["produced_events"], c["dropped_events"],
             c["dropped_batches"], proc.stored, proc.duplicates,
             proc.reader.corrupt_frames + self.undecodable, proc.agent_errors, c["closed"],
             json.dumps(info), self.run_id, proc.pk))

    # -- applying one batch ------------------------------------------------------------------
    def _fn(self, name: str, module: str, qualname: str, file: str, line: int, kind: str,
            params: list) -> int:
        fid = self.fn_ids.get(name)
        if fid is None:
            fid = len(self.fn_ids) + 1
            self.db.execute("INSERT INTO functions VALUES(?,?,?,?,?,?,?,?,?)",
                            (self.run_id, fid, name, module, qualname, file, line, kind,
                             json.dumps(params)))
            self.fn_ids[name] = fid
            self.fn_names[fid] = name
        return fid

    def _apply(self, proc: Proc, batch: dict[str, Any]) -> int:
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
        wall, mono = proc.anchor
        fids, sids = proc.fids, proc.sids
        for ses, fid, t0, thr, *name in batch.get("starts", ()):
            p = self._open(proc, ses, fids.get(fid, 0), wall + t0 - mono, thr)
            if name:
                p.thread_name = str(name[0])
                proc.threads[int(thr)] = p.thread_name
        for ses, name in batch.get("names", ()):
            p = proc.pending.get(ses)
            if p is not None:
                p.name = str(name)
        rows = []
        finished = []
        for (cid, par, ses, fid, pfid, ins, out, res, exc, t0, t1, thr, cpu) in batch["calls"]:
            p = proc.pending.get(ses)
            if p is None:
                p = self._open(proc, ses, fids.get(fid, 0) if cid == ses else 0,
                               wall + t0 - mono, thr)
            rec = (cid, par, fids.get(fid, 0), fids.get(pfid, 0), sids.get(ins, 0),
                   sids.get(out, 0), res, sids.get(exc, 0), wall + t0 - mono,
                   wall + t1 - mono, thr, cpu)
            p.calls.append(rec)
            rows.append((p.rowid, *rec))
            if cid == ses:
                finished.append(ses)
        self.db.executemany("INSERT OR IGNORE INTO calls VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                            rows)
        proc.stored += len(rows)
        for ses in finished:
            self._finish(proc, ses, complete=True)
        return len(rows)

    def _open(self, proc: Proc, ses: int, root_fid: int, t0: int, thr: int) -> Pending:
        p = proc.pending.get(ses)
        if p is not None:
            return p
        session_id = f"{proc.pk}-{ses}"
        cur = self.db.execute(
            "INSERT OR IGNORE INTO sessions(session_id, run_id, root_fid, pid, pk, thread, "
            "complete, started_ns) VALUES(?,?,?,?,?,?,0,?)",
            (session_id, self.run_id, root_fid, proc.pid, proc.pk, str(thr), t0))
        rowid = cur.lastrowid if cur.rowcount else self.db.execute(
            "SELECT sid FROM sessions WHERE session_id=?", (session_id,)).fetchone()[0]
        p = Pending(rowid, root_fid, t0, thr)
        proc.pending[ses] = p
        return p

    def _finish(self, proc: Proc, ses: int, complete: bool) -> None:
        p = proc.pending.pop(ses)
        calls = p.calls
        if not complete:
            calls = calls + _placeholders(ses, p, calls)
            self.db.executemany("INSERT OR IGNORE INTO calls VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                [(p.rowid, *c) for c in calls[len(p.calls):]])
        root = next((c for c in calls if c[0] == ses), None)
        names = self.fn_names
        contrib = session_contributions(calls, ses, names)
        session_key = f"{proc.pk}-{ses}"
        novel = self.agg.add(contrib, session_key)
        if root is None:
            return
        result = RESULTS[root[6]] if complete else RESULTS[INCOMPLETE]
        errors = sum(1 for c in calls if c[6] == ERROR)
        name = p.name or names.get(root[2], "?")
        thread = (p.thread_name or proc.threads.get(p.thread) or proc.threads.get(root[10])
                  or str(root[10]))
        if novel:
            kept = EXEMPLAR
        elif result != "success" and self.failed_kept < self.retention.error_cap:
            kept = FAILED
            self.failed_kept += 1
        else:
            kept = RECENT
            self._recent_since_prune += 1
        n_calls = sum(1 for c in calls if c[6] != INCOMPLETE)
        self.db.execute(
            "UPDATE sessions SET name=?, root_fid=?, thread=?, result=?, complete=?, "
            "started_ns=?, ended_ns=?, duration_ns=?, calls=?, errors=?, variant=?, "
            "tree_kept=? WHERE sid=?",
            (name, root[2], thread, result, 1 if complete else 0, root[8], root[9],
             root[9] - root[8], n_calls, errors, contrib.variant, kept, p.rowid))
        if self.hooks is not None:
            self.hooks.session({
                "session_id": session_key, "run_id": self.run_id, "name": name,
                "result": result, "complete": complete, "pid": proc.pid,
                "started_ns": root[8], "duration_ns": root[9] - root[8], "calls": n_calls,
                "errors": errors, "variant": contrib.variant,
                "functions": [names.get(c[2], "?") for c in sorted(calls, key=lambda c: c[8])],
            })

    def prune(self, force: bool = False) -> int:
        """Drop the trees of the oldest 'recent' sessions beyond the retention window."""
        if not force and self._recent_since_prune < max(self.retention.recent // 10, 100):
            return 0
        self._recent_since_prune = 0
        rows = self.db.execute(
            "SELECT sid FROM sessions WHERE run_id=? AND tree_kept=? ORDER BY sid DESC "
            "LIMIT -1 OFFSET ?", (self.run_id, RECENT, self.retention.recent)).fetchall()
        if not rows:
            return 0
        with self.store.transaction():
            ids = [(r[0],) for r in rows]
            self.db.executemany("DELETE FROM calls WHERE sid=?", ids)
            self.db.executemany(f"UPDATE sessions SET tree_kept={PRUNED} WHERE sid=?", ids)
        return len(rows)

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

    def finish_all(self) -> int:
        """End of run: every session still open is stored as incomplete. Returns how many."""
        n = 0
        with self.store.transaction():
            for proc in self.procs.values():
                for ses in list(proc.pending):
                    self._finish(proc, ses, complete=False)
                    n += 1
            self.agg.flush(self.store, self.run_id)
        return n

    def totals(self) -> dict[str, int]:
        t = dict(processes=len(self.procs), produced_events=0, dropped_events=0,
                 dropped_batches=0, corrupt_frames=0, duplicate_frames=0, agent_errors=0,
                 stored_events=0, sampled_out=0, foreign_rings=len(self.bad_rings))
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
        t["corrupt_frames"] += self.undecodable + len(self.bad_rings)
        return t


def _placeholders(ses: int, p: Pending, calls: list[tuple]) -> list[tuple]:
    """Calls that were still open when the process died: known only through their children
    (which name them as caller) and the session start. Marked ``incomplete``."""
    have = {c[0] for c in calls}
    missing: dict[int, list] = {}
    for c in calls:
        par = c[1]
        if par and par not in have:
            m = missing.setdefault(par, [c[3], c[8], c[9]])
            m[1] = min(m[1], c[8])
            m[2] = max(m[2], c[9])
    end = max((c[9] for c in calls), default=p.t0)
    out = []
    if ses not in have:
        out.append((ses, 0, p.root_fid, 0, 0, 0, INCOMPLETE, 0, p.t0, end, p.thread, 0))
        missing.pop(ses, None)
    for cid, (fid, t0, _t1) in sorted(missing.items(), key=lambda kv: kv[1][1]):
        out.append((cid, ses, fid, p.root_fid, 0, 0, INCOMPLETE, 0, t0, end, p.thread, 0))
    return out


__all__ = ["Ingestor", "PARTIAL"]
