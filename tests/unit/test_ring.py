"""Ring framing: wrap-around, full ring drops, checksums, resynchronisation, consumer commit."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings, strategies as st

from flowagent.protocol import ring as R


def make(tmp_path, capacity=64 * 1024):
    path = str(tmp_path / "1-abc.ring")
    w = R.RingWriter(path, capacity, pid=1, ppid=0, key=0xABC, created_ns=5, info={"argv": ["x"]})
    return w, R.RingReader(path)


def drain(reader):
    out = []
    end = None
    for seq, payload, end in reader.read():
        out.append((seq, payload))
    if end is not None:
        reader.commit(end)
    return out


def test_header_round_trip(tmp_path):
    w, r = make(tmp_path)
    assert (r.pid, r.key, r.created_ns, r.capacity) == (1, 0xABC, 5, 64 * 1024)
    assert r.info() == {"argv": ["x"]}
    assert not os.path.exists(str(tmp_path / "1-abc.ring.tmp1"))


def test_frames_in_order_and_wraparound(tmp_path):
    w, r = make(tmp_path)
    sent = []
    for i in range(1, 400):
        payload = bytes([i % 251]) * (i * 7 % 900 + 1)
        assert w.write(i, payload, 3)
        sent.append((i, payload))
        if i % 10 == 0:
            assert drain(r) == sent
            sent = []
    assert drain(r) == sent
    c = r.counters()
    assert c["produced_batches"] == 399 and c["produced_events"] == 399 * 3
    assert c["dropped_batches"] == 0


def test_full_ring_drops_and_counts_never_blocks(tmp_path):
    w, r = make(tmp_path)
    big = b"x" * 20000
    results = [w.write(i, big, 10) for i in range(1, 6)]
    assert results == [True, True, True, False, False]
    c = r.counters()
    assert (c["dropped_batches"], c["dropped_events"]) == (2, 20)
    assert [s for s, _ in drain(r)] == [1, 2, 3]
    assert w.write(6, big, 10)  # space is released by the consumer's commit


def test_uncommitted_frames_are_read_again(tmp_path):
    w, r = make(tmp_path)
    w.write(1, b"a", 1)
    assert [s for s, _, _ in r.read()] == [1]
    # no commit: a restarted consumer sees the frame again
    r2 = R.RingReader(r.path)
    assert [s for s, _ in drain(r2)] == [1]
    assert [s for s, _ in drain(R.RingReader(r.path))] == []


def test_garbage_frame_is_skipped_and_later_frames_kept(tmp_path):
    w, r = make(tmp_path)
    w.write(1, b"first", 1)
    w.write(2, b"second-frame", 1)
    w.write(3, b"third", 1)
    # corrupt the second frame's payload (after the 16-byte header of frame 2)
    off = R.HEADER_SIZE + 24 + 16 + 2
    w._mm[off:off + 4] = b"\xff\xff\xff\xff"
    got = []
    for _ in range(40):  # first failure is retried once (maybe torn), then resynced
        got += drain(r)
    assert [s for s, _ in got] == [1, 3]
    assert r.corrupt_frames >= 1


def test_wrong_magic_and_short_files_rejected(tmp_path):
    p = tmp_path / "bad.ring"
    p.write_bytes(b"NOTARING" + b"\0" * (R.HEADER_SIZE + 64 * 1024))
    with pytest.raises(R.RingError, match="magic"):
        R.RingReader(str(p))
    p.write_bytes(b"short")
    with pytest.raises(R.RingError, match="too small"):
        R.RingReader(str(p))


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=R.HEADER_SIZE + 64 * 1024 - 1), st.integers(0, 64 * 1024))
def test_random_bytes_in_data_area_never_crash(tmp_path_factory, junk, at):
    tmp = tmp_path_factory.mktemp("r")
    w, r = make(tmp)
    w.write(1, b"ok", 1)
    data_len = 64 * 1024
    start = R.HEADER_SIZE + at % data_len
    chunk = junk[: R.HEADER_SIZE + data_len - start]
    w._mm[start:start + len(chunk)] = chunk
    for _ in range(5):
        for seq, payload in drain(r):
            assert isinstance(seq, int) and isinstance(payload, bytes)
