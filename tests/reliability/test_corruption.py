"""Corrupt rings: truncated, garbled and replayed frames, bad checksums, foreign ring files,
random bytes. The sidecar skips and counts, never crashes, and keeps every valid frame that
comes after a bad one.

Rings are built with the real :class:`~flowagent.protocol.ring.RingWriter` and batches with the
real :class:`~flowagent.protocol.wire.Encoder`, shaped like the ones
``flowagent/agent/transport.py`` sends; bad frames are written into the ring's data area by
hand. :class:`~flowagent.sidecar.ingest.Ingestor` drains them in-process, polling the way the
live sidecar does (every poll, until the ring is read to its head), and one case goes end to
end through ``flowagent sidecar --resume``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zstandard
from helpers import record, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowagent.protocol import ring as R
from flowagent.protocol.wire import CALL_FIELDS, VERSION, Encoder
from flowagent.sidecar.ingest import Ingestor
from flowagent.store.sqlite import SQLiteStore

FULL = os.environ.get("FLOWAGENT_FULL", "") == "1"
RUN = "20240101-000000-ring"
CAP = 64 * 1024
EXAMPLES = int(os.environ.get("FLOWAGENT_FUZZ_EXAMPLES") or (300 if FULL else 25))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not FULL,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# What transport.py sends first: the definitions of the functions and strings it refers to.
DEFS = [[1, "shop.api", "handle", "/app/shop/api.py", 10, ["request"], "function"],
        [2, "shop.db", "query", "/app/shop/db.py", 3, ["sql", "args"], "function"]]
STRINGS = [[1, ["dict{id:int}"]], [2, ["str", "tuple[int]"]], [3, "list[int]"],
           [4, "dict{ok:bool}"]]


# -- producing ---------------------------------------------------------------------------

@dataclass
class Frame:
    seq: int
    payload: bytes
    events: int
    sessions: list[str]  # session ids its calls belong to (all complete within the frame)
    start: int = -1      # byte offset in the ring (monotonic), once written
    end: int = -1


@dataclass
class Producer:
    """One recorded process: batches as transport.py builds them, numbered like it does."""

    pid: int = 4242
    key: int = 0xBEEF01
    seq: int = 0
    next_cid: int = 1
    encoder: Encoder = field(default_factory=Encoder)
    anchor: tuple[int, int] = field(default_factory=lambda: (time.time_ns(),
                                                             time.perf_counter_ns()))

    @property
    def pk(self) -> str:
        return f"{self.key:012x}"

    def batch(self, sessions: int = 2, queries: int = 3, **override: Any) -> Frame:
        self.seq += 1
        calls, starts, ids = [], [], []
        t = self.anchor[1] + self.seq * 1_000_000
        for _ in range(sessions):
            root = self.next_cid
            self.next_cid += 1
            starts.append([root, 1, t, 7, "MainThread"])
            for _ in range(queries):
                cid = self.next_cid
                self.next_cid += 1
                calls.append((cid, root, root, 2, 1, 2, 3, 0, 0, t + 10, t + 20, 7, 0))
            calls.append((root, 0, root, 1, 0, 1, 4, 0, 0, t, t + 100, 7, 0))
            ids.append(f"{self.pk}-{root}")
            t += 1000
        # Definitions travel in every batch here (transport resends them after a dropped
        # batch), so a frame stays decodable whichever frames before it were lost.
        batch = {"v": VERSION, "pk": self.key, "pid": self.pid, "seq": self.seq,
                 "anchor": list(self.anchor), "defs": DEFS, "strings": STRINGS,
                 "starts": starts, "names": [], "threads": [[7, "MainThread"]],
                 "agent_errors": 0, "sampled_out": 0, "final": False}
        batch.update(override)
        return Frame(self.seq, self.encoder.encode(batch, calls), len(calls), ids)


def frame_bytes(seq: int, payload: bytes, crc: int | None = None,
                length: int | None = None) -> bytes:
    """A frame as RingWriter lays it out (``len | crc32 | seq | payload | pad to 8``)."""
    if crc is None:
        crc = zlib.crc32(payload, zlib.crc32(struct.pack("<Q", seq)))
    raw = struct.pack("<IIQ", len(payload) if length is None else length, crc, seq) + payload
    return raw + b"\0" * (-len(raw) % 8)


def new_ring(run_dir: Path, producer: Producer, start: int = 0) -> R.RingWriter:
    """A ring whose head and tail both start at ``start`` (so frames can wrap around)."""
    path = run_dir / "rings" / f"{producer.pid}-{producer.pk}.ring"
    w = R.RingWriter(str(path), CAP, producer.pid, 1, producer.key, producer.anchor[0],
                     {"argv": ["app.py"], "pid": producer.pid})
    if start:
        w._head = start
        struct.pack_into("<Q", w._mm, R.OFF_HEAD, start)
        struct.pack_into("<Q", w._mm, R.OFF_TAIL, start)
    return w


def put_raw(w: R.RingWriter, data: bytes) -> tuple[int, int]:
    """Write 8-aligned bytes at the head (wrapping) and publish them, as a producer would."""
    assert len(data) % 8 == 0 and len(data) <= w.capacity
    pos = w._head % w.capacity
    first = min(len(data), w.capacity - pos)
    w._mm[R.HEADER_SIZE + pos:R.HEADER_SIZE + pos + first] = data[:first]
    if first < len(data):
        w._mm[R.HEADER_SIZE:R.HEADER_SIZE + len(data) - first] = data[first:]
    start = w._head
    w._head += len(data)
    struct.pack_into("<Q", w._mm, R.OFF_HEAD, w._head)
    return start, w._head


def put_frame(w: R.RingWriter, f: Frame) -> Frame:
    f.start = w._head
    assert w.write(f.seq, f.payload, f.events)
    f.end = w._head
    return f


# -- consuming ---------------------------------------------------------------------------

@dataclass
class Sidecar:
    """An Ingestor over a fresh store and run directory, drained the way the sidecar polls."""

    root: Path
    store: SQLiteStore = field(init=False)
    ingest: Ingestor = field(init=False)

    def __post_init__(self) -> None:
        self.run_dir = self.root / "runs" / RUN
        (self.run_dir / "rings").mkdir(parents=True, exist_ok=True)
        self.store = SQLiteStore(str(self.root / "flowagent.db"))
        with self.store.transaction():
            self.store.db.execute("INSERT OR IGNORE INTO runs(run_id, started_ns, status) "
                                  "VALUES(?,?,'running')", (RUN, time.time_ns()))
        self.ingest = Ingestor(self.store, RUN, str(self.run_dir))

    def drain(self, max_polls: int = 50_000) -> None:
        """Poll until no ring's read position moves any more (the live sidecar polls every
        20 ms for as long as the run lasts)."""
        still = 0
        last: dict[str, int] = {}
        for _ in range(max_polls):
            self.ingest.poll()
            now = {pk: p.reader.tail for pk, p in self.ingest.procs.items()}
            still = still + 1 if now == last else 0
            last = now
            if still >= 3:
                return
        raise AssertionError("the rings were never drained")

    def sessions(self) -> dict[str, int]:
        """Stored session id → its number of stored calls."""
        return {r[0]: r[1] for r in self.store.db.execute(
            "SELECT session_id, (SELECT COALESCE(SUM(c.calls), 0) FROM session_chunks c "
            "WHERE c.sid = s.sid) "
            "FROM sessions s WHERE run_id=?", (RUN,))}

    def totals(self) -> dict[str, int]:
        return self.ingest.totals()

    def close(self) -> None:
        for p in self.ingest.procs.values():
            p.reader.close()
        self.store.close()


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[Sidecar]:
    s = Sidecar(tmp_path)
    yield s
    s.close()


def _fresh(tmp_factory: pytest.TempPathFactory) -> Sidecar:
    return Sidecar(tmp_factory.mktemp("ring"))


def _expect(s: Sidecar, good: list[Frame], queries: int = 3) -> None:
    want = {sid: queries + 1 for f in good for sid in f.sessions}
    assert s.sessions() == want


# -- one bad frame between good ones -----------------------------------------------------

def _bad_frames(p: Producer, good: Frame) -> dict[str, Callable[[], bytes]]:
    """Ways a frame can go bad, each as the bytes that end up in the ring."""
    def garbled() -> bytes:
        f = p.batch()
        raw = bytearray(frame_bytes(f.seq, f.payload))
        for i in range(20, min(len(raw), 60)):
            raw[i] ^= 0x5A
        return bytes(raw)

    def truncated() -> bytes:
        # The header promises the whole payload; only half of it made it into the ring.
        f = p.batch()
        half = f.payload[:len(f.payload) // 2]
        raw = struct.pack("<IIQ", len(f.payload), zlib.crc32(f.payload), f.seq) + half
        return raw + b"\0" * (-len(raw) % 8)

    def bad_checksum() -> bytes:
        f = p.batch()
        return frame_bytes(f.seq, f.payload, crc=zlib.crc32(f.payload) ^ 1)

    def zero_length() -> bytes:
        return frame_bytes(p.seq + 1, b"", crc=0) + b"\0" * 8

    def oversized_length() -> bytes:
        f = p.batch()
        return frame_bytes(f.seq, f.payload, length=0xFFFFFFF0)

    def junk() -> bytes:
        return bytes((i * 131 + 7) % 256 for i in range(296))

    def undecodable() -> bytes:
        # Framing and checksum are right; the payload is not zstd at all.
        p.seq += 1
        return frame_bytes(p.seq, b"\x00not zstd, not msgpack\xff" * 5)

    def wrong_batch_version() -> bytes:
        f = p.batch(v=VERSION + 1)
        return frame_bytes(f.seq, f.payload)

    def not_a_map() -> bytes:
        p.seq += 1
        return frame_bytes(p.seq, zstandard.ZstdCompressor().compress(msgpack.packb([1, 2])))

    def replayed() -> bytes:
        return frame_bytes(good.seq, good.payload)

    return {f.__name__: f for f in (garbled, truncated, bad_checksum, zero_length,
                                    oversized_length, junk, undecodable, wrong_batch_version,
                                    not_a_map, replayed)}


BAD_KINDS = ["garbled", "truncated", "bad_checksum", "zero_length", "oversized_length", "junk",
             "undecodable", "wrong_batch_version", "not_a_map", "replayed"]


@pytest.mark.parametrize("wrap", [False, True], ids=["straight", "wrapping"])
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_frame_is_skipped_counted_and_later_frames_kept(sidecar: Sidecar, kind: str,
                                                            wrap: bool) -> None:
    p = Producer()
    # "wrapping": the bad frame straddles the end of the data area.
    w = new_ring(sidecar.run_dir, p, start=CAP - 200 if wrap else 0)
    first = put_frame(w, p.batch())
    put_raw(w, _bad_frames(p, first)[kind]())
    after = [put_frame(w, p.batch()) for _ in range(3)]
    sidecar.drain()
    _expect(sidecar, [first, *after])
    t = sidecar.totals()
    if kind == "replayed":
        assert (t["duplicate_frames"], t["corrupt_frames"]) == (1, 0)
    else:
        assert t["corrupt_frames"] == 1 and t["duplicate_frames"] == 0
    assert t["stored_events"] == 4 * 4 * 2


def test_figure_corruption_kinds(tmp_path_factory: pytest.TempPathFactory, figure) -> None:
    """All kinds at once in one ring, for the report."""
    s = _fresh(tmp_path_factory)
    p = Producer()
    w = new_ring(s.run_dir, p)
    good = [put_frame(w, p.batch())]
    bad = _bad_frames(p, good[0])
    for kind in BAD_KINDS:
        put_raw(w, bad[kind]())
        good.append(put_frame(w, p.batch()))
    s.drain()
    _expect(s, good)
    t = s.totals()
    s.close()
    # Each bad frame counted once, as what it is: the replayed one as a duplicate.
    assert (t["corrupt_frames"], t["duplicate_frames"]) == (len(BAD_KINDS) - 1, 1), t
    figure(f"{len(BAD_KINDS)} kinds of bad frame ({', '.join(BAD_KINDS)}), each followed by a "
           f"valid one: {len(good)}/{len(good)} valid frames stored, "
           f"{t['corrupt_frames']} corrupt + {t['duplicate_frames']} replayed frames counted, "
           f"no crash", valid=len(good), corrupt=t["corrupt_frames"],
           replayed=t["duplicate_frames"])


# -- fuzzing -------------------------------------------------------------------------------

OPS = st.lists(st.one_of(
    st.tuples(st.just("valid"), st.integers(0, 3)),
    st.tuples(st.sampled_from([k for k in BAD_KINDS if k != "replayed"]), st.just(0)),
    st.tuples(st.just("replay"), st.integers(0, 50)),
    # (at least a frame header: a producer never publishes less)
    st.tuples(st.just("random"), st.binary(min_size=16, max_size=600)),
), min_size=1, max_size=14)


@FUZZ
@given(ops=OPS, start=st.sampled_from([0, CAP - 8, CAP - 300, CAP // 2 + 4]))
def test_fuzzed_frame_sequences(tmp_path_factory: pytest.TempPathFactory,
                                ops: list[tuple[str, Any]], start: int) -> None:
    s = _fresh(tmp_path_factory)
    try:
        p = Producer()
        w = new_ring(s.run_dir, p, start=start)
        good: list[Frame] = []
        replays = bad = 0
        for op, arg in ops:
            if op == "valid":
                good.append(put_frame(w, p.batch(sessions=arg)))
            elif op == "replay":
                if good:
                    f = good[arg % len(good)]
                    put_raw(w, frame_bytes(f.seq, f.payload))
                    replays += 1
            elif op == "random":
                put_raw(w, arg + b"\0" * (-len(arg) % 8))
                bad += 1
            else:
                put_raw(w, _bad_frames(p, good[0] if good else p.batch())[op]())
                bad += 1
        s.drain()
        _expect(s, good)
        t = s.totals()
        assert t["duplicate_frames"] == replays
        assert t["stored_events"] == sum(f.events for f in good)
        # Adjacent bad frames may be counted as one stretch of garbage.
        assert (t["corrupt_frames"] > 0) == (bad > 0) and t["corrupt_frames"] <= bad
    finally:
        s.close()


@FUZZ
@given(frames=st.integers(1, 12), at=st.integers(0, CAP - 1),
       junk=st.binary(min_size=1, max_size=2048))
def test_random_bytes_over_a_ring_keep_every_untouched_frame(
        tmp_path_factory: pytest.TempPathFactory, frames: int, at: int, junk: bytes) -> None:
    s = _fresh(tmp_path_factory)
    try:
        p = Producer()
        w = new_ring(s.run_dir, p, start=CAP - 1000)
        written = [put_frame(w, p.batch()) for _ in range(frames)]
        lo = w._head - sum(f.end - f.start for f in written)
        # Overwrite [hit, hit + len) of what was written (by monotonic offset, wrapping).
        hit = lo + at % max(1, w._head - lo)
        n = min(len(junk), w._head - hit)
        for i in range(n):
            w._mm[R.HEADER_SIZE + (hit + i) % CAP] = junk[i]
        s.drain()
        stored = s.sessions()
        untouched = [f for f in written if f.end <= hit or f.start >= hit + n]
        for f in untouched:
            for sid in f.sessions:
                assert stored.get(sid) == 4, (sid, f.start, f.end, hit, n)
        assert all(c == 4 for c in stored.values())  # nothing half-stored, nothing twice
    finally:
        s.close()


@FUZZ
@given(at=st.integers(16, R.OFF_INFO - 1), junk=st.binary(min_size=1, max_size=240))
def test_random_bytes_in_the_ring_header_never_crash(
        tmp_path_factory: pytest.TempPathFactory, at: int, junk: bytes) -> None:
    s = _fresh(tmp_path_factory)
    try:
        p = Producer()
        w = new_ring(s.run_dir, p)
        written = [put_frame(w, p.batch()) for _ in range(4)]
        # Counters, capacity, pid, key, control: everything up to the info block (a non-object
        # info block is test_ring_info_that_is_not_an_object).
        chunk = junk[:R.OFF_INFO - at]
        w._mm[at:at + len(chunk)] = chunk
        for off in (R.OFF_CREATED, R.OFF_HEAD, R.OFF_TAIL):
            w._mm[off + 7] &= 0x7F  # >= 2**63: test_header_counter_beyond_sqlite
        s.drain(max_polls=20_000)
        stored = s.sessions()
        assert set(stored) <= {sid for f in written for sid in f.sessions}
        assert all(c == 4 for c in stored.values())
    finally:
        s.close()


@pytest.mark.parametrize("offset", [
    R.OFF_DROPPED_EVENTS, R.OFF_PRODUCED_EVENTS, R.OFF_CLOSED, R.OFF_LAST_SEQ,
    R.OFF_CREATED, R.OFF_HEAD, R.OFF_TAIL],
    ids=["dropped-events", "produced-events", "closed", "last-seq", "created", "head", "tail"])
def test_header_counter_beyond_sqlite(sidecar: Sidecar, offset: int) -> None:
    p = Producer()
    w = new_ring(sidecar.run_dir, p)
    good = [put_frame(w, p.batch())]
    w._mm[offset + 7] = 0x80
    sidecar.drain()
    _expect(sidecar, good)


# -- foreign ring files --------------------------------------------------------------------

def _foreign_rings(rings: Path) -> None:
    good = (R.HEADER_SIZE + CAP)
    (rings / "1-000000000001.ring").write_bytes(b"NOTARING" + b"\0" * (good - 8))
    wrong_version = bytearray(R.MAGIC + struct.pack("<II", R.VERSION + 1, R.HEADER_SIZE))
    (rings / "2-000000000002.ring").write_bytes(bytes(wrong_version) + b"\0" * (good - 16))
    (rings / "3-000000000003.ring").write_bytes(b"")
    (rings / "4-000000000004.ring").write_bytes(R.MAGIC + b"\0" * 100)  # truncated file
    right = bytearray(R.MAGIC + struct.pack("<IIQ", R.VERSION, R.HEADER_SIZE, CAP * 4))
    (rings / "5-000000000005.ring").write_bytes(bytes(right) + b"\0" * (good - len(right)))
    (rings / "6-000000000006.ring").mkdir()
    (rings / "7-000000000007.ring.tmp7").write_bytes(b"half-made")


def test_foreign_ring_files_are_skipped(sidecar: Sidecar, figure) -> None:
    p = Producer()
    w = new_ring(sidecar.run_dir, p)
    good = [put_frame(w, p.batch()) for _ in range(3)]
    _foreign_rings(sidecar.run_dir / "rings")
    sidecar.drain()
    _expect(sidecar, good)
    assert list(sidecar.ingest.procs) == [p.pk]
    figure("foreign ring files (wrong magic, wrong version, empty, truncated, capacity "
           "mismatch, a directory, a half-made .tmp): all skipped, the valid ring next to "
           "them fully stored, no crash")


def test_foreign_ring_files_are_counted(sidecar: Sidecar) -> None:
    # (found by this suite: they were skipped silently; fixed since)
    p = Producer()
    put_frame(new_ring(sidecar.run_dir, p), p.batch())
    _foreign_rings(sidecar.run_dir / "rings")
    sidecar.drain()
    t = sidecar.totals()
    assert max(t.get("foreign_rings", 0), t["corrupt_frames"]) == 6  # the 6 *.ring entries


# -- structurally malformed batches (right checksum, right version) ------------------------

MALFORMED: dict[str, dict[str, Any]] = {
    "a session start with one field": {"starts": [[1]]},
    "a function definition with two fields": {"defs": [[1, "m"]]},
    "a string definition without its value": {"strings": [[1]]},
    "a thread without a name": {"threads": [[7]]},
    "definitions that are not a list": {"defs": 5},
    "an anchor of strings": {"anchor": ["a", "b"]},
    "agent_errors as text": {"agent_errors": "many"},
    "a session start time as text": {"starts": [[1, 1, "t", 7]]},
}


# (found by this suite: each of these crashed the sidecar, and `sidecar --resume` crashed
# again on the same frame; fixed since)
@pytest.mark.parametrize("override", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_batch_is_skipped_and_counted(sidecar: Sidecar,
                                                override: dict[str, Any]) -> None:
    p = Producer()
    w = new_ring(sidecar.run_dir, p)
    first = put_frame(w, p.batch())
    put_frame(w, p.batch(**override))
    last = put_frame(w, p.batch())
    sidecar.drain()
    _expect(sidecar, [first, last])
    assert sidecar.totals()["corrupt_frames"] == 1


# (found by this suite: Decoder.decode() let a TypeError escape and the sidecar crashed;
# fixed since)
@pytest.mark.parametrize("value", ["x", None], ids=["text", "nil"])
def test_call_columns_of_the_wrong_type(sidecar: Sidecar, value: Any) -> None:
    p = Producer()
    w = new_ring(sidecar.run_dir, p)
    first = put_frame(w, p.batch())
    p.seq += 1
    batch = {"v": VERSION, "calls": {f: [value] for f in CALL_FIELDS}}
    put_raw(w, frame_bytes(p.seq, zstandard.ZstdCompressor().compress(msgpack.packb(batch))))
    last = put_frame(w, p.batch())
    sidecar.drain()
    _expect(sidecar, [first, last])


def test_ring_info_that_is_not_an_object(sidecar: Sidecar) -> None:
    p = Producer()
    w = new_ring(sidecar.run_dir, p)
    struct.pack_into("<I", w._mm, R.OFF_INFO, 1)
    w._mm[R.OFF_INFO + 4:R.OFF_INFO + 5] = b"5"
    good = [put_frame(w, p.batch())]
    sidecar.drain()
    _expect(sidecar, good)


# -- end to end: flowagent sidecar --resume ------------------------------------------------

def _recorded_run(tmp_path: Path) -> tuple[Path, str]:
    rec = record("def f():\n    return 1\n\nf()\n", tmp_path)
    run_id = rec.run_info()["run_id"]
    rec.close()
    return rec.data_dir, run_id


def _resume(data: Path, run_id: str, cwd: Path) -> dict[str, Any]:
    proc = run_cli(["sidecar", "--resume", run_id, "--data-dir", str(data)], cwd)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode().splitlines()[-1])


def _stored_sessions(data: Path, pk: str) -> dict[str, int]:
    store = SQLiteStore(str(data / "flowagent.db"), readonly=True)  # its sessions view
    try:
        return {r[0]: r[1] for r in store.db.execute(
            "SELECT session_id, (SELECT COALESCE(SUM(c.calls), 0) FROM session_chunks c "
            "WHERE c.sid = s.sid) "
            "FROM sessions s WHERE pk=?", (pk,))}
    finally:
        store.close()


def test_resume_skips_replays_and_foreign_rings(tmp_path: Path, figure) -> None:
    data, run_id = _recorded_run(tmp_path)
    rings = data / "runs" / run_id / "rings"
    p = Producer()
    w = new_ring(rings.parent, p)
    good = [put_frame(w, p.batch()) for _ in range(2)]
    put_raw(w, frame_bytes(good[0].seq, good[0].payload))  # replayed
    good.append(put_frame(w, p.batch()))
    w.close()
    _foreign_rings(rings)
    summary = _resume(data, run_id, tmp_path)
    assert _stored_sessions(data, p.pk) == {sid: 4 for f in good for sid in f.sessions}
    assert summary["duplicate_frames"] == 1
    figure(f"`flowagent sidecar --resume` over a ring with a replayed frame next to 7 foreign "
           f"ring files: {len(good)}/{len(good)} frames stored once, 1 replay counted")


def test_resume_keeps_the_frames_after_a_bad_one(tmp_path: Path) -> None:
    data, run_id = _recorded_run(tmp_path)
    p = Producer()
    w = new_ring(data / "runs" / run_id, p)
    good = [put_frame(w, p.batch())]
    put_raw(w, _bad_frames(p, good[0])["garbled"]())
    good += [put_frame(w, p.batch()) for _ in range(2)]
    w.close()
    summary = _resume(data, run_id, tmp_path)
    assert summary["corrupt_frames"] == 1
    assert _stored_sessions(data, p.pk) == {sid: 4 for f in good for sid in f.sessions}
