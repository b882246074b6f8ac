"""Requests that cross services: a Flask app (front) calls a FastAPI app under uvicorn
(pricing) that calls a third service (stock, Flask) over HTTP, each recorded by its own
``flowagent run`` (front in one data directory, pricing and stock in another). Read back
together, each checkout is one distributed session: every hop a subtree under the client
call that made it, and the services' functions kept apart. The servers are real, on
127.0.0.1, in subprocesses; the test is the outside client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from helpers import (PROGRAMS, _clean_env, flowagent_cmd, free_port, port_accepting, run_cli,
                     wait_until)

pytestmark = pytest.mark.e2e

SERVICES = PROGRAMS / "services"
TRACEPARENT = r"00-[0-9a-f]{32}-[0-9a-f]{16}-01"


class Service:
    """A program serving HTTP under ``flowagent run``, stopped with SIGTERM like a service."""

    def __init__(self, root: Path, data: Path, argv: list[str], env: dict[str, str],
                 options: list[str] = ()) -> None:
        self.port = free_port()
        self.data = data
        self.base = f"http://127.0.0.1:{self.port}"
        full = _clean_env({"PATH": os.path.dirname(sys.executable) + os.pathsep
                           + os.environ["PATH"], "PYTHONPATH": str(root), **env})
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.proc = subprocess.Popen(
            flowagent_cmd("run", "--data-dir", str(data), *options, "--", *argv), cwd=root,
            env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait_ready(self) -> None:
        wait_until(lambda: port_accepting(self.port), f"{self.base} answering", timeout=90,
                   proc=self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=90)
        assert self.proc.returncode in (0, -15), err.decode()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Any]:
    root = tmp_path / "app"
    root.mkdir()
    for p in SERVICES.glob("*.py"):
        (root / p.name).write_text(p.read_text())
    started: list[Service] = []

    def start(data: str, argv: list[str], env: dict[str, str] | None = None,
              options: list[str] = ()) -> Service:
        s = Service(root, tmp_path / data, argv, env or {}, list(options))
        started.append(s)
        return s

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.communicate(timeout=30)


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def _tree(g: dict[str, Any]) -> list[tuple[int, str]]:
    """(depth, function) of every call, depth-first in start order."""
    kids: dict[Any, list[dict[str, Any]]] = {}
    for n in sorted(g["nodes"], key=lambda n: (n["timestamp_start"], n["id"])):
        kids.setdefault(n["parent_id"], []).append(n)
    out: list[tuple[int, str]] = []

    def walk(parent: Any, depth: int) -> None:
        for n in kids.get(parent, ()):
            out.append((depth, n["function_name"]))
            walk(n["id"], depth + 1)

    walk(None, 0)
    return out


def test_three_services_are_one_distributed_session_per_request(services: Any,
                                                                tmp_path: Path) -> None:
    stock = services("data-back", [sys.executable, "stock.py", "{port}"])
    pricing = services("data-back", ["uvicorn", "pricing:app", "--port", "{port}",
                                     "--log-level", "warning"],
                       {"STOCK_URL": stock.base}, ["--service", "pricing"])
    front = services("data-front", [sys.executable, "front.py", "{port}"],
                     {"PRICING_URL": pricing.base})
    for s in (stock, pricing, front):
        s.wait_ready()
    answers = [_get(f"{front.base}/checkout/7"), _get(f"{front.base}/checkout/20")]
    assert [a["total"] for a in answers] == [10 * 3 + 10 * 4, 10 * 1 + 10 * 2]
    import re

    # what stock received: a W3C traceparent the agent added in pricing
    assert all(re.fullmatch(TRACEPARENT, a["seen"]) for a in answers)
    for s in (front, pricing, stock):
        s.stop()

    from flowagent.reports.stitch import RunRef, sessions
    from flowagent.store.api import db_path
    from flowagent.store.sqlite import SQLiteStore

    front_store = SQLiteStore(db_path(str(tmp_path / "data-front")), readonly=True)
    back_store = SQLiteStore(db_path(str(tmp_path / "data-back")), readonly=True)
    back_runs = sorted(back_store.runs(), key=lambda r: r["service"])
    assert [r["service"] for r in back_runs] == ["pricing", "stock"]
    # flowagent export over the three runs, of two data directories
    run_args = ["--run", str(tmp_path / "data-front")] + [
        a for r in back_runs for a in ("--run", f"{tmp_path / 'data-back'}:{r['run_id']}")]
    out = run_cli(["export", "--format", "json", *run_args], tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    assert front_store.runs()[0]["service"] == "front"
    refs = [RunRef.of(front_store, front_store.latest_run())] + \
        [RunRef.of(back_store, r["run_id"]) for r in back_runs]
    assert [r.service for r in refs] == ["front", "pricing", "stock"]
    stitched = [g for g in sessions(refs) if "<request>" in g["name"]]
    # each checkout is one session; no pricing or stock request is left on its own
    assert [g["name"] for g in stitched] == ["front:<request>:GET /checkout/<int:oid>"] * 2
    pricing_host = f"127.0.0.1:{pricing.port}"
    stock_host = f"127.0.0.1:{stock.port}"
    for g in stitched:
        assert g["services"] == ["front", "pricing", "stock"] and g["hops"] == 4
        assert _tree(g) == [
            (0, "front:<request>:GET /checkout/<int:oid>"),
            (1, "front:__main__:checkout"),
            (2, "front:__main__:quote"),
            (3, f"front:<http>:GET {pricing_host}/price/{{int}}"),
            (4, "pricing:<request>:GET /price/{oid}"),
            (5, "pricing:pricing:price"),
            (6, f"pricing:<http>:GET {stock_host}/stock/{{int}}"),
            (7, "stock:<request>:GET /stock/<int:oid>"),
            (8, "stock:__main__:stock"),
            (9, "stock:__main__:count_for"),
            (6, "pricing:pricing:price_of"),
            (2, "front:__main__:quote"),
            (3, f"front:<http>:GET {pricing_host}/price/{{int}}"),
            (4, "pricing:<request>:GET /price/{oid}"),
            (5, "pricing:pricing:price"),
            (6, f"pricing:<http>:GET {stock_host}/stock/{{int}}"),
            (7, "stock:<request>:GET /stock/<int:oid>"),
            (8, "stock:__main__:stock"),
            (9, "stock:__main__:count_for"),
            (6, "pricing:pricing:price_of"),
        ]
        # each hop keeps its own process (its own timeline)
        assert len({n["pid"] for n in g["nodes"]}) == 3
        statuses = {n["output_shape"] for n in g["nodes"] if "<http>" in n["function_name"]}
        assert statuses == {"HTTP 200"}
    # the merged graph keeps the services' functions apart
    merged = json.loads(out.stdout)
    names = {n["function_name"] for n in merged["nodes"]}
    assert {"front:__main__:main", "stock:__main__:main", "front:__main__:checkout",
            "pricing:pricing:price", "stock:__main__:count_for"} <= names
    assert not any(n.startswith("__main__:") for n in names)

    # one session's export shows its hops too (a sequence diagram per service)
    seq = run_cli(["export", "--format", "mermaid", "--data-dir", str(tmp_path / "data-front"),
                   "--session", stitched[0]["session_id"], *run_args], tmp_path, timeout=120)
    assert seq.returncode == 0, seq.stderr.decode()
    assert "pricing:pricing" in seq.stdout.decode() and "stock:__main__" in seq.stdout.decode()
    alone = run_cli(["export", "--format", "mermaid", "--data-dir", str(tmp_path / "data-front"),
                     "--session", stitched[0]["session_id"]], tmp_path, timeout=120)
    assert alone.returncode == 0 and "pricing" not in alone.stdout.decode().replace(
        f"{pricing_host}/price", "")

    # trace formats show the distributed sessions too
    chrome = run_cli(["export", "--format", "chrome", *run_args], tmp_path, timeout=120)
    assert chrome.returncode == 0, chrome.stderr.decode()
    events = json.loads(chrome.stdout)
    events = events["traceEvents"] if isinstance(events, dict) else events
    spans = [e for e in events if e.get("ph") == "X"]
    assert sum(e["name"] == "stock:__main__:count_for" for e in spans) == 4
    assert len({e["pid"] for e in spans}) == 3


def test_traceparent_round_trip_through_httpx_and_aiohttp(services: Any,
                                                          tmp_path: Path) -> None:
    stock = services("data", [sys.executable, "stock.py", "{port}"])
    stock.wait_ready()
    env = _clean_env({"PYTHONPATH": str(tmp_path / "app")})
    client = subprocess.run(
        flowagent_cmd("run", "--data-dir", str(tmp_path / "data"), "aioclient.py",
                      str(stock.port)),
        cwd=tmp_path / "app", env=env, capture_output=True, timeout=120)
    assert client.returncode == 0, client.stderr.decode()
    seen = client.stdout.decode().split()
    own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333{}-01"
    import re

    # the agent's header where the program sent none (aiohttp, httpx async, urllib, httpx
    # sync); the program's own header unchanged (aiohttp, httpx async, http.client)
    added = [seen[i] for i in (0, 2, 4, 6)]
    assert all(re.fullmatch(TRACEPARENT, h) for h in added)
    assert [seen[1], seen[3], seen[5]] == [own.format(1), own.format(2), own.format(3)]
    # one trace per session: every added header carries the client session's trace id, and
    # each call its own span id
    assert len({h.split("-")[1] for h in added}) == 1
    assert len({h.split("-")[2] for h in added}) == 4
    stock.stop()

    from flowagent.reports.stitch import RunRef, sessions
    from flowagent.store.api import db_path
    from flowagent.store.sqlite import SQLiteStore

    store = SQLiteStore(db_path(str(tmp_path / "data")), readonly=True)
    runs = sorted(store.runs(), key=lambda r: r["service"])
    assert [r["service"] for r in runs] == ["aioclient", "stock"]
    refs = [RunRef.of(store, r["run_id"]) for r in runs]
    [main] = [g for g in sessions(refs) if g["name"] == "aioclient:__main__:main"]
    calls = [n for n in main["nodes"] if "<http>" in n["function_name"]]
    assert [n["output_shape"] for n in calls] == ["HTTP 200"] * 7
    # every call's request is under it: the program's own traceparent names the call too
    by_parent: dict[Any, list[str]] = {}
    for n in main["nodes"]:
        by_parent.setdefault(n["parent_id"], []).append(n["function_name"])
    assert [by_parent.get(n["id"]) for n in calls] == [
        ["stock:<request>:GET /stock/<int:oid>"]] * 7
    assert f"aioclient:<http>:GET 127.0.0.1:{stock.port}/stock/{{int}}" == \
        calls[0]["function_name"]

    # the viewer: the client's session offers the distributed session, and shows it
    from flowagent_viewer import create_app

    web = create_app({"DATA_DIR": str(tmp_path / "data")}).test_client()
    client_run = runs[0]["run_id"]
    page = web.get(f"/sessions/{main['session_id']}").get_data(as_text=True)
    assert 'id="to-distributed"' in page and runs[1]["run_id"] in page
    alone = web.get(f"/api/sessions/{main['session_id']}/tree").get_json()["rows"]
    assert not any("<request>" in r["function_name"] for r in alone)
    query = f"run={client_run}&run={runs[1]['run_id']}"
    rows = web.get(f"/api/sessions/{main['session_id']}/tree?{query}").get_json()["rows"]
    requests = [r for r in rows if r["function_name"] == "stock:<request>:GET /stock/<int:oid>"]
    assert len(requests) == 7
    assert all(rows[r["parent"]]["function_name"].startswith("aioclient:<http>:GET")
               for r in requests)
    timeline = web.get(f"/api/sessions/{main['session_id']}/timeline?{query}").get_json()
    assert len({t["label"].split(" · ")[0] for t in timeline["tracks"]}) == 2  # two processes
    seq = web.get(f"/api/sessions/{main['session_id']}/sequence?{query}").get_json()
    assert {"aioclient:__main__", "stock:__main__"} <= {x["label"] for x in seq["lifelines"]}
    page = web.get(f"/sessions/{main['session_id']}/sequence?{query}")
    assert page.status_code == 200
