"""Does live OpenTelemetry output slow the sidecar's ingestion?
``python otlp_ingest.py DATA_DIR [REPEATS]``.

Replays a finished run's rings into a fresh store (``replay.py``), three ways:
without OTLP output (the baseline); with the sender POSTing to a real OTLP/HTTP receiver (a
separate process), once as a thread of the ingesting process
(:class:`~flowagent.sidecar.otlp_sender.OtlpSender`) and once as the child process the sidecar
uses (:class:`~flowagent.sidecar.otlp_sender.SenderProcess`); and with the sender pointed at a
closed port (every POST refused, retried with backoff).
The ingest time is the drain loop alone; the sender's end-of-run flush is reported apart.

Prints one JSON line: median ingest seconds and events/s per mode, each mode's ingest time as
a ratio of the baseline, and what the sender delivered and counted as undelivered.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from flowagent.sidecar.__main__ import tune_gc  # noqa: E402
from flowagent.sidecar.otlp_sender import OtlpSender, SenderProcess  # noqa: E402

import wire  # noqa: E402
from replay import drain, fresh_run  # noqa: E402

RECEIVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replay(rings: list[str], mode: str, endpoint: str | None) -> dict:
    with fresh_run(rings) as run:
        sender = None
        if endpoint:
            kind = SenderProcess if mode.endswith("process") else OtlpSender
            sender = kind(endpoint, run.db, "bench", shutdown_s=60.0)
        t0 = time.perf_counter()
        events = drain(run.ingestor(), sender.offer if sender is not None else None)
        out = {"events": events, "seconds": time.perf_counter() - t0}
        if sender is not None:
            t1 = time.perf_counter()
            out.update(sender.close(), flush_seconds=time.perf_counter() - t1)
        return out


def main() -> None:
    data_dir = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    rings = wire.ring_files(data_dir)
    if not rings:
        print(json.dumps({"error": f"no ring files under {data_dir}"}))
        return
    tune_gc()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE)
    try:
        port = int(receiver.stdout.readline())
        up, down = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{_closed_port()}"
        modes = {"baseline": None, "receiver_thread": up, "receiver_process": up,
                 "receiver_down_process": down}
        out: dict = {}
        for _ in range(repeats):  # interleaved, so load changes hit every mode alike
            for name, endpoint in modes.items():
                out.setdefault(name, []).append(replay(rings, name, endpoint))
    finally:
        receiver.kill()
        receiver.wait()
    report: dict = {}
    base = statistics.median(r["seconds"] for r in out["baseline"])
    for name, runs in out.items():
        secs = statistics.median(r["seconds"] for r in runs)
        last = runs[-1]
        report[name] = {"events": last["events"], "ingest_seconds": secs,
                        "events_per_s": last["events"] / secs, "ratio_to_baseline": secs / base,
                        **{k: last[k] for k in ("otlp_sessions", "otlp_spans",
                                                "otlp_undelivered", "flush_seconds") if k in last}}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
