"""Live OpenTelemetry output: the sidecar POSTs each finished session as spans over OTLP/HTTP.

Ingestion hands over the ids of finished sessions once their transaction has committed, to
:class:`SenderProcess`: a child process (``python -m flowagent.sidecar.otlp_sender``), so the
span building never competes with ingestion for the interpreter lock, fed through a
non-blocking pipe. In the child, :class:`OtlpSender` queues them (a bounded deque) and a
thread reads each session back through its own read-only store connection, builds the spans
with :mod:`flowagent.reports.export.otlp` and POSTs them in batches (``application/x-protobuf`` to
``/v1/traces``).

Why a thread and a queue: a slow, failing or unreachable receiver must never slow ingestion,
and ingestion in turn is what keeps the program's rings from filling. So:

* the queue is bounded (:data:`QUEUE_SESSIONS`); a session offered to a full queue is not
  sent and is counted as undelivered;
* a failed POST (connection error, timeout, HTTP 429 or 5xx) is retried with exponential
  backoff (:data:`BACKOFF_S` doubling up to :data:`BACKOFF_MAX_S`, :data:`ATTEMPTS` tries);
  other HTTP errors are not retried (the receiver refused the data);
* at the end of the run the thread gets :data:`SHUTDOWN_S` seconds to send what is queued,
  one attempt per batch; whatever remains is counted as undelivered. The launcher waits for
  the sidecar's summary before it exits with the program's status, so this bounds how much
  a dead receiver can delay that exit, and never changes it.

A session whose tree retention has already dropped when the thread reads it cannot be sent
either, and counts as undelivered too.

Nothing here imports ``opentelemetry-proto`` at module level: the launcher only asks
:func:`check_available` (a ``find_spec``) so a missing extra is one clear error before the
program starts.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from typing import Any, Mapping

from ..errors import ConfigError

QUEUE_SESSIONS = 4096   # finished sessions waiting to be sent
BATCH_SESSIONS = 64     # sessions per POST
ATTEMPTS = 5            # tries per batch while the run goes on
BACKOFF_S = 0.25
BACKOFF_MAX_S = 8.0
TIMEOUT_S = 5.0         # per POST
SHUTDOWN_S = 10.0       # what the end of the run waits for the queue at most
TRACES_PATH = "/v1/traces"
_RETRY_STATUS = {408, 429}


def check_available() -> None:
    """Raise ConfigError naming the extra when ``opentelemetry-proto`` is not installed."""
    if importlib.util.find_spec("opentelemetry") is None or \
            importlib.util.find_spec("opentelemetry.proto") is None:
        raise ConfigError("--otlp-endpoint needs the 'opentelemetry-proto' package: install "
                          "it with pip install 'flowagent[otlp]'")


def traces_url(endpoint: str) -> str:
    """The URL spans are POSTed to: ``endpoint`` itself when it already ends in
    ``/v1/traces``, otherwise ``/v1/traces`` under it (as OTEL_EXPORTER_OTLP_ENDPOINT is
    read by OpenTelemetry's own exporters)."""
    parts = urllib.parse.urlsplit(endpoint)
    path = parts.path.rstrip("/")
    if not path.endswith(TRACES_PATH):
        path += TRACES_PATH
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class OtlpSender:
    """Sends finished sessions of one run to an OTLP/HTTP receiver from a daemon thread."""

    def __init__(self, endpoint: str, db_path: str, service: str, host: str | None = None,
                 *, queue_sessions: int = QUEUE_SESSIONS, shutdown_s: float = SHUTDOWN_S) -> None:
        self.url = traces_url(endpoint)
        self.db_path = db_path
        self.service = service
        self.host = host
        self.queue_sessions = queue_sessions
        self.shutdown_s = shutdown_s
        self._queue: deque[str] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = float("inf")
        # Counters: written by the sender thread (and offer() for overflow), read at the end.
        self.sent_sessions = 0
        self.sent_spans = 0
        self.undelivered = 0      # sessions not delivered, for any reason
        self.rejected_spans = 0   # spans the receiver accepted the request of but rejected
        self.failed_posts = 0
        self.first_error = ""
        self._thread = threading.Thread(target=self._run, name="flowagent-otlp", daemon=True)
        self._thread.start()

    # -- ingestion side: never waits --------------------------------------------------------
    def offer(self, session_ids: list[str]) -> None:
        """Queue finished (committed) sessions; those that do not fit are counted, not kept."""
        with self._cond:
            room = self.queue_sessions - len(self._queue)
            if room < len(session_ids):
                self.undelivered += len(session_ids) - max(room, 0)
                session_ids = session_ids[:max(room, 0)]
            self._queue.extend(session_ids)
            self._cond.notify()

    def close(self) -> dict[str, Any]:
        """End of run: send what is queued within :attr:`shutdown_s`, then the totals."""
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + self.shutdown_s
            self._cond.notify()
        self._thread.join(self.shutdown_s + TIMEOUT_S + 1.0)
        with self._cond:
            # Left in the queue (deadline passed, or the thread is still stuck in a POST).
            self.undelivered += len(self._queue)
            self._queue.clear()
        return self.totals()

    def totals(self) -> dict[str, Any]:
        return {"otlp_endpoint": self.url, "otlp_sessions": self.sent_sessions,
                "otlp_spans": self.sent_spans, "otlp_undelivered": self.undelivered,
                "otlp_rejected_spans": self.rejected_spans, "otlp_error": self.first_error}

    # -- sender thread ----------------------------------------------------------------------
    def _take(self) -> list[str] | None:
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return None  # closing, nothing left
            if self._closing and time.monotonic() >= self._deadline:
                return None
            n = min(BATCH_SESSIONS, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _run(self) -> None:
        try:
            from ..reports.export.otlp import build_request, require_proto, with_row
            from ..store.api import open_store

            require_proto()
            store = open_store(self.db_path, readonly=True)
        except Exception as exc:  # the extra vanished, the store cannot be read: count all
            self._fail(exc)
            self._discard_all()
            return
        try:
            while (batch := self._take()) is not None:
                graphs = []
                for session_id in batch:
                    try:
                        if store.parent_session(session_id) is not None:
                            continue  # a child process's part: sent inside its parent's
                        graph = store.session_graph(session_id)
                        row: Mapping[str, Any] = store.session(session_id) or {}
                    except Exception as exc:  # a store error must not end the thread
                        self._fail(exc)
                        graph = None
                    if not graph or not graph.get("nodes"):
                        self._lost(1)  # its tree was not kept (retention)
                        continue
                    graphs.append(with_row(graph, row))
                if not graphs:
                    continue
                try:
                    request, spans = build_request(graphs, self.service, self.host)
                    body = request.SerializeToString()
                except Exception as exc:
                    self._fail(exc)
                    self._lost(len(graphs))
                    continue
                if self._deliver(body):
                    self.sent_sessions += len(graphs)
                    self.sent_spans += spans
                else:
                    self._lost(len(graphs))
                    if self._closing:
                        self._discard_all()  # the receiver is failing: do not hold the exit
        finally:
            store.close()

    def _lost(self, n: int) -> None:
        with self._cond:  # offer() counts overflow from the ingesting thread
            self.undelivered += n

    def _discard_all(self) -> None:
        with self._cond:
            self.undelivered += len(self._queue)
            self._queue.clear()
            if not self._closing:
                # Without a store or the proto package nothing can ever be sent: drop what
                # arrives from now on as well (counted in offer() by a zero-size queue).
                self.queue_sessions = 0

    def _deliver(self, body: bytes) -> bool:
        """POST one request, retrying transient failures; True when the receiver took it."""
        delay = BACKOFF_S
        for attempt in range(ATTEMPTS):
            closing = self._closing
            timeout = TIMEOUT_S
            if closing:
                timeout = min(timeout, max(self._deadline - time.monotonic(), 0.1))
            retry = self._post(body, timeout)
            if retry is None:
                return True
            self.failed_posts += 1
            if not retry or closing or attempt == ATTEMPTS - 1:
                return False
            # Back off, but wake at once when the run ends (then one last attempt).
            with self._cond:
                if not self._closing:
                    self._cond.wait(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
        return False

    def _post(self, body: bytes, timeout: float) -> bool | None:
        """None on success; otherwise whether the failure is worth retrying."""
        req = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/x-protobuf", "User-Agent": "flowagent"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:  # noqa: S310
                self._partial_success(response.read(), response.headers.get("Content-Type"))
            return None
        except urllib.error.HTTPError as exc:
            self._fail(exc)
            return exc.code in _RETRY_STATUS or exc.code >= 500
        except (OSError, ValueError) as exc:  # refused, reset, timed out, bad response
            self._fail(exc)
            return True

    def _partial_success(self, body: bytes, content_type: str | None) -> None:
        """Count spans a receiver took the request of but rejected (OTLP partial success)."""
        if not body or "protobuf" not in (content_type or ""):
            return
        try:
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                ExportTraceServiceResponse,
            )

            response = ExportTraceServiceResponse.FromString(body)
            self.rejected_spans += response.partial_success.rejected_spans
        except Exception:
            pass  # a receiver answering something else than OTLP: the POST itself succeeded

    def _fail(self, exc: BaseException) -> None:
        if not self.first_error:
            self.first_error = f"{type(exc).__name__}: {exc}"
            sys.stderr.write(f"flowagent sidecar: OTLP export to {self.url}: "
                             f"{self.first_error}\n")


class SenderProcess:
    """An :class:`OtlpSender` in a child process, fed session ids through a pipe.

    Reading sessions back and building spans is CPU work; in the sidecar's own process it
    would compete with ingestion for the interpreter lock, while a child can run on another
    core. (On a machine whose cores are all busy the work costs the same either way:
    ``benchmarks/otlp_ingest.py`` measures both.) :meth:`offer` writes to a non-blocking pipe in pieces
    of at most ``PIPE_BUF`` bytes (each written whole or not at all): when the child falls
    behind and the pipe is full, the ids that do not fit are counted as undelivered, never
    waited for.
    """

    def __init__(self, endpoint: str, db_path: str, service: str, host: str | None = None,
                 *, shutdown_s: float = SHUTDOWN_S) -> None:
        import os
        import subprocess

        self.url = traces_url(endpoint)
        self.shutdown_s = shutdown_s
        self.offered = 0
        self.not_written = 0
        self.error = ""
        self._fd = -1
        try:
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-m", "flowagent.sidecar.otlp_sender", "--endpoint", endpoint,
                 "--db", db_path, "--service", service, "--host", host or "",
                 "--shutdown-s", str(shutdown_s)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(os.environ))
            assert self.proc.stdin is not None
            self._fd = self.proc.stdin.fileno()
            os.set_blocking(self._fd, False)
        except OSError as exc:  # no process: every session offered is counted, not sent
            self.proc = None
            self.error = f"cannot start the OTLP sender process: {exc}"
            sys.stderr.write(f"flowagent sidecar: {self.error}\n")

    def offer(self, session_ids: list[str]) -> None:
        import os
        import select

        self.offered += len(session_ids)
        if self.proc is None:
            self.not_written += len(session_ids)
            return
        chunk: list[bytes] = []
        size = 0
        pieces: list[tuple[bytes, int]] = []
        for session_id in session_ids:
            line = session_id.encode() + b"\n"
            if size + len(line) > select.PIPE_BUF and chunk:
                pieces.append((b"".join(chunk), len(chunk)))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            pieces.append((b"".join(chunk), len(chunk)))
        for data, count in pieces:
            try:
                os.write(self._fd, data)
            except (BlockingIOError, BrokenPipeError, OSError):
                self.not_written += count  # pipe full or the child gone: counted, not waited

    def close(self) -> dict[str, Any]:
        import json
        import subprocess

        out = b""
        if self.proc is not None:
            try:
                # communicate() closes stdin (end of input): the child flushes and reports.
                out, _ = self.proc.communicate(timeout=self.shutdown_s + TIMEOUT_S + 5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, _ = self.proc.communicate()
            except (OSError, ValueError) as exc:
                self.error = f"OTLP sender process: {exc}"
                self.proc.kill()
                self.proc.wait()
        totals: dict[str, Any] = {}
        for line in reversed(out.decode(errors="replace").splitlines()):
            try:
                totals = json.loads(line)
                break
            except ValueError:
                continue
        if not totals:  # the child died: nothing it took can be confirmed as sent
            totals = {"otlp_sessions": 0, "otlp_spans": 0, "otlp_rejected_spans": 0,
                      "otlp_undelivered": self.offered - self.not_written,
                      "otlp_error": self.error or "the OTLP sender process ended with "
                                    f"status {self.proc.returncode if self.proc else None}"}
        totals["otlp_endpoint"] = self.url
        totals["otlp_undelivered"] = totals.get("otlp_undelivered", 0) + self.not_written
        return totals


def main(argv: list[str] | None = None) -> int:
    """``python -m flowagent.sidecar.otlp_sender``: session ids on stdin, one per line; at
    end of input, sends what is queued and prints the totals as one JSON line."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m flowagent.sidecar.otlp_sender")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--host", default="")
    p.add_argument("--shutdown-s", type=float, default=SHUTDOWN_S)
    a = p.parse_args(argv)
    sender = OtlpSender(a.endpoint, a.db, a.service, a.host or None, shutdown_s=a.shutdown_s)
    for line in sys.stdin.buffer:
        session_id = line.strip().decode(errors="replace")
        if session_id:
            sender.offer([session_id])
    sys.stdout.write(json.dumps(sender.close()) + "\n")
    sys.stdout.flush()
    return 0


__all__ = ["OtlpSender", "SenderProcess", "check_available", "traces_url"]


if __name__ == "__main__":
    sys.exit(main())
