"""Every common web stack gives one session per request, rooted at
``<request>:METHOD /route/template`` with the HTTP status as its output: FastAPI driven
in-process by TestClient and served by uvicorn (from the program's main() and from the
uvicorn command), Django through its WSGI and ASGI handlers. The servers are real, on
127.0.0.1, in subprocesses; the test is their HTTP client."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from helpers import (PROGRAMS, _clean_env, flowagent_cmd, free_port, port_accepting, record,
                     wait_until)

pytestmark = pytest.mark.e2e

WEB = PROGRAMS / "web"


def _web_files() -> dict[str, str]:
    return {str(p.relative_to(WEB)): p.read_text() for p in WEB.rglob("*.py")}


def _request(method: str, url: str) -> int:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code


class Server:
    """A program serving HTTP under ``flowagent run``, stopped with SIGTERM like a service."""

    def __init__(self, tmp_path: Path, argv: list[str], backend: str = "wrap") -> None:
        for name, text in _web_files().items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(text)
        self.port = free_port()
        self.data = tmp_path / "data"
        self.base = f"http://127.0.0.1:{self.port}"
        env = _clean_env({"PATH": os.path.dirname(sys.executable) + os.pathsep
                          + os.environ["PATH"], "PYTHONPATH": str(tmp_path)})
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.proc = subprocess.Popen(
            flowagent_cmd("run", "--data-dir", str(self.data), "--backend", backend, "--",
                          *argv),
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait_ready(self, path: str) -> None:
        wait_until(lambda: port_accepting(self.port), f"{self.base}{path} answering", timeout=60,
                   proc=self.proc)

    def stop(self) -> str:
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=60)
        return err.decode()

    def sessions(self) -> list[dict[str, Any]]:
        from flowagent.store.sqlite import SQLiteStore

        store = SQLiteStore(str(self.data / "flowagent.db"), readonly=True)
        try:
            out = []
            for s in store.sessions(limit=10_000):
                g = store.session_graph(s["session_id"])
                out.append({**s, "tree": g})
            return out
        finally:
            store.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    started: list[Server] = []

    def start(argv: list[str], backend: str = "wrap") -> Server:
        s = Server(tmp_path, argv, backend)
        started.append(s)
        return s

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.communicate(timeout=30)


def _requests(sessions: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in sessions:
        if s["name"].startswith("<request>:"):
            by_name.setdefault(s["name"], []).append(s)
    return by_name


def _root(s: dict[str, Any]) -> dict[str, Any]:
    return s["tree"]["nodes"][0]


def _functions(s: dict[str, Any]) -> list[str]:
    return [n["function_name"] for n in s["tree"]["nodes"]]


def _own_functions(s: dict[str, Any]) -> list[str]:
    """The session's functions without its outgoing HTTP calls."""
    return [f for f in _functions(s) if not f.startswith("<http>:")]


def _check_fastapi(by_name: dict[str, list[dict[str, Any]]]) -> None:
    items = by_name["<request>:GET /items/{sku}"]
    ok = [s for s in items if _root(s)["output_shape"] == "HTTP 200"]
    missing = [s for s in items if _root(s)["output_shape"] == "HTTP 404"]
    assert len(ok) == 1 and len(missing) == 1
    assert ok[0]["result"] == "success" and missing[0]["result"] == "partial"
    # the dependency and the view run inside the request, under its root
    assert {"shopapi:current_user", "shopapi:get_item", "catalog:price"} <= set(_functions(ok[0]))
    [order] = by_name["<request>:POST /orders/{oid}"]
    # the background task runs after the response was sent, still inside the request
    assert {"shopapi:create_order", "shopapi:audit", "catalog:remember"} <= set(_functions(order))
    [boom] = by_name["<request>:GET /boom"]
    assert boom["result"] == "error" and "catalog:ratio" in _functions(boom)
    [export] = by_name["<request>:GET /export"]
    # the streamed body's generator runs inside the request that returned it
    assert _functions(export).count("catalog:price") == 2 and "catalog:lines" in _functions(export)
    assert _root(export)["output_shape"] == "HTTP 200"
    # a method outside the standard list and an unrouted path never become names
    assert "<request>:OTHER /items/{sku}" in by_name
    assert "<request>:GET <unmatched>" in by_name
    assert all(len(name) < 100 for name in by_name)


def test_fastapi_in_process_test_client(tmp_path: Path, backend: str) -> None:
    rec = record(WEB / "testclient_prog.py", tmp_path, backend=backend,
                 extra_files={k: v for k, v in _web_files().items()
                              if k != "testclient_prog.py"})
    assert rec.stdout == "200 404 200 500 405 404 A1,10;B2,25;\n"
    sessions = [{**s, "tree": rec.tree(s["session_id"])} for s in rec.sessions()]
    by_name = _requests(sessions)
    _check_fastapi(by_name)
    # main() drives the client: the requests are their own sessions, main holds only the
    # client calls that made them
    [main] = [s for s in sessions if s["name"] == "__main__:main"]
    assert _own_functions(main) == ["__main__:main"]
    assert len(_functions(main)) == 8 and "<http>:GET testserver:80/items/A1" in _functions(main)
    # routes are named before the calls under them end: every caller in the merged graph is
    # a node of it (no edge from a request's provisional name)
    merged = rec.merged()
    nodes = {n["function_name"] for n in merged["nodes"]}
    assert {e["from"] for e in merged["edges"]} <= nodes
    assert "<request>:GET /items/{sku}" in nodes


def _drive_fastapi(srv: Server) -> None:
    srv.wait_ready("/items/A1")
    b = srv.base
    assert [_request("GET", f"{b}/items/A1"), _request("GET", f"{b}/items/NOPE"),
            _request("POST", f"{b}/orders/7"), _request("GET", f"{b}/boom"),
            _request("BREW", f"{b}/items/A1"), _request("GET", f"{b}/no/such/" + "x" * 5000),
            _request("GET", f"{b}/export")] == [200, 404, 200, 500, 405, 404, 200]


@pytest.mark.skipif(shutil.which("uvicorn", path=os.path.dirname(sys.executable)) is None,
                    reason="uvicorn is not installed next to this interpreter")
def test_fastapi_under_the_uvicorn_command(server: Any) -> None:
    srv = server(["uvicorn", "shopapi:app", "--port", "{port}", "--log-level", "warning"])
    _drive_fastapi(srv)
    err = srv.stop()
    assert srv.proc.returncode in (0, -15), err  # uvicorn re-raises SIGTERM after shutdown
    _check_fastapi(_requests(srv.sessions()))


def test_fastapi_served_from_the_programs_main(server: Any, backend: str) -> None:
    srv = server([sys.executable, "uvicorn_main.py", "{port}"], backend)
    _drive_fastapi(srv)
    err = srv.stop()
    assert srv.proc.returncode in (0, -15), err  # uvicorn re-raises SIGTERM after shutdown
    sessions = srv.sessions()
    _check_fastapi(_requests(sessions))
    # uvicorn.run() blocks in main() for the whole life of the server; no request is
    # folded into that session
    [main] = [s for s in sessions if s["name"] == "__main__:main"]
    assert _functions(main) == ["__main__:main"]


def _check_django(by_name: dict[str, list[dict[str, Any]]]) -> None:
    items = by_name["<request>:GET /api/items/<str:sku>/"]
    assert sorted(_root(s)["output_shape"] for s in items) == ["HTTP 200", "HTTP 404"]
    assert all("djsite.views:item" in _functions(s) for s in items)
    [fail] = by_name["<request>:GET /api/fail/"]
    assert fail["result"] == "error" and "catalog:ratio" in _functions(fail)
    assert _root(fail)["exception_type"] == "HTTP 500"
    [quote] = by_name["<request>:GET /api/quotes/<str:sku>/"]  # an async view
    assert "djsite.views:quote" in _functions(quote) and "catalog:price" in _functions(quote)
    assert _root(quote)["output_shape"] == "HTTP 200"
    [health] = by_name["<request>:GET /health"]
    assert health["result"] == "success" and _root(health)["output_shape"] == "HTTP 200"
    assert {s["result"] for s in by_name["<request>:GET <unmatched>"]} == {"success"}
    assert "<request>:OTHER /health" in by_name


def _drive_django(srv: Server) -> None:
    srv.wait_ready("/health")
    b = srv.base
    assert [_request("GET", f"{b}/health"), _request("GET", f"{b}/api/items/A1/"),
            _request("GET", f"{b}/api/items/NOPE/"), _request("GET", f"{b}/api/fail/"),
            _request("GET", f"{b}/nowhere"), _request("BREW", f"{b}/health"),
            _request("GET", f"{b}/api/quotes/A1/")] \
        == [200, 200, 404, 500, 404, 200, 200]


def test_django_wsgi_handler(server: Any, backend: str) -> None:
    srv = server([sys.executable, "django_wsgi.py", "{port}"], backend)
    _drive_django(srv)
    err = srv.stop()
    assert srv.proc.returncode in (0, -15), err
    _check_django(_requests(srv.sessions()))


@pytest.mark.skipif(shutil.which("uvicorn", path=os.path.dirname(sys.executable)) is None,
                    reason="uvicorn is not installed next to this interpreter")
def test_django_asgi_handler_under_uvicorn(server: Any) -> None:
    srv = server(["uvicorn", "djsite.asgi:application", "--port", "{port}",
                  "--log-level", "warning"])
    _drive_django(srv)
    err = srv.stop()
    assert srv.proc.returncode in (0, -15), err  # uvicorn re-raises SIGTERM after shutdown
    _check_django(_requests(srv.sessions()))


def test_flask_streaming_errors_and_unknown_methods(tmp_path: Path, backend: str) -> None:
    rec = record(WEB / "flask_prog.py", tmp_path, backend=backend,
                 extra_files={"catalog.py": (WEB / "catalog.py").read_text()})
    assert rec.stdout == "200 500 405 404 A1,10;B2,25;\n"
    by_name = _requests([{**s, "tree": rec.tree(s["session_id"])} for s in rec.sessions()])
    assert set(by_name) == {"<request>:GET /items/<sku>", "<request>:GET /boom",
                            "<request>:OTHER <unmatched>", "<request>:GET <unmatched>",
                            "<request>:GET /export"}
    [boom] = by_name["<request>:GET /boom"]
    assert boom["result"] == "error" and _root(boom)["exception_type"] == "HTTP 500"
    [export] = by_name["<request>:GET /export"]
    assert _functions(export).count("catalog:price") == 2
    assert _root(export)["output_shape"] == "HTTP 200"
    assert _root(by_name["<request>:OTHER <unmatched>"][0])["output_shape"] == "HTTP 405"


def test_fastapi_concurrent_requests_through_httpx_in_process(tmp_path: Path,
                                                              backend: str) -> None:
    rec = record(WEB / "httpx_prog.py", tmp_path, backend=backend,
                 extra_files={k: v for k, v in _web_files().items() if k != "httpx_prog.py"})
    assert rec.stdout == "[200, 200, 200]\n"
    sessions = [{**s, "tree": rec.tree(s["session_id"])} for s in rec.sessions()]
    by_name = _requests(sessions)
    assert sorted((n, len(v)) for n, v in by_name.items()) == [
        ("<request>:GET /items/{sku}", 2), ("<request>:POST /orders/{oid}", 1)]
    for s in by_name["<request>:GET /items/{sku}"]:  # gathered requests never mix
        assert _functions(s).count("catalog:price") == 1
    [main] = [s for s in sessions if s["name"] == "__main__:main"]
    assert _own_functions(main) == ["__main__:main"]


def test_websocket_is_one_session(tmp_path: Path) -> None:
    rec = record(WEB / "ws_prog.py", tmp_path,
                 extra_files={"catalog.py": (WEB / "catalog.py").read_text()})
    assert rec.stdout == "10\n"
    by_name = _requests([{**s, "tree": rec.tree(s["session_id"])} for s in rec.sessions()])
    [ws] = by_name["<request>:GET /ws/{room}"]
    assert _functions(ws) == ["<request>:GET /ws/{room}", "__main__:chat", "catalog:price"]
    assert _root(ws)["output_shape"] == "HTTP 101"
