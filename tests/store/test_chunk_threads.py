"""Stored chunks are read by several threads at once (the viewer serves each request in a
thread: a session page asks for its tree, timeline and sequence together): every thread
decodes every chunk right. A decompressor shared by the threads once handed one of them
garbage, an HTTP 500 on ``/api/sessions/<id>/tree`` while a run was being recorded."""

from __future__ import annotations

import threading

from flowagent.store import chunks as C


def _rows(k: int, n: int) -> list[tuple[int, ...]]:
    # (cid, par, ses, fid, pfid, ins, out, res, exc, t0, t1, thr, cpu), varied per chunk
    return [(i + 1, i, k, (i * 7 + k) % 50, (i * 3) % 50, i % 11, (i * k) % 13, i % 3, 0,
             1_000_000 * k + i * 10, 1_000_000 * k + i * 10 + 5, 140_000 + k, i % 5)
            for i in range(n)]


def test_threads_decode_chunks_at_once() -> None:
    expected = {k: _rows(k, 20_000 + 997 * k) for k in range(6)}
    data = {k: C.encode(rows, (k, 2 * k)) for k, rows in expected.items()}
    wrong: list[str] = []
    start = threading.Barrier(6)

    def read(me: int) -> None:
        start.wait()
        for r in range(12):
            k = (me + r) % len(data)
            try:
                rows, anchor = C.decode(data[k])
            except ValueError as exc:
                wrong.append(f"chunk {k}: {exc}")
                continue
            if [tuple(x) for x in rows] != expected[k] or anchor != (k, 2 * k):
                wrong.append(f"chunk {k}: other rows")

    threads = [threading.Thread(target=read, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert wrong == []
