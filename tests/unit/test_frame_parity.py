"""Both twins' frames read and write alike.

The pure twin's open call is a list; the C twin's is ``_speedups.Call``, a struct with int64
fields that Python code indexes as it indexes the list (recorder.py's layout). Backends,
generators, request roots, integrations and lineage read and write frames only by index, so
every index must mean the same thing in both: this probe opens calls in each twin (in a fresh
interpreter: the recorder chooses its twin at import), writes what those callers write, and
prints what it reads back; the two outputs must be equal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import run_twin_probe

PROBE = r'''
import gc, json, sys, threading
from flowagent.agent import recorder as r

out = {"accelerated": r.ACCELERATED}
r.S.on = True
fid = r.register_function("probe", "f", "probe.py", 1, ("a",), "function")
gfid = r.register_function("probe", "g", "probe.py", 2, (), "function")
outer = r.open_call(fid, (1,))
inner = r.open_call(gfid, ())

def kinds(f):
    return ["frame" if r.is_frame(f[i]) else type(f[i]).__name__ for i in range(r.CPU + 1)]

out["is_frame"] = [r.is_frame(outer), r.is_frame(inner), r.is_frame(None), r.is_frame(3)]
out["kinds"] = kinds(inner)
out["links"] = {
    "parent": inner[r.PARENT] is outer, "outer": inner[r.OUTER] is outer,
    "root parent": outer[r.PARENT] is None, "root outer": outer[r.OUTER] is None,
    "gen": inner[r.GEN] is r.S.gen, "current": r._get() is inner,
    "session": inner[r.SES] == outer[r.SES] == outer[r.CID],
    "ids": inner[r.CID] == outer[r.CID] + 1, "fid": [outer[r.FID] == fid, inner[r.FID] == gfid],
    "thread": inner[r.THR] == threading.get_ident(), "t0": inner[r.T0] >= outer[r.T0] > 0,
}
out["fresh"] = {k: inner[i] for k, i in (("yielded", r.YIELDED), ("rv", r.RV), ("cpu", r.CPU),
                                          ("exc", r.EXC))}
out["shaped"] = [bool(outer[r.FLAGS] & 8), outer[r.INS] > 0]

# What backends and integrations write: a return value, a flag, yielded shapes, a new OUTER,
# a renamed function; then read back.
inner[r.RV] = {"a": 1}
inner[r.FLAGS] |= 2
inner[r.YIELDED] = ("Iterator", ["int"])
inner[r.FID] = fid
inner[r.OUTER] = None
out["written"] = [inner[r.RV], inner[r.FLAGS] & 2, inner[r.YIELDED], inner[r.FID] == fid,
                  inner[r.OUTER]]
inner[r.OUTER] = outer
inner[r.FID] = gfid
inner[r.YIELDED] = 0
out["negative index"] = inner[-len(inner) + r.SES] == inner[r.SES]
try:
    inner[len(inner)]
    out["past the end"] = "read"
except IndexError:
    out["past the end"] = "IndexError"

# A generator's frame is a copy of the opened one (a list in both twins).
copy = list(inner)
out["copy"] = [copy[:r.CPU + 1] == [inner[i] for i in range(r.CPU + 1)], type(copy).__name__]

r.close_call(inner, ValueError)
out["after close"] = {"current": r._get() is outer, "rv": inner[r.RV],
                      "parent child error": bool(outer[r.FLAGS] & 2)}
r.close_call(outer, None)
out["closed"] = r._get() is None
n, data, threads = r.take_calls()
out["records"] = n
# Nothing a closed frame held stays alive through it (the C twin reuses freed frames).
del inner, outer, copy
gc.collect()
out["stray frames"] = sum(1 for o in gc.get_objects()
                          if isinstance(o, r.FRAME_TYPES) and len(o) >= 14 and o[r.GEN] is r.S.gen)
print(json.dumps(out))
'''


def run_probe(pure: bool) -> dict:
    return run_twin_probe(PROBE, pure)


def test_both_twins_frames_read_and_write_alike() -> None:
    pure = run_probe(pure=True)
    accelerated = run_probe(pure=False)
    if not accelerated.pop("accelerated"):
        pytest.skip("the C extension is not built here")
    assert not pure.pop("accelerated")
    assert accelerated == pure
    assert pure["kinds"] == ["int", "frame", "int", "int", "int", "int", "int", "frame", "object",
                             "int", "int", "int", "NoneType", "int"]
    assert all(pure["links"].values()), pure["links"]
    assert pure["fresh"] == {"yielded": 0, "rv": None, "cpu": 0, "exc": 0}
    assert pure["records"] == 2 and pure["closed"] and pure["stray frames"] == 0


def test_a_c_frame_takes_only_ints_in_its_int_fields() -> None:
    try:
        from flowagent.agent import _speedups
    except ImportError:
        pytest.skip("the C extension is not built here")
    from flowagent.agent import recorder
    was_on = _speedups.S.on
    _speedups.S.on = True
    try:
        fid = recorder.register_function("probe", "ints", "probe.py", 1, (), "function")
        frame = _speedups.open_call(fid, ())
        assert isinstance(frame, _speedups.Call) and len(frame) == recorder.CPU + 3
        with pytest.raises(TypeError):
            frame[recorder.FLAGS] = "not a number"
        with pytest.raises(TypeError):
            del frame[recorder.RV]
        with pytest.raises(IndexError):
            frame[len(frame)] = 0
        frame[recorder.T0] = 1 << 62
        assert frame[recorder.T0] == 1 << 62
        frame[recorder.FLAGS] |= 4  # sampled out: closing it records nothing
        _speedups.close_call(frame, None)
    finally:
        _speedups.S.on = was_on
        _speedups.set_current(None)
