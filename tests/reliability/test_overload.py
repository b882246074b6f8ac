"""Overload: the program produces events far faster than the sidecar ingests them.

The sidecar is stopped (SIGSTOP) for the whole run, so it ingests nothing while a request
loop records as fast as it can into a small ring. The program must not block (its request
latency is measured and reported next to the same run with a working sidecar and without the
agent; only a loose sanity bound is asserted), its memory must stay bounded (peak RSS of a
small and a 10x larger workload, reported), and every dropped event must be counted and shown
in the summary, the store and the viewer.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from helpers import run_python
from reliability_support import (
    PROGRAMS,
    accounting,
    launch,
    program_pid,
    sidecar_pid,
    wait_gone,
)

pytestmark = pytest.mark.e2e

CALLS = 20  # recorded calls per request (+ the request's own)


def _serve(tmp: Path, name: str, requests: int, mode: str) -> dict[str, Any]:
    """Run the request loop: ``plain`` python, ``agent`` (working sidecar) or ``stopped``
    (agent, 64 KiB ring, sidecar stopped until the program has exited)."""
    report = tmp / f"{name}.json"
    args = ["server.py", str(requests), str(CALLS), str(report)]
    out: dict[str, Any] = {}
    if mode == "plain":
        proc = run_python(args, tmp, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        out["stdout"] = proc.stdout
    else:
        data = tmp / f"data-{name}"
        go = tmp / f"go-{name}"
        ring = ["--ring-size", "64KiB"] if mode == "stopped" else []
        run = launch(["run", "--data-dir", str(data), *ring, *args, str(go)], tmp)
        stopped = None
        try:
            run.wait_line(b"ready")
            if mode == "stopped":
                stopped = sidecar_pid(run.pid)
                prog = program_pid(run.pid)
                os.kill(stopped, signal.SIGSTOP)
            go.touch()
            run.wait_line(b"served", timeout=120)
            if stopped is not None:
                wait_gone(prog, timeout=60)  # the program ended while nothing was ingested
                os.kill(stopped, signal.SIGCONT)
                stopped = None
            assert run.wait(timeout=180) == 0, run.stderr.decode()
        finally:
            if stopped is not None:
                os.kill(stopped, signal.SIGCONT)
            run.kill()
        out.update(stdout=run.stdout, stderr=run.stderr.decode(), data=data,
                   acc=accounting(data))
    out.update(json.loads(report.read_text()))
    return out


def _viewer_dropped(data: Path, run_id: str) -> tuple[int, str]:
    """Dropped events as the viewer's stats API reports them, and its stats page."""
    from flowagent_viewer import create_app
    from flowagent_viewer.fmt import number

    client = create_app({"DATA_DIR": str(data)}).test_client()
    api = client.get(f"/api/runs/{run_id}/stats")
    assert api.status_code == 200
    page = client.get(f"/runs/{run_id}/stats")
    assert page.status_code == 200
    body = api.get_json()
    loss = body.get("loss") or body.get("data_loss")  # (the key was renamed once)
    html = page.get_data(as_text=True)
    assert number(loss["dropped_events"]) in html and "dropped events" in html.lower()
    return loss["dropped_events"], html


def _check_overload(tmp: Path, small: int, large: int, figure: Any) -> None:
    shutil.copy(PROGRAMS / "server.py", tmp)
    plain = _serve(tmp, "plain", small, "plain")
    plain_large = _serve(tmp, "plain-large", large, "plain")
    agent = _serve(tmp, "agent", small, "agent")
    over = _serve(tmp, "stopped", small, "stopped")
    over_large = _serve(tmp, "stopped-large", large, "stopped")

    assert agent["stdout"] == over["stdout"] == plain["stdout"]
    assert over_large["stdout"] == plain_large["stdout"]
    assert agent["acc"]["dropped"] == 0
    for r, n in ((over, small), (over_large, large)):
        acc = r["acc"]
        produced = n * (CALLS + 1)
        # Every event is accounted for: stored or counted as dropped, and the count shows
        # in the summary, the store and the viewer (API and page) as the same number.
        assert acc["produced"] == produced == acc["stored"] + acc["dropped"]
        assert acc["dropped"] > 0
        assert (f"{acc['dropped']} events were dropped because a ring was full; "
                "raise --ring-size") in r["stderr"]
        assert f"{acc['dropped']} dropped events" in r["stderr"]
        api_dropped, _ = _viewer_dropped(r["data"], acc["run_id"])
        assert api_dropped == acc["dropped"]
    # Never blocks: a producer waiting on a stopped consumer would never finish; a loose
    # bound only (timing on a shared 2-core machine is noisy).
    assert over["p50_us"] < 10 * agent["p50_us"] + 1000
    # Memory stays bounded: 10x the events to drop costs no 10x memory.
    growth_kib = over_large["maxrss_kib"] - over["maxrss_kib"]
    assert growth_kib < 64 * 1024

    def lat(r: dict[str, Any]) -> str:
        return f"p50 {r['p50_us']:.1f} / p99 {r['p99_us']:.0f} us"

    def mib(r: dict[str, Any]) -> str:
        return f"{r['maxrss_kib'] / 1024:.1f}"

    o, ol = over["acc"], over_large["acc"]
    figure(f"overload ({CALLS + 1} calls/request, sidecar stopped, 64 KiB ring): request "
           f"latency plain {lat(plain)}, agent {lat(agent)}, agent+stopped sidecar "
           f"{lat(over)}; {small} requests: {o['dropped']} of {o['produced']} events dropped, "
           f"{large} requests: {ol['dropped']} of {ol['produced']} dropped, all counted in "
           f"summary = store = viewer; peak RSS plain {mib(plain)}/{mib(plain_large)} MiB, "
           f"agent {mib(over)}/{mib(over_large)} MiB (small/large)",
           plain=plain, agent=agent, stopped=over, stopped_large=over_large)


def _strip(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k not in ("stdout", "stderr", "data", "acc")}


def test_overload_never_blocks_bounded_memory_drops_counted(tmp_path: Path, figure) -> None:
    _check_overload(tmp_path, 4_000, 40_000,
                    lambda text, **kw: figure(text, **{k: _strip(v) for k, v in kw.items()}))


@pytest.mark.slow
def test_overload_100x(tmp_path: Path, figure) -> None:
    _check_overload(tmp_path, 2_000, 200_000,
                    lambda text, **kw: figure(text, **{k: _strip(v) for k, v in kw.items()}))
