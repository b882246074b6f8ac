"""Synthetic roots: their function ids and fixed output shapes, on both recorder twins.

A caller that keeps a root's function id passes it (``enter_root(fid=...)``) and the root
registers nothing; one that does not gets it registered. A root's fixed output shape (a
request's ``HTTP 200``) is turned into its shape id through a bounded cache on the C side,
emptied when the hooks (and so the intern table they use) change. These probes close roots
over more distinct shapes than the cache holds, on the error path too, and after new hooks,
and read back the records' functions and shapes: they must be each root's own.
"""

from __future__ import annotations

import pytest

from helpers import run_on_twin

PROBE = r'''
import json
from flowagent.agent import recorder as r
from flowagent.protocol import wire

r.S.on = True
r.S.user_functions = True


def roots(shapes, exc=None, **kw):
    for shape in shapes:
        frame = r.enter_root("root", **kw)
        r.set_output_shape(frame, shape)
        r.close_call(frame, exc)
    n, data, _ = r.take_calls()
    return [[list(r._functions[row["fid"]][:2]), r._functions[row["fid"]][5],
             r._strings[row["out"]] if row["out"] else None, row["res"]]
            for row in (dict(zip(wire.CALL_FIELDS, rec)) for rec in wire._records(n, data))]


out = {}
# More distinct shapes than the C cache holds, each closed three times (hits, misses, and
# misses after the cache was emptied).
out["many"] = roots([f"HTTP {i}" for i in range(300)] * 3, module="<m>")
out["failed"] = roots(["HTTP 503", "HTTP 200"] * 2, exc=ValueError, module="<m>")
before = len(r._functions)
given = r.register_function("<given>", "kept", "", 0, (), "request")
out["given"] = roots(["HTTP 200"] * 2, fid=given)
out["registered"] = len(r._functions) - before
out["defined"] = [d[1:3] for d in r.take_definitions()[0]]
# New hooks intern into other ids: no id cached for the old ones may be used.
r._yield_sid = lambda y: r.intern("other " + y)
if r.ACCELERATED:
    r._configure(r._speedups)
out["rehooked"] = roots(["HTTP 200", "HTTP 1"] * 2, module="<m>")
print(json.dumps(out))
'''


@pytest.mark.parametrize("twin", ["c", "pure"])
def test_root_ids_and_fixed_shapes(twin: str) -> None:
    got = run_on_twin(twin, PROBE)
    shapes = [f"HTTP {i}" for i in range(300)] * 3
    assert got["many"] == [[["<m>", "root"], "request", s, 0] for s in shapes]
    assert got["failed"] == [[["<m>", "root"], "request", s, 1]
                             for s in ["HTTP 503", "HTTP 200"] * 2]
    # The given id is used as it is: the root registers no function of its own.
    assert got["given"] == [[["<given>", "kept"], "request", "HTTP 200", 0]] * 2
    assert got["registered"] == 1
    assert ["<m>", "root"] in got["defined"] and ["<given>", "kept"] in got["defined"]
    assert ["<request>", "root"] not in got["defined"]
    assert got["rehooked"] == [[["<m>", "root"], "request", f"other {s}", 0]
                               for s in ["HTTP 200", "HTTP 1"] * 2]
