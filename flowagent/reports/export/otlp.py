"""OpenTelemetry export: sessions as OTLP spans (``ExportTraceServiceRequest``).

Used twice: by ``flowagent export --format otlp`` (a file of protobuf bytes, or the OTLP JSON
encoding with ``otlp-json``) and by the sidecar's live sender
(:mod:`flowagent.sidecar.otlp_sender`), which POSTs the same messages to ``/v1/traces``.

Built with the official ``opentelemetry-proto`` messages, imported only when a request is
built (:func:`require_proto`), so the rest of flowagent runs without the ``otlp`` extra.

Decisions:

* One trace per session. Its trace id is the W3C trace id the session's request arrived with
  (a ``traceparent`` on the session or its root call, read defensively: anything malformed is
  ignored), otherwise 16 bytes derived from the session id, so re-exporting a session gives
  the same trace and backends deduplicate instead of doubling it.
* One span per recorded call; its span id is derived from (session id, call id), its parent
  from the call tree. A call whose parent is not in the session (retention, a lost record)
  becomes a root of the trace; when the request came with a ``traceparent``, roots hang under
  the caller's span id so the trace joins the upstream service's.
* Times: the store keeps unix epoch nanoseconds, which is what OTLP wants; an unfinished call
  ends where it started rather than at a made-up time.
* Results: ``error`` sets the span status to ERROR with the exception type as message and
  ``exception.type`` (attribute and an ``exception`` event, as the semantic conventions put
  it); ``partial`` and ``incomplete`` keep status UNSET and say so in ``flowagent.result``.
* Resource: ``service.name``, ``host.name`` and ``process.pid``: spans are grouped per
  process, so a backend shows which process of a multi-process run made each call.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import socket
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from flowagent.errors import UsageError
from flowagent.reports.export._common import end_ns, split_function, start_ns, walk_calls

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

SCOPE_NAME = "flowagent"
MEDIA_TYPE = "application/x-protobuf"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_KV_CACHE = 4096  # attribute messages kept for reuse while one request is built
_MAX_ATTRIBUTE = 4096  # characters of one shape attribute; backends cap attributes anyway


def require_proto() -> Any:
    """The ``opentelemetry.proto`` modules, or a UsageError naming the extra to install."""
    try:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        from opentelemetry.proto.common.v1 import common_pb2
        from opentelemetry.proto.resource.v1 import resource_pb2
        from opentelemetry.proto.trace.v1 import trace_pb2
    except ImportError:
        raise UsageError(
            "OpenTelemetry output needs the 'opentelemetry-proto' package: install it with "
            "pip install 'flowagent[otlp]'") from None

    class Proto:
        service = trace_service_pb2
        common = common_pb2
        resource = resource_pb2
        trace = trace_pb2

    return Proto


def program_name(described: str) -> str:
    """A service name from the target as the launcher describes it (``app.py``,
    ``-m shop.main``, ``gunicorn``): the script's stem, the module, the program's name."""
    text = described.strip()
    if text.startswith("-m "):
        return text[3:].strip() or "python"
    base = os.path.basename(text.rstrip("/")) or "python"
    return base[:-3] if base.endswith(".py") and len(base) > 3 else base


def run_service_name(run: Mapping[str, Any]) -> str:
    """A stored run's service: its own ``service`` when the store keeps one, else the name
    of the program it ran (the launcher stores the target as the first item of ``argv``)."""
    if run.get("service"):
        return str(run["service"])
    try:
        argv = json.loads(run.get("argv") or "[]")
    except (TypeError, ValueError):
        argv = []
    return program_name(str(argv[0])) if isinstance(argv, list) and argv else "python"


def host_name() -> str:
    return socket.gethostname() or "localhost"


def _digest(text: str, size: int) -> bytes:
    value = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=size).digest()
    # All-zero ids are invalid in OTLP; a digest of zero is astronomically unlikely, but cheap.
    return value if any(value) else b"\x01" + value[1:]


# Fields of a stored session row the spans use, beyond the session graph itself.
ROW_FIELDS = ("variant", "traceparent", "trace_id")


def with_row(graph: dict[str, Any], row: Mapping[str, Any] | None) -> dict[str, Any]:
    """The session graph plus what its ``sessions`` row knows (flow variant, W3C context)."""
    for key in ROW_FIELDS:
        if row and row.get(key) is not None:
            graph.setdefault(key, row[key])
    return graph


def traceparent_of(session: Mapping[str, Any]) -> tuple[bytes, bytes | None] | None:
    """(trace id, parent span id) of the W3C trace context the session's request carried.

    Looked for on the session, then on its root calls: a ``traceparent`` header value, or a
    bare 32-hex ``trace_id`` (then without a parent span). A missing, non-text or malformed
    value (or the all-zero ids the specification declares invalid) is ignored."""
    holders: list[Mapping[str, Any]] = [session]
    for node in session.get("nodes", ()) or ():
        if isinstance(node, Mapping) and node.get("parent_id") is None:
            holders.append(node)
    for holder in holders:
        value = holder.get("traceparent")
        if isinstance(value, str):
            match = _TRACEPARENT.match(value.strip().lower())
            if match and match.group(1).strip("0") and match.group(2).strip("0"):
                return bytes.fromhex(match.group(1)), bytes.fromhex(match.group(2))
        value = holder.get("trace_id")
        if isinstance(value, str) and _TRACE_ID.match(value.strip().lower()) \
                and value.strip("0"):
            return bytes.fromhex(value.strip().lower()), None
    return None


def trace_id(session: Mapping[str, Any]) -> bytes:
    """The session's trace id: its request's W3C trace id, else derived from its id."""
    upstream = traceparent_of(session)
    return upstream[0] if upstream else _digest(f"trace:{session.get('session_id')}", 16)


@functools.lru_cache(maxsize=1024)
def _span_base(session_id: Any) -> int:
    return int.from_bytes(_digest(f"span:{session_id}", 8), "big")


def span_id(session_id: Any, call_id: Any) -> bytes:
    """The span id of a call: the session's 64-bit base plus the call id (unique within the
    session's trace, one hash per session rather than per call); never all zeros."""
    number = call_id if isinstance(call_id, int) and not isinstance(call_id, bool) \
        else int.from_bytes(_digest(f"call:{call_id}", 8), "big")
    value = (_span_base(session_id) + number) & 0xFFFF_FFFF_FFFF_FFFF
    return (value or 1).to_bytes(8, "big")


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _MAX_ATTRIBUTE else text[: _MAX_ATTRIBUTE - 1] + "…"


class _Builder:
    """Accumulates spans per process resource into one ExportTraceServiceRequest."""

    def __init__(self, service_name: str, host: str) -> None:
        self.pb = require_proto()
        self.service_name = service_name
        self.host = host
        self.request = self.pb.service.ExportTraceServiceRequest()
        self._scopes: dict[Any, Any] = {}
        self._kv_cache: dict[Any, Any] = {}
        self.spans = 0

    def _scope(self, pid: Any) -> Any:
        scope = self._scopes.get(pid)
        if scope is None:
            resource_spans = self.request.resource_spans.add()
            attrs = resource_spans.resource.attributes
            self._attr(attrs, "service.name", self.service_name)
            self._attr(attrs, "host.name", self.host)
            if isinstance(pid, int) and not isinstance(pid, bool):
                self._attr(attrs, "process.pid", pid)
            scope = resource_spans.scope_spans.add()
            scope.scope.name = SCOPE_NAME
            self._scopes[pid] = scope
        return scope

    @staticmethod
    def _attr(attrs: Any, key: str, value: Any) -> None:
        attrs.append(_Builder._make_kv(key, value))

    @staticmethod
    def _make_kv(key: str, value: Any) -> Any:
        from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

        if isinstance(value, bool):
            return KeyValue(key=key, value=AnyValue(bool_value=value))
        if isinstance(value, int) and -(2**63) <= value < 2**63:
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=_text(value)))

    def _kv(self, key: str, value: Any) -> Any:
        """A KeyValue message, shared by every span with the same attribute: function names,
        shapes and threads repeat across calls, and building messages is the export's cost."""
        cache_key = (key, tuple(value.items()) if isinstance(value, dict) else value)
        try:
            kv = self._kv_cache.get(cache_key)
        except TypeError:  # an unhashable value (a list in an odd store): build it each time
            return self._make_kv(key, value)
        if kv is None:
            if len(self._kv_cache) >= _KV_CACHE:
                self._kv_cache.clear()
            kv = self._kv_cache[cache_key] = self._make_kv(key, value)
        return kv

    def add_session(self, session: Mapping[str, Any]) -> int:
        """Add every call of ``session`` as a span; returns how many."""
        pb = self.pb
        kv = self._kv
        session_id = session.get("session_id")
        trace = trace_id(session)
        upstream = traceparent_of(session)
        variant = session.get("variant")
        is_request = str(session.get("name") or "").startswith("<request>")
        server, internal = (pb.trace.Span.SpanKind.SPAN_KIND_SERVER,
                            pb.trace.Span.SpanKind.SPAN_KIND_INTERNAL)
        session_attr = self._make_kv("flowagent.session_id", str(session_id))
        added = 0
        for visit in walk_calls(session.get("nodes", ()) or ()):
            node = visit.node
            root = visit.parent is None
            if not root:
                parent_span = span_id(session_id, visit.parent.get("id"))  # type: ignore[union-attr]
            else:
                parent_span = (upstream[1] or b"") if upstream is not None else b""
            function = str(node.get("function_name") or "?")
            module, qualname = split_function(function)
            result = str(node.get("result_type") or "success")
            attrs = [kv("code.function", qualname)]
            if module:
                attrs.append(kv("code.namespace", module))
            attrs.append(kv("flowagent.result", result))
            for key, attr in (("input_shape", "flowagent.input_shape"),
                              ("output_shape", "flowagent.output_shape"),
                              ("caller", "flowagent.caller")):
                value = node.get(key)
                if value is not None:
                    attrs.append(kv(attr, value))
            attrs.append(session_attr)
            thread = node.get("thread")
            if isinstance(thread, int) and not isinstance(thread, bool):
                attrs.append(kv("thread.id", thread))
            if node.get("thread_name"):
                attrs.append(kv("thread.name", str(node["thread_name"])))
            exception = node.get("exception_type")
            if exception:
                attrs.append(kv("exception.type", str(exception)))
            if root:
                if variant:
                    attrs.append(kv("flowagent.flow_variant", str(variant)))
                if session.get("name"):
                    attrs.append(kv("flowagent.session_name", str(session["name"])))
                if session.get("complete") is False:
                    attrs.append(kv("flowagent.complete", False))
            end = max(end_ns(node), 0)
            span = self._scope(node.get("pid")).spans.add(
                trace_id=trace, span_id=span_id(session_id, node.get("id")),
                parent_span_id=parent_span, name=function,
                kind=server if root and is_request else internal,
                start_time_unix_nano=max(start_ns(node), 0), end_time_unix_nano=end,
                attributes=attrs)
            if result == "error":
                span.status.code = pb.trace.Status.StatusCode.STATUS_CODE_ERROR
                span.status.message = str(exception or "error")
                span.events.add(name="exception", time_unix_nano=end,
                                attributes=[kv("exception.type", str(exception or "error"))])
            added += 1
        self.spans += added
        return added


def build_request(sessions: Iterable[Mapping[str, Any]], service_name: str,
                  host: str | None = None) -> tuple[ExportTraceServiceRequest, int]:
    """One ExportTraceServiceRequest holding every call of ``sessions``; (request, spans)."""
    builder = _Builder(service_name, host or host_name())
    for session in sessions:
        builder.add_session(session)
    return builder.request, builder.spans


def to_json(request: Any) -> dict[str, Any]:
    """The OTLP JSON encoding of a request: protobuf JSON, except that trace and span ids are
    hex strings (not base64) and enums are integers, as the OTLP specification says."""
    from google.protobuf.json_format import MessageToDict

    out = MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in out.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        import base64

                        span[key] = base64.b64decode(span[key]).hex()
    return out


# Sessions per request when writing a file: OTLP receivers limit a request's size (4 MiB
# by default in the collector), so a file of many sessions is a sequence of requests.
FILE_BATCH = 256


def write_otlp(sessions: Iterable[Mapping[str, Any]], out: BinaryIO, service_name: str,
               host: str | None = None) -> int:
    """Write ``sessions`` as protobuf ExportTraceServiceRequests, returns the spans written.

    One request when everything fits in :data:`FILE_BATCH` sessions (the common case, and
    what ``ExportTraceServiceRequest.FromString`` reads back); more sessions are written as
    several requests, each preceded by its length as a protobuf varint (the standard
    delimited framing, ``google.protobuf.internal.decoder._DecodeVarint``)."""
    batches = _batches(sessions)
    first = next(batches, [])
    second = next(batches, None)
    if second is None:
        request, spans = build_request(first, service_name, host)
        out.write(request.SerializeToString())
        return spans
    from google.protobuf.internal.encoder import _VarintBytes

    total = 0
    for batch in (first, second, *batches):
        request, spans = build_request(batch, service_name, host)
        data = request.SerializeToString()
        out.write(_VarintBytes(len(data)) + data)
        total += spans
    return total


def write_otlp_json(sessions: Iterable[Mapping[str, Any]], out: TextIO, service_name: str,
                    host: str | None = None) -> int:
    """Write ``sessions`` in the OTLP JSON encoding, one request per line (JSON Lines, as the
    collector's file exporter writes them); returns the spans written."""
    total = 0
    for batch in _batches(sessions):
        request, spans = build_request(batch, service_name, host)
        out.write(json.dumps(to_json(request), separators=(",", ":")) + "\n")
        total += spans
    return total


def _batches(sessions: Iterable[Mapping[str, Any]]) -> Any:
    batch: list[Mapping[str, Any]] = []
    for session in sessions:
        batch.append(session)
        if len(batch) >= FILE_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


__all__ = ["MEDIA_TYPE", "build_request", "host_name", "program_name", "require_proto",
           "run_service_name", "with_row",
           "span_id", "to_json", "trace_id", "traceparent_of", "write_otlp", "write_otlp_json"]
