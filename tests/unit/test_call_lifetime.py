"""How the C twin frees the frames of calls: a closed call whose caller lives on goes straight
back to the free list; one whose going frees its callers in turn (a long chain of open calls
dropped at once) goes through the interpreter's trashcan, so no chain recurses the C stack."""

import subprocess
import sys
import textwrap

import pytest

from flowagent.agent import recorder

pytestmark = pytest.mark.skipif(not recorder.ACCELERATED, reason="the C accelerator is not built")

CHAIN = textwrap.dedent('''
    import gc
    from flowagent.agent import recorder
    recorder.S.on = True
    first = recorder.open_call(1, ())
    for _ in range(200_000):            # each call opened inside the one before
        recorder.open_call(1, ())
    del first
    recorder._set(None)                 # the innermost goes, and with it every caller
    gc.collect()
    assert recorder._get() is None
    # the chain is gone: a new call opens a new session, as at the start
    again = recorder.open_call(1, ())
    print("freed", again[recorder.PARENT] is None)
''')


def test_a_long_chain_of_open_calls_is_freed_without_recursion() -> None:
    out = subprocess.run([sys.executable, "-c", CHAIN], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["freed", "True"]


def test_closed_calls_reuse_their_frames() -> None:
    """A plain call's frame, closed with its caller still open, is reused by the next call
    (its fields all start empty again)."""
    was_on, before = recorder.S.on, recorder._get()
    recorder.S.on = True
    try:
        outer = recorder.open_call(1, ())
        assert outer is not None
        inner = recorder.open_call(2, ())
        assert inner[recorder.PARENT] is outer and inner[recorder.OUTER] is outer
        recorder.close_call(inner, None)
        address = id(inner)
        del inner
        again = recorder.open_call(3, ())
        assert id(again) == address                     # the same object, from the free list
        assert again[recorder.PARENT] is outer and again[recorder.FID] == 3
        assert again[recorder.RV] is None and again[recorder.YIELDED] == 0
        recorder.close_call(again, None)
        recorder.close_call(outer, None)
    finally:
        recorder.S.on = was_on
        recorder._set(before)
        recorder.take_calls()
