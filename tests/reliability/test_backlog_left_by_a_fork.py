"""A flush that stops part-way through a backlog leaves nothing behind for good.

On Python 3.12+ a single-threaded program has the flusher stopped for each ``os.fork()``:
it ends after the batch it is encoding, and the rest of the backlog waits for the next
flush while the program records into a fresh buffer. The flusher reads a batch of fewer
than ``limit`` calls as "the buffer is drained", so ``take_calls(limit)`` must only return
fewer than ``limit`` calls when nothing at all is left, in both twins: the C twin once
returned the end of the old backlog alone, and the final flush at exit then stopped there,
losing every call made since (the main session was stored as never ended, nothing counted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from flowagent.agent import recorder

PROBE = textwrap.dedent("""
    import json
    from flowagent.agent import recorder
    from flowagent.protocol import wire
    fid = recorder.register_function("m", "f", "m.py", 1, ("a",), "function")
    recorder.S.on = True
    recorder.take_calls()

    def record(k):
        for i in range(k):
            recorder.close_call(recorder.open_call(fid, (i,)), None)

    out = []
    # (backlog, limit, calls recorded after the first batch was taken)
    for backlog, limit, later in ((23, 5, 4), (23, 5, 40), (11, 10, 3), (20, 5, 1),
                                  (7, 5, 9), (40000, 16384, 30000)):
        record(backlog)
        n, data, _ = recorder.take_calls(limit)  # the batch encoded when the fork came
        ids = [r[0] for r in wire._records(n, data)]
        record(later)  # the program records on, the backlog's end still buffered
        sizes = [n]
        while n == limit:  # the flusher's loop: a short batch means "drained"
            n, data, _ = recorder.take_calls(limit)
            sizes.append(n)
            ids += [r[0] for r in wire._records(n, data)]
        left = recorder.take_calls()[0]
        out.append([len(ids), left, max(sizes) <= limit, ids == sorted(ids),
                    len(set(ids)) == len(ids)])
    print(json.dumps(out))
""")


@pytest.mark.parametrize("twin", ["c", "pure"])
def test_a_short_batch_means_nothing_is_left(twin: str) -> None:
    if twin == "c" and not recorder.ACCELERATED:
        pytest.skip("the C accelerator is not built")
    env = dict(os.environ, FLOWAGENT_PURE="1" if twin == "pure" else "0")
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    # (calls taken by the loop, calls still buffered after it, batches within the limit,
    #  in order, none twice)
    assert got == [
        [27, 0, True, True, True],
        [63, 0, True, True, True],
        [14, 0, True, True, True],
        [21, 0, True, True, True],
        [16, 0, True, True, True],
        [70000, 0, True, True, True],
    ], got
