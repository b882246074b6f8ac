"""Outgoing HTTP calls are calls of the session that makes them, named after a route-like
template of the URL (no query values, ids as placeholders) with the status as output: a
recorded client (urllib.request, http.client, requests) against a real server on 127.0.0.1 in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from helpers import PROGRAMS, _clean_env, record

pytestmark = pytest.mark.e2e

WEB = PROGRAMS / "web"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[int]:
    """The FastAPI app under plain uvicorn (not recorded): the other side of the calls."""
    root = tmp_path / "service"
    root.mkdir()
    for name in ("shopapi.py", "catalog.py"):
        (root / name).write_text((WEB / name).read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "shopapi:app", "--port",
                             str(port), "--log-level", "warning"], cwd=root,
                            env=_clean_env({"PYTHONPATH": str(root)}),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    proc.stderr.read().decode() if proc.poll() is not None else "no answer"
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_outgoing_calls_are_recorded_with_their_status(tmp_path: Path, backend: str,
                                                        service: int) -> None:
    rec = record(WEB / "http_client_prog.py", tmp_path, backend=backend, args=[str(service)])
    assert rec.stdout == "404 404 500 200 404\n"
    [main] = [s for s in rec.sessions() if s["name"] == "__main__:main"]
    g = rec.tree(main["session_id"])
    host = f"127.0.0.1:{service}"
    calls = [(n["function_name"], n["output_shape"], n["result_type"], n["exception_type"])
             for n in g["nodes"] if n["function_name"].startswith("<http>:")]
    assert calls == [
        (f"<http>:GET {host}/items/{{int}}", "HTTP 404", "success", None),
        (f"<http>:GET {host}/items/{{int}}", "HTTP 404", "success", None),
        (f"<http>:GET {host}/boom", "HTTP 500", "error", "HTTP 500"),
        (f"<http>:POST {host}/orders/{{int}}", "HTTP 200", "success", None),
        (f"<http>:GET {host}/items/{{int}}", "HTTP 404", "success", None)]
    by_id = {n["id"]: n for n in g["nodes"]}
    parents = [by_id[n["parent_id"]]["function_name"] for n in g["nodes"]
               if n["function_name"].startswith("<http>:")]
    assert parents == ["__main__:fetch"] * 3 + ["__main__:post_order", "__main__:via_requests"]
    assert not any("secret" in n["function_name"] or "abc" in n["function_name"]
                   for n in g["nodes"])
