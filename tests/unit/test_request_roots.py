"""A web request's root, through the WSGI middleware, on both recorder twins.

The root is named when it opens (``METHOD <unmatched>``) and again when the framework matches
the route, never rebuilt per request: its function ids come from a table per route. These
probes drive :func:`wsgi.wrap_app` with a small WSGI app in a fresh interpreter and read back
the records it made (function, output shape, result, exception): the names, statuses and
failures must be those of each request, the first as the hundredth.
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

class App:
    def __call__(self, environ, start_response):
        path = environ["PATH_INFO"]
        if path.startswith("/items/"):
            webrequest.set_template("/items/<id>")
        if path == "/boom":
            raise KeyError("boom")
        status = "500 INTERNAL SERVER ERROR" if path == "/fail" else \
            "404 NOT FOUND" if path == "/missing" else "200 OK"
        start_response(status, [])
        return [b"x"]

serve = wsgi.wrap_app(App.__call__)
app = App()
requests = [("GET", "/items/1"), ("POST", "/items/2"), ("GET", "/missing"), ("GET", "/fail"),
            ("BREW", "/items/3"), ("GET", "/boom"), ("DELETE", "/missing")] * 3
for method, path in requests:
    try:
        serve(app, {"REQUEST_METHOD": method, "PATH_INFO": path}, lambda s, h, *e: None)
    except KeyError:
        pass
n, data, _ = r.take_calls()
fields = wire.CALL_FIELDS
rows = [dict(zip(fields, rec)) for rec in wire._records(n, data)]
strings = r._strings
out = [[r._functions[row["fid"]][0] + ":" + r._functions[row["fid"]][1],
        strings[row["out"]] if row["out"] else None, row["res"],
        strings[row["exc"]] if row["exc"] else None, row["ses"] == row["cid"]]
       for row in rows]
print(json.dumps({"records": out, "open": r._get() is not None,
                  "request": webrequest.current() is not None}))
'''

ONE_ROUND = [
    ["<request>:GET /items/<id>", "HTTP 200", 0, None, True],
    ["<request>:POST /items/<id>", "HTTP 200", 0, None, True],
    ["<request>:GET <unmatched>", "HTTP 404", 0, None, True],
    ["<request>:GET <unmatched>", "HTTP 500", 1, "HTTP 500", True],
    ["<request>:OTHER /items/<id>", "HTTP 200", 0, None, True],
    ["<request>:GET <unmatched>", None, 1, "KeyError", True],
    ["<request>:DELETE <unmatched>", "HTTP 404", 0, None, True],
]


@pytest.mark.parametrize("pure", [False, True], ids=["c", "pure"])
def test_each_request_is_named_and_ended_alike(pure: bool) -> None:
    got = run_twin_probe(PROBE, pure)
    assert got["open"] is False and got["request"] is False
    records = got["records"]
    # Exception names are interned as the type's name; results: 0 success, 1 error.
    assert [rec[:3] for rec in records] == [rec[:3] for rec in ONE_ROUND * 3]
    assert [rec[4] for rec in records] == [True] * len(records)
    failed = [rec[3] for rec in records if rec[2] == 1]
    assert len(failed) == 6 and all(name and ("500" in name or "KeyError" in name)
                                    for name in failed)
