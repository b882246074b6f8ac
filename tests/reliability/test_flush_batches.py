"""The flusher takes the buffer in batches of at most ``BATCH_CALLS`` calls, oldest first, in
both twins: a large backlog (threads recording while the flusher waits for the GIL) never
becomes one huge batch, and no call is lost, duplicated or reordered between batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from flowagent.agent import recorder

PROBE = textwrap.dedent("""
    import json, sys
    from flowagent.agent import recorder
    from flowagent.protocol import wire
    fid = recorder.register_function("m", "f", "m.py", 1, ("a",), "function")
    recorder.S.on = True
    recorder.take_calls()
    out = []
    for backlog, limit, extra in ((0, 5, 0), (3, 5, 0), (5, 5, 0), (23, 5, 4), (40, 0, 0)):
        for i in range(backlog):
            recorder.close_call(recorder.open_call(fid, (i,)), None)
        sizes, ids = [], []
        while True:
            n, data, threads = recorder.take_calls(limit)
            if extra:  # calls recorded between two batches come after the backlog
                for i in range(extra):
                    recorder.close_call(recorder.open_call(fid, (i,)), None)
                extra = 0
            sizes.append(n)
            ids += [r[0] for r in wire._records(n, data)]
            if n == 0:
                break
        out.append([max(sizes), len(ids), ids == sorted(ids), len(set(ids)) == len(ids)])
    print(json.dumps(out))
""")


@pytest.mark.parametrize("twin", ["c", "pure"])
def test_take_calls_in_batches(twin: str) -> None:
    if twin == "c" and not recorder.ACCELERATED:
        pytest.skip("the C accelerator is not built")
    env = dict(os.environ, FLOWAGENT_PURE="1" if twin == "pure" else "0")
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    # (largest batch, calls taken, in order, none twice) until the buffer is empty
    assert got == [
        [0, 0, True, True],
        [3, 3, True, True],
        [5, 5, True, True],
        [5, 27, True, True],     # 23, and 4 recorded between two batches: after them
        [40, 40, True, True],    # limit 0: everything at once
    ], got
