"""A Flask app whose views call into this package, driven with real requests: in-process with
the Flask test client (:func:`main`) or over HTTP on 127.0.0.1 through a threaded werkzeug
server (:func:`main_http`)."""

from __future__ import annotations

import http.client
import json
import threading
import time

from . import service
from .app import create_app

FULL_N = 1000


def plan(n: int) -> list[tuple[str, str, dict | None]]:
    """A fixed request mix: 50% product pages, 35% add-to-cart, 15% cart views; a few
    404s and 400s."""
    out = []
    for i in range(n):
        r = i % 20
        if r < 10:
            sku = "nope" if i % 97 == 0 else f"p{i * 7 % 100}"
            out.append(("GET", f"/products/{sku}", None))
        elif r < 17:
            qty = 0 if i % 61 == 0 else 1 + i % 4
            out.append(("POST", f"/carts/{i % 25}/items", {"sku": f"p{i * 3 % 100}", "qty": qty}))
        else:
            out.append(("GET", f"/carts/{i % 25}", None))
    return out


def _fold(acc: int, status: int, body: bytes) -> int:
    data = json.loads(body)
    total = data.get("total") if isinstance(data, dict) else None
    return (acc * 31 + status + int((total or 0) * 100) + len(data)) % 2**61


def main(n: int | None = None) -> int:
    n = FULL_N if n is None else n
    service.reset()
    app = create_app()
    client = app.test_client()
    requests = plan(n)
    acc = 0
    c0 = time.process_time_ns()
    t0 = time.perf_counter_ns()
    for method, path, body in requests:
        resp = client.open(path, method=method, json=body)
        acc = _fold(acc, resp.status_code, resp.data)
    elapsed = time.perf_counter_ns() - t0
    cpu = time.process_time_ns() - c0
    print(f"workload=flask calls=? result={acc} elapsed_ns={elapsed} cpu_ns={cpu}", flush=True)
    return acc


def main_http(n: int | None = None) -> int:
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args: object, **kwargs: object) -> None:
            pass  # the access log on stderr would dominate what we measure

    n = FULL_N if n is None else n
    service.reset()
    app = create_app()
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="bench-http", daemon=True)
    thread.start()
    port = server.server_port
    requests = plan(n)
    acc = 0
    try:
        c0 = time.process_time_ns()
        t0 = time.perf_counter_ns()
        for method, path, body in requests:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            acc = _fold(acc, resp.status, resp.read())
            conn.close()
        elapsed = time.perf_counter_ns() - t0
        cpu = time.process_time_ns() - c0
    finally:
        server.shutdown()
        thread.join(10)
    print(f"workload=flask_http calls=? result={acc} elapsed_ns={elapsed} cpu_ns={cpu}",
          flush=True)
    return acc
