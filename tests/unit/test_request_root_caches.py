"""A request root's route and status caches when they fill up, on both recorder twins.

The root's function id per (method, route) and its output shape per status are read from
bounded tables, filled on a miss and started again when full. With the bound lowered to
two entries, requests over more routes and statuses than that, each seen several times (hits,
misses, and misses after a table was emptied), must still be named and shaped as their own.
"""

from __future__ import annotations

import pytest

from helpers import run_twin_probe

PROBE = r'''
import json
from flowagent.agent import recorder as r
from flowagent.agent.integrations import webrequest, wsgi
from flowagent.protocol import wire

r.S.on = True
r.S.user_functions = True
webrequest._MAX_CACHED = 2

STATUSES = {"a": "200 OK", "b": "201 CREATED", "c": "404 NOT FOUND", "d": "202 ACCEPTED",
            "e": "204 NO CONTENT"}

class App:
    def __call__(self, environ, start_response):
        route = environ["PATH_INFO"].strip("/")
        webrequest.set_template(f"/{route}/<id>")
        start_response(STATUSES[route], [])
        return [b"x"]

serve = wsgi.wrap_app(App.__call__)
app = App()
requests = [(m, route) for route in "abcdeedcba" for m in ("GET", "PUT")] * 2
for method, route in requests:
    serve(app, {"REQUEST_METHOD": method, "PATH_INFO": f"/{route}"}, lambda s, h, *e: None)
n, data, _ = r.take_calls()
rows = [dict(zip(wire.CALL_FIELDS, rec)) for rec in wire._records(n, data)]
out = [[r._functions[row["fid"]][1], r._strings[row["out"]] if row["out"] else None]
       for row in rows]
print(json.dumps({"records": out, "sizes": [len(webrequest._fids),
                                            len(webrequest._status_shapes)]}))
'''

STATUS = {"a": 200, "b": 201, "c": 404, "d": 202, "e": 204}


@pytest.mark.parametrize("pure", [False, True], ids=["c", "pure"])
def test_requests_keep_their_names_and_statuses_past_full_caches(pure: bool) -> None:
    got = run_twin_probe(PROBE, pure)
    expected = [[f"{m} /{route}/<id>", f"HTTP {STATUS[route]}"]
                for route in "abcdeedcba" for m in ("GET", "PUT")] * 2
    assert got["records"] == expected
    assert all(1 <= size <= 2 for size in got["sizes"])
