"""The OTLP export as a pure function: ids, parents, W3C trace context, status, framing."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.proto")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from flowagent.errors import ConfigError
from flowagent.reports.export import otlp
from flowagent.reports.export.otlp import (
    build_request,
    program_name,
    span_id,
    to_json,
    trace_id,
    write_otlp,
    write_otlp_json,
)

UPSTREAM_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UPSTREAM_SPAN = "00f067aa0ba902b7"


def _session(session_id: str = "abc-1", **extra: Any) -> dict[str, Any]:
    nodes = [
        {"id": 1, "parent_id": None, "function_name": "shop.api:handle", "result_type": "partial",
         "input_shape": {"req": "dict{id:int}"}, "output_shape": "int", "timestamp_start": 100,
         "timestamp_end": 900, "thread": 7, "thread_name": "MainThread", "pid": 42},
        {"id": 2, "parent_id": 1, "function_name": "shop.db:Repo.get", "result_type": "error",
         "exception_type": "KeyError", "input_shape": None, "output_shape": None,
         "timestamp_start": 200, "timestamp_end": 300, "thread": 7, "pid": 42},
        {"id": 5, "parent_id": 99, "function_name": "orphan", "result_type": "success",
         "timestamp_start": 400, "timestamp_end": None, "thread": 7, "pid": 42},
    ]
    return {"session_id": session_id, "name": "<request>:GET /items/{id}", "variant": "v1",
            "complete": True, "nodes": nodes, **extra}


def _spans(request: Any) -> dict[str, Any]:
    return {s.name: s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans}


def _attrs(span: Any) -> dict[str, Any]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in span.attributes}


def test_spans_of_a_session() -> None:
    request, n = build_request([_session()], "shop", "host-a")
    assert n == 3
    (resource_spans,) = request.resource_spans
    resource = {kv.key: kv.value for kv in resource_spans.resource.attributes}
    assert resource["service.name"].string_value == "shop"
    assert resource["host.name"].string_value == "host-a"
    assert resource["process.pid"].int_value == 42
    spans = _spans(request)
    root, child, orphan = spans["shop.api:handle"], spans["shop.db:Repo.get"], spans["orphan"]
    assert {s.trace_id for s in spans.values()} == {trace_id(_session())}
    assert root.parent_span_id == b"" and orphan.parent_span_id == b""
    assert child.parent_span_id == root.span_id == span_id("abc-1", 1)
    assert root.kind == Span.SpanKind.SPAN_KIND_SERVER
    assert child.kind == Span.SpanKind.SPAN_KIND_INTERNAL
    assert (root.start_time_unix_nano, root.end_time_unix_nano) == (100, 900)
    assert (orphan.start_time_unix_nano, orphan.end_time_unix_nano) == (400, 400)
    a = _attrs(root)
    assert a["code.function"] == "handle" and a["code.namespace"] == "shop.api"
    assert json.loads(a["flowagent.input_shape"]) == {"req": "dict{id:int}"}
    assert a["flowagent.output_shape"] == "int" and a["flowagent.result"] == "partial"
    assert a["flowagent.flow_variant"] == "v1" and a["thread.id"] == 7
    assert root.status.code == Status.StatusCode.STATUS_CODE_UNSET
    c = _attrs(child)
    assert c["code.function"] == "Repo.get" and c["exception.type"] == "KeyError"
    assert "flowagent.input_shape" not in c and "flowagent.flow_variant" not in c
    assert child.status.code == Status.StatusCode.STATUS_CODE_ERROR
    assert child.status.message == "KeyError"
    assert [e.name for e in child.events] == ["exception"]
    assert "code.namespace" not in _attrs(orphan)


def test_ids_are_deterministic_and_per_session() -> None:
    a1, _ = build_request([_session("a-1")], "s")
    a2, _ = build_request([_session("a-1")], "s")
    b, _ = build_request([_session("b-1")], "s")
    assert a1.SerializeToString() == a2.SerializeToString()
    assert trace_id(_session("a-1")) != trace_id(_session("b-1"))
    ids = {s.span_id for s in _spans(a1).values()} | {s.span_id for s in _spans(b).values()}
    assert len(ids) == 6 and all(len(i) == 8 and any(i) for i in ids)


@pytest.mark.parametrize("where", ["session", "root"])
def test_w3c_traceparent_joins_the_upstream_trace(where: str) -> None:
    header = f"00-{UPSTREAM_TRACE}-{UPSTREAM_SPAN}-01"
    session = _session()
    if where == "session":
        session["traceparent"] = header
    else:
        session["nodes"][0]["traceparent"] = header
    spans = _spans(build_request([session], "s")[0])
    assert {s.trace_id.hex() for s in spans.values()} == {UPSTREAM_TRACE}
    assert spans["shop.api:handle"].parent_span_id.hex() == UPSTREAM_SPAN
    assert spans["shop.db:Repo.get"].parent_span_id == spans["shop.api:handle"].span_id


@pytest.mark.parametrize("bad", [None, 17, "", "garbage", f"00-{'0' * 32}-{UPSTREAM_SPAN}-01",
                                 f"00-{UPSTREAM_TRACE}-{'0' * 16}-01", f"00-{UPSTREAM_TRACE}-xyz-01",
                                 ["00", UPSTREAM_TRACE]])
def test_malformed_traceparent_is_ignored(bad: Any) -> None:
    session = _session(traceparent=bad)
    assert trace_id(session) == trace_id(_session())
    spans = _spans(build_request([session], "s")[0])
    assert spans["shop.api:handle"].parent_span_id == b""


def test_file_framing_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from google.protobuf.internal.decoder import _DecodeVarint

    sessions = [_session(f"s-{i}") for i in range(5)]
    one = io.BytesIO()
    assert write_otlp(sessions, one, "svc") == 15
    assert len(_spans(ExportTraceServiceRequest.FromString(one.getvalue()))) == 3  # by name

    monkeypatch.setattr(otlp, "FILE_BATCH", 2)
    framed = io.BytesIO()
    assert write_otlp(sessions, framed, "svc") == 15
    data, pos, total = framed.getvalue(), 0, 0
    while pos < len(data):
        size, pos = _DecodeVarint(data, pos)
        request = ExportTraceServiceRequest.FromString(data[pos:pos + size])
        total += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        pos += size
    assert total == 15

    text = io.StringIO()
    assert write_otlp_json(sessions, text, "svc") == 15
    lines = text.getvalue().splitlines()
    assert len(lines) == 3
    span = json.loads(lines[0])["resourceSpans"][0]["scopeSpans"][0]["spans"][1]
    assert span["traceId"] == trace_id(sessions[0]).hex()
    assert span["parentSpanId"] == span_id("s-0", 1).hex()
    assert to_json(build_request([], "svc")[0]) == {}


def test_program_names() -> None:
    assert program_name("app.py") == "app"
    assert program_name("/srv/bin/worker.py") == "worker"
    assert program_name("-m shop.main") == "shop.main"
    assert program_name("gunicorn") == "gunicorn"
    assert program_name("") == "python"


def test_endpoint_setting(tmp_path: Path) -> None:
    from flowagent.config import load_config
    from flowagent.sidecar.otlp_sender import traces_url

    cfg = load_config(tmp_path, {"FLOWAGENT_OTLP_ENDPOINT": "http://collector:4318"}, {})
    assert cfg.otlp_endpoint == "http://collector:4318"
    assert load_config(tmp_path, {}, {}).otlp_endpoint == ""
    for bad in ("collector:4318", "ftp://x", "http://", "http://h:99999"):
        with pytest.raises(ConfigError, match="otlp-endpoint"):
            load_config(tmp_path, {}, {"otlp_endpoint": bad})
    assert traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert traces_url("https://c/otlp/v1/traces") == "https://c/otlp/v1/traces"
    assert traces_url("http://c/prefix") == "http://c/prefix/v1/traces"


def test_sender_counts_what_does_not_fit_or_cannot_be_read(tmp_path: Path) -> None:
    """A full queue drops (and counts) at once; a session without a kept tree counts too."""
    from flowagent.sidecar.otlp_sender import OtlpSender
    from flowagent.store.sqlite import SQLiteStore

    db = tmp_path / "flowagent.db"
    SQLiteStore(str(db)).close()
    sender = OtlpSender("http://127.0.0.1:9", str(db), "svc", queue_sessions=2, shutdown_s=2)
    sender.offer([f"missing-{i}" for i in range(5)])
    totals = sender.close()
    assert totals["otlp_undelivered"] == 5
    assert (totals["otlp_sessions"], totals["otlp_spans"]) == (0, 0)


def test_bare_trace_id_from_the_session_row() -> None:
    from flowagent.reports.export.otlp import with_row

    graph = with_row(_session(), {"variant": "v9", "trace_id": UPSTREAM_TRACE.upper()})
    spans = _spans(build_request([graph], "s")[0])
    assert {s.trace_id.hex() for s in spans.values()} == {UPSTREAM_TRACE}
    assert spans["shop.api:handle"].parent_span_id == b""
    assert _attrs(spans["shop.api:handle"])["flowagent.flow_variant"] == "v1"  # graph wins
