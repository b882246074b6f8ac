"""Outgoing HTTP calls' function ids, read per (method, host, URL) from a bounded table.

A program's requests through ``http.client`` to a real local server, over more URLs than the
table holds (its bound lowered to two), each URL several times and in changing order (hits,
misses, and misses after the table was emptied): every call must still be named by its own
URL's template and carry its own status, on both recorder twins.
"""

from __future__ import annotations

import pytest

from helpers import run_twin_probe

PROBE = r'''
import http.client, http.server, json, threading
from flowagent.agent import recorder as r
from flowagent.agent.integrations import httpclient
from flowagent.protocol import wire

class Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        status = int(self.path.rstrip("/").rsplit("/", 1)[-1])
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    do_GET = do_PUT = _answer
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
port = server.server_port

r.S.on = True
r.S.user_functions = True
httpclient._MAX_URLS = 2
httpclient.patch_http_client(http.client)

URLS = ["/items/1/200", "/items/2/201", "/users/ab12cd34ef/404", "/x/500", "/items/3/200"]
plan = [(m, u) for u in URLS + URLS[::-1] for m in ("GET", "PUT")] * 2
root = r.enter_root("probe", always=True)
for method, url in plan:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, url)
    conn.getresponse().read()
    conn.close()
r.close_call(root, None)
server.shutdown()
n, data, _ = r.take_calls()
rows = [dict(zip(wire.CALL_FIELDS, rec)) for rec in wire._records(n, data)]
got = [[r._functions[row["fid"]][1], r._strings[row["out"]] if row["out"] else None,
        r._strings[row["exc"]] if row["exc"] else None]
       for row in rows if r._functions[row["fid"]][0] == "<http>"]
expected = [[httpclient.url_template(m, f"127.0.0.1:{port}", u), f"HTTP {u[-3:]}",
             "HTTP 500" if u.endswith("500") else None] for m, u in plan]
print(json.dumps({"got": got, "expected": expected, "size": len(httpclient._url_fids),
                  "errors": r.S.agent_errors}))
'''


@pytest.mark.parametrize("pure", [False, True], ids=["c", "pure"])
def test_http_calls_keep_their_names_and_statuses_past_a_full_url_table(pure: bool) -> None:
    out = run_twin_probe(PROBE, pure)
    assert out["errors"] == 0
    assert len(out["got"]) == 40
    assert out["got"] == out["expected"]
    assert "GET 127.0.0.1:" in out["got"][0][0] and out["got"][0][0].endswith("/items/{int}/{int}")
    assert 1 <= out["size"] <= 2
