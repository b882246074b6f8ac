"""The recorder's buffer of finished calls, in both twins: threads append while the flusher
takes, a full buffer drops and counts, and a fork copies none of it.

The pure twin's buffer (``flowagent/agent/pending.py``) is two mappings the flusher swaps;
every step that must not be split is one C call under the GIL. These probes run real
threads with the interpreter's switch interval at its minimum, so that threads change
between any two bytecodes the interpreter lets them change at.
"""

from __future__ import annotations

import sys

import pytest

from helpers import run_on_twin

TWINS = ["c", "pure"]


CONCURRENT = """
    import json, sys, threading
    from flowagent.agent import recorder
    from flowagent.protocol import wire
    sys.setswitchinterval(1e-6)
    fid = recorder.register_function("m", "f", "m.py", 1, ("a",), "function")
    recorder.S.on = True
    recorder.take_calls()
    THREADS, CALLS = 4, 30000
    done = threading.Event()
    rows, sizes = [], []

    def record():
        for i in range(CALLS):
            recorder.close_call(recorder.open_call(fid, (i,)), None)

    def flusher():
        while True:
            finished = done.is_set()  # read before taking: what was appended before is in
            for limit in (1, 700, 0, 5000):
                n, data, threads = recorder.take_calls(limit)
                sizes.append((n, limit))
                got = wire._records(n, data)
                assert threads == {r[11] for r in got}
                rows.extend(got)
            if finished:
                return

    f = threading.Thread(target=flusher)
    f.start()
    ts = [threading.Thread(target=record) for _ in range(THREADS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    done.set()
    f.join()
    rows.extend(wire._records(*recorder.take_calls()[:2]))
    cids = [r[0] for r in rows]
    per_thread = {}
    for r in rows:
        per_thread.setdefault(r[11], []).append(r[0])
    print(json.dumps([len(rows), len(set(cids)), recorder.S.dropped,
                      sorted(len(v) for v in per_thread.values()),
                      all(v == sorted(v) for v in per_thread.values()),
                      all(n <= limit for n, limit in sizes if limit)]))
"""


@pytest.mark.parametrize("twin", TWINS)
def test_threads_append_while_the_flusher_takes(twin: str) -> None:
    # (records taken, distinct call ids, dropped, records per thread, each thread's in
    #  order, batches within their limit)
    assert run_on_twin(twin, CONCURRENT, timeout=300) == [
        120000, 120000, 0, [30000] * 4, True, True]


FULL_BUFFER = """
    import json
    from flowagent.agent import recorder
    from flowagent.protocol import wire
    fid = recorder.register_function("m", "f", "m.py", 1, ("a",), "function")
    recorder.S.on = True
    recorder.take_calls()
    recorder.S.max_buf = 5000

    def record(k):
        for i in range(k):
            recorder.close_call(recorder.open_call(fid, (i,)), None)

    out = []
    record(12000)                           # 7000 past the limit
    out.append([recorder.take_calls()[0], recorder.S.dropped])
    record(3000)
    out.append([recorder.take_calls()[0], recorder.S.dropped])
    record(5000)                            # full, then a batch is taken out of it
    n, data, _ = recorder.take_calls(1000)
    ids = [r[0] for r in wire._records(n, data)]
    record(5000)                            # the program records on: room for all of them
    while n:
        n, data, _ = recorder.take_calls(1000)
        ids += [r[0] for r in wire._records(n, data)]
    out.append([len(ids), len(set(ids)), ids == sorted(ids), recorder.S.dropped])
    print(json.dumps(out))
"""


@pytest.mark.parametrize("twin", TWINS)
def test_a_full_buffer_drops_and_counts(twin: str) -> None:
    # (taken, dropped so far) ..., then (taken, distinct, in order, dropped so far)
    assert run_on_twin(twin, FULL_BUFFER) == [[5000, 7000], [3000, 7000], [10000, 10000, True, 7000]]


FORKED = """
    import json, os
    from flowagent.agent import pending, recorder
    from flowagent.protocol import wire
    fid = recorder.register_function("m", "f", "m.py", 1, ("a",), "function")
    recorder.S.on = True
    recorder.take_calls()

    def record(k):
        for i in range(k):
            recorder.close_call(recorder.open_call(fid, (i,)), None)

    record(3000)
    n, data, _ = recorder.take_calls(1000)  # a backlog in both mappings at the fork
    record(500)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        # No at-fork hook of the agent here: the child sees the mappings as the kernel left
        # them, and records into them before any reset without harm.
        seen = [bytes(m[:pending.REC_BYTES]) == bytes(pending.REC_BYTES)
                for m in (recorder.S.buf, recorder._taker.front)]
        record(10)
        recorder.reset_after_fork()
        empty = recorder.take_calls()[0]
        record(7)
        os.write(w, json.dumps([seen, empty, recorder.take_calls()[0]]).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = json.loads(os.read(r, 1000))
    ids = [r[0] for r in wire._records(n, data)]
    while n:
        n, data, _ = recorder.take_calls(1000)
        ids += [r[0] for r in wire._records(n, data)]
    print(json.dumps([child, len(ids), ids == sorted(ids), len(set(ids))]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_WIPEONFORK is Linux's")
def test_a_fork_copies_none_of_the_pure_buffer() -> None:
    # The child's copies of both mappings are zeroed by the kernel (nothing was copied); it
    # starts empty after its reset and records on; the parent keeps every pending record.
    assert run_on_twin("pure", FORKED) == [[[True, True], 0, 7], 3500, True, 3500]
