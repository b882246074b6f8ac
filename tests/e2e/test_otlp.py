"""OpenTelemetry output end to end: ``flowagent run --otlp-endpoint`` against a real OTLP/HTTP
receiver in this process, and ``flowagent export --format otlp`` decoded the same way.

Every span is checked against the store: one per recorded call, ids, parents, names, times,
attributes and status; a receiver that is down or answers 500 changes nothing for the program
and is counted in the summary and the run's totals.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.proto")

from helpers import _clean_env, flowagent_cmd, record, run_python, strip_summary, write_files
from otlp_receiver import Receiver, attributes, closed_port

from flowagent.reports.export.otlp import span_id, trace_id

pytestmark = pytest.mark.e2e

PROGRAM = """
    import sys

    class Missing(Exception):
        pass

    def lookup(table, key):
        if key not in table:
            raise Missing(key)
        return table[key]

    def handled(table):
        try:
            return lookup(table, "nope")
        except Missing:
            return None

    def total(items):
        return sum(item["qty"] for item in items)

    def order(items, table):
        handled(table)
        return {"total": total(items), "name": lookup(table, "a")}

    def crash(table):
        return lookup(table, "zzz")

    print(order([{"sku": "x", "qty": 2}], {"a": "alpha"}))
    print(order([], {"a": "beta"}))
    try:
        crash({})
    except Missing:
        print("crashed")
    sys.stdout.flush()
    sys.exit(3)
"""


def _run(tmp_path: Path, endpoint: str, program: str = PROGRAM) -> tuple[Any, Any]:
    """The program under ``flowagent run --otlp-endpoint`` and under plain python."""
    rec = record(program, tmp_path, options=("--otlp-endpoint", endpoint), check=False)
    plain = run_python(["prog.py"], tmp_path)
    assert rec.returncode == plain.returncode == 3, rec.stderr
    assert rec.stdout == plain.stdout.decode()
    assert strip_summary(rec.stderr.encode()) == plain.stderr
    return rec, plain


def check_spans(rec: Any, spans: dict[bytes, tuple[dict[str, Any], Any]],
                service: str = "prog") -> int:
    """Every recorded call of the run is exactly one span, with everything it should say."""
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    expected = 0
    for session in rec.sessions():
        graph = rec.tree(session["session_id"])
        sid = session["session_id"]
        trace = trace_id(graph)
        nodes = {n["id"]: n for n in graph["nodes"]}
        for node in graph["nodes"]:
            expected += 1
            resource, span = spans[span_id(sid, node["id"])]
            assert resource["service.name"] == service
            assert resource["host.name"] == socket.gethostname()
            assert resource["process.pid"] == node["pid"]
            assert span.trace_id == trace
            parent = node["parent_id"]
            assert span.parent_span_id == (span_id(sid, parent) if parent in nodes else b"")
            assert span.name == node["function_name"]
            assert span.start_time_unix_nano == node["timestamp_start"]
            assert span.end_time_unix_nano == node["timestamp_end"]
            attrs = attributes(span.attributes)
            module, _, qualname = node["function_name"].partition(":")
            assert attrs["code.function"] == qualname
            assert attrs["code.namespace"] == module
            assert attrs["flowagent.result"] == node["result_type"]
            assert attrs["flowagent.session_id"] == sid
            if node["input_shape"] is not None:
                assert json.loads(attrs["flowagent.input_shape"]) == node["input_shape"]
            if node["output_shape"] is not None:
                assert attrs["flowagent.output_shape"] == node["output_shape"]
            if node["result_type"] == "error":
                assert span.status.code == Status.StatusCode.STATUS_CODE_ERROR
                assert attrs["exception.type"] == node["exception_type"]
                assert span.status.message == node["exception_type"]
                assert [e.name for e in span.events] == ["exception"]
            else:
                assert span.status.code == Status.StatusCode.STATUS_CODE_UNSET
            if parent is None:
                assert attrs["flowagent.flow_variant"] == session["variant"]
                assert span.kind == Span.SpanKind.SPAN_KIND_INTERNAL
            else:
                assert "flowagent.flow_variant" not in attrs
    assert len(spans) == expected
    return expected


def _facts(rec: Any) -> None:
    """The recording holds what the checks rely on: errors, handled errors, shapes."""
    crash = rec.call(":crash")
    assert crash["result_type"] == "error" and crash["exception_type"]
    assert any(n["result_type"] == "partial" for n in rec.calls(":handled"))
    totals = rec.calls(":total")
    assert totals[0]["input_shape"] == {"items": "list[dict{qty:int,sku:str}]"}


def test_live_spans_reach_the_receiver(tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        rec, _ = _run(tmp_path, receiver.url)
        _facts(rec)
        requests = receiver.wait_requests(1)
        assert {r.path for r in requests} == {"/v1/traces"}
        assert {r.content_type for r in requests} == {"application/x-protobuf"}
        spans = receiver.delivered_spans()
        n = check_spans(rec, spans)
        assert n == sum(s["calls"] for s in rec.sessions()) >= 10
        run = rec.run_info()
        assert (run["otlp_sessions"], run["otlp_spans"], run["otlp_undelivered"]) == (
            len(rec.sessions()), n, 0)
        assert f"{len(rec.sessions())} sessions ({n} spans) sent to {receiver.url}/v1/traces" \
            in rec.stderr
    finally:
        receiver.close()


@pytest.mark.parametrize("failure", ["down", "500"])
def test_failing_receiver_changes_nothing_and_is_counted(tmp_path: Path, failure: str) -> None:
    receiver = Receiver(default_status=500) if failure == "500" else None
    url = receiver.url if receiver else f"http://127.0.0.1:{closed_port()}"
    try:
        rec, _ = _run(tmp_path, url)
        n_sessions = len(rec.sessions())
        assert n_sessions >= 3
        run = rec.run_info()
        assert (run["otlp_sessions"], run["otlp_spans"], run["otlp_undelivered"]) == (
            0, 0, n_sessions)
        assert f"{n_sessions} sessions could not be delivered" in rec.stderr
        # What the program recorded is all stored regardless.
        assert run["status"] == "finished" and run["sessions"] == n_sessions
        if receiver is not None:
            assert receiver.wait_requests(1)
            assert receiver.delivered_spans() == {}
    finally:
        if receiver is not None:
            receiver.close()


def test_transient_failure_is_retried_while_the_run_goes_on(tmp_path: Path) -> None:
    """The first POST gets 503: the sender backs off and sends the same batch again, while
    the program is still running (it waits on stdin until the test has seen the retry)."""
    receiver = Receiver(statuses=[503])
    program = """
        import sys

        def step(n):
            return n + 1

        def first():
            return step(1)

        def second():
            return step(2)

        first()
        sys.stdin.readline()
        second()
        print("done")
    """
    write_files(tmp_path, {"prog.py": program})
    data = tmp_path / "data"
    proc = subprocess.Popen(
        flowagent_cmd("run", "--data-dir", str(data), "--otlp-endpoint", receiver.url,
                      "prog.py"), cwd=tmp_path, env=_clean_env(None),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        requests = receiver.wait_requests(2)
        assert [r.status for r in requests[:2]] == [503, 200]
        assert requests[0].request == requests[1].request  # the same batch, again
        out, err = proc.communicate(b"\n", timeout=60)
        assert proc.returncode == 0 and out == b"done\n", err
        from flowagent.store.sqlite import SQLiteStore

        store = SQLiteStore(str(data / "flowagent.db"), readonly=True)
        run = store.runs()[0]
        store.close()
        assert (run["otlp_sessions"], run["otlp_undelivered"]) == (2, 0)
        names = {span.name for _, span in receiver.delivered_spans().values()}
        assert names == {"__main__:first", "__main__:second", "__main__:step"}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        receiver.close()


def test_file_export_decodes_to_the_same_spans(tmp_path: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    rec = record(PROGRAM, tmp_path, check=False)
    assert rec.returncode == 3
    _facts(rec)
    rec.cli("export", "--format", "otlp", "-o", str(tmp_path / "out.pb"))
    request = ExportTraceServiceRequest.FromString((tmp_path / "out.pb").read_bytes())
    spans = {}
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            assert scope_spans.scope.name == "flowagent"
            for span in scope_spans.spans:
                spans[span.span_id] = (resource, span)
    n = check_spans(rec, spans)

    # The JSON encoding: the same request, ids as hex as the OTLP specification wants.
    text = rec.cli("export", "--format", "otlp-json", "--service", "shop").stdout.decode()
    lines = text.splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    json_spans = [s for rs in doc["resourceSpans"] for ss in rs["scopeSpans"]
                  for s in ss["spans"]]
    assert len(json_spans) == n
    assert {bytes.fromhex(s["spanId"]) for s in json_spans} == set(spans)
    services = {a["value"]["stringValue"] for rs in doc["resourceSpans"]
                for a in rs["resource"]["attributes"] if a["key"] == "service.name"}
    assert services == {"shop"}


def test_missing_extra_is_one_clear_error(tmp_path: Path) -> None:
    """Without opentelemetry-proto, --otlp-endpoint is refused before the program starts."""
    write_files(tmp_path, {"prog.py": "print('ran')\n"})
    code = ("import sys; sys.modules['opentelemetry'] = None\n"
            "from flowagent.cli import main\n"
            "main(['run', '--otlp-endpoint', 'http://127.0.0.1:4318', 'prog.py'])\n")
    proc = subprocess.run([*flowagent_cmd()[:1], "-c", code], cwd=tmp_path,
                          env=_clean_env(None), capture_output=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == b""
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and "flowagent[otlp]" in err, err
