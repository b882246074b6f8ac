"""``flowagent view`` as a real server process: URL on the first line, loopback, tokens."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flowagent.cli.view import is_loopback, viewer_url

from viewer_data import REPO, clean_env, fetch, serve, view_command

def test_cli_registers_view() -> None:
    cmd = view_command()
    if cmd[-1] != "view":
        pytest.skip("flowagent/cli does not register 'view' yet (see flowagent/cli/view.py "
                    "for the two lines of wiring)")
    assert cmd == [sys.executable, "-m", "flowagent", "view"]


def test_serves_on_loopback_with_port_zero(demo_dir: Path) -> None:
    with serve("--data-dir", str(demo_dir), "--port", "0") as (url, _proc):
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
        status, body = fetch(url + "health")
        assert status == 200 and json.loads(body)["store"] == "ok"
        status, body = fetch(url)
        assert status == 200 and b"Runs" in body
        status, _ = fetch(url + "api/sessions/..%2F..%2Fetc%2Fpasswd")
        assert status == 404


def test_other_address_requires_a_token(demo_dir: Path) -> None:
    with serve("--data-dir", str(demo_dir), "--port", "0", "--host", "0.0.0.0") as (url, _):
        m = re.fullmatch(r"http://0\.0\.0\.0:(\d+)/\?token=([\w-]{20,})", url)
        assert m, url
        port, token = m.groups()
        base = f"http://127.0.0.1:{port}/"
        assert fetch(base + "health")[0] == 401
        assert fetch(base + "api/runs", {"Authorization": "Bearer nope"})[0] == 401
        assert fetch(base + "api/runs", {"Authorization": f"Bearer {token}"})[0] == 200
        assert fetch(base + f"?token={token}")[0] == 200


def test_explicit_token_on_loopback(demo_dir: Path) -> None:
    with serve("--data-dir", str(demo_dir), "--port", "0", "--token", "abc123") as (url, _):
        assert url.endswith("/?token=abc123")
        base = url.split("?")[0]
        assert fetch(base + "health")[0] == 401
        assert fetch(url)[0] == 200


def test_missing_store_still_serves(tmp_path: Path) -> None:
    with serve("--data-dir", str(tmp_path / "nothing-yet"), "--port", "0") as (url, proc):
        status, body = fetch(url + "health")
        assert status == 200 and json.loads(body)["store"] == "missing"
        assert fetch(url)[0] == 503


def test_port_in_use_is_a_clear_error(demo_dir: Path) -> None:
    with serve("--data-dir", str(demo_dir), "--port", "0") as (url, _):
        port = url.rsplit(":", 1)[1].strip("/")
        proc = subprocess.run([*view_command(), "--data-dir", str(demo_dir), "--port", port],
                              cwd=REPO, env=clean_env(), capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 2
        assert "cannot listen" in proc.stderr and "--port" in proc.stderr


def test_helpers() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.0.0.5")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert not is_loopback("example.com")
    assert viewer_url("::1", 80, None) == "http://[::1]:80/"
    assert viewer_url("127.0.0.1", 8765, "t") == "http://127.0.0.1:8765/?token=t"
