"""A real OTLP/HTTP trace receiver for tests: ``http.server`` on 127.0.0.1, a free port.

Every POST is decoded with ``opentelemetry-proto``'s own ``ExportTraceServiceRequest`` and
kept; the status each request gets is chosen by the test (``statuses``: a list consumed one
per request, then ``default_status``). Tests wait on :meth:`Receiver.wait_requests`, never
on a sleep.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass
class Received:
    path: str
    content_type: str
    status: int
    request: ExportTraceServiceRequest


class Receiver:
    def __init__(self, default_status: int = 200, statuses: list[int] | None = None) -> None:
        self.default_status = default_status
        self.statuses = list(statuses or [])
        self.requests: list[Received] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = ExportTraceServiceRequest.FromString(body)
                with receiver._cond:
                    status = (receiver.statuses.pop(0) if receiver.statuses
                              else receiver.default_status)
                    receiver.requests.append(Received(
                        self.path, self.headers.get("Content-Type", ""), status, request))
                    receiver._cond.notify_all()
                reply = ExportTraceServiceResponse().SerializeToString() if status == 200 else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait_requests(self, n: int, timeout: float = 60) -> list[Received]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout):
                raise AssertionError(f"the receiver got {len(self.requests)} requests, "
                                     f"expected {n} within {timeout} s")
            return list(self.requests)

    def delivered_spans(self) -> dict[bytes, tuple[Mapping[str, Any], Any]]:
        """span id → (resource attributes, span) of every request answered 200."""
        out: dict[bytes, tuple[Mapping[str, Any], Any]] = {}
        with self._cond:
            for received in self.requests:
                if received.status != 200:
                    continue
                for resource_spans in received.request.resource_spans:
                    resource = attributes(resource_spans.resource.attributes)
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            assert span.span_id not in out, "a span was delivered twice"
                            out[span.span_id] = (resource, span)
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def attributes(kvs: Any) -> dict[str, Any]:
    """OTLP KeyValues as a dict of plain values."""
    out: dict[str, Any] = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
