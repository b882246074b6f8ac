"""The record buffer the flusher emptied is used again by the recording threads (its pages
are mapped in already), in both twins: every record comes out once and in order whatever
the backlog's size, and a forked child never writes into the parent's kept buffer (on Linux
a mapping the child does not have).
"""

from __future__ import annotations

import os

import pytest

from helpers import run_on_twin

TWINS = ["c", "pure"]


ROUNDS = """
    import json
    from flowagent.agent import recorder
    from flowagent.protocol import wire
    fid = recorder.register_function("m", "f", "m.py", 1, ("a",), "function")
    recorder.S.on = True
    recorder.take_calls()
    LIMIT = 1000
    out = []
    # Backlogs below, at and above the batch limit, growing past what an earlier buffer
    # held and shrinking again: each round's buffer starts from the one emptied before.
    for backlog in (3000, 999, 1000, 1001, 2500, 9000, 40, 0, 17000, 5000, 1):
        for i in range(backlog):
            recorder.close_call(recorder.open_call(fid, (i,)), None)
        rows = []
        while True:
            n, data, threads = recorder.take_calls(LIMIT)
            assert n <= LIMIT
            rows.extend(wire._records(n, data))
            if n < LIMIT:
                break
        cids = [r[0] for r in rows]
        out.append([backlog, len(rows), cids == sorted(cids),
                    len(set(cids)) == len(cids), cids[-1] - cids[0] + 1 if cids else 0])
    print(json.dumps([out, recorder.S.dropped, recorder.take_calls()[0]]))
"""


@pytest.mark.parametrize("twin", TWINS)
def test_each_round_takes_every_record_once_in_order(twin: str) -> None:
    rounds, dropped, left = run_on_twin(twin, ROUNDS)
    assert dropped == 0 and left == 0
    for backlog, taken, ordered, unique, span in rounds:
        assert taken == backlog and ordered and unique
        assert span == backlog  # consecutive call ids: none skipped


FORK = """
    import json, os
    from flowagent.agent import recorder
    from flowagent.protocol import wire
    fid = recorder.register_function("m", "f", "m.py", 1, ("a",), "function")
    recorder.S.on = True
    recorder.take_calls()
    # A backlog larger than a batch, taken whole and emptied: its buffer is kept.
    for i in range(5000):
        recorder.close_call(recorder.open_call(fid, (i,)), None)
    while recorder.take_calls(1000)[0] == 1000:
        pass
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        recorder.reset_after_fork()
        for i in range(3000):
            recorder.close_call(recorder.open_call(fid, (i,)), None)
        n = 0
        while True:
            got = recorder.take_calls(1000)[0]
            n += got
            if got < 1000:
                break
        os.write(w, json.dumps(n).encode())
        os._exit(0)
    os.close(w)
    child_took = json.loads(os.read(r, 100) or b"null")
    _, status = os.waitpid(pid, 0)
    for i in range(2000):
        recorder.close_call(recorder.open_call(fid, (i,)), None)
    rows = []
    while True:
        n, data, _ = recorder.take_calls(1000)
        rows.extend(wire._records(n, data))
        if n < 1000:
            break
    print(json.dumps([os.waitstatus_to_exitcode(status), child_took, len(rows)]))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
@pytest.mark.parametrize("twin", TWINS)
def test_a_forked_child_records_into_a_buffer_of_its_own(twin: str) -> None:
    status, child_took, parent_took = run_on_twin(twin, FORK)
    assert status == 0
    assert child_took == 3000
    assert parent_took == 2000
