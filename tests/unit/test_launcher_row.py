"""The launcher's part of the run's row reaches the sidecar as one JSON line on its stdin
(flowagent/sidecar/__main__.py ``_launcher_row``): a usable line becomes a RunEnd, anything
else None (the launcher then stores the row itself)."""

from __future__ import annotations

import json

import pytest

from flowagent.sidecar.__main__ import _launcher_row
from flowagent.store.api import RunEnd


def _line(row: object) -> list[bytes]:
    data = json.dumps({"run": row}).encode() + b"\n"
    return [data[:7], data[7:]]  # as the pipe may split it


def test_the_launchers_row_becomes_a_run_end() -> None:
    sent = RunEnd(("app.py", "--flag"), "/work", "wrap", 123, -9, "")
    assert _launcher_row(_line(sent._asdict())) == sent


@pytest.mark.parametrize("received", [
    [], [b"not json"], [b"[1, 2]"], [b'{"other": 1}'],
    _line({"argv": ["app.py"], "cwd": "/", "backend": "wrap", "ended_ns": 1}),
    _line({"argv": "app.py", "cwd": "/", "backend": "wrap", "ended_ns": 1, "exit_code": 0}),
    _line({"argv": [1], "cwd": "/", "backend": "wrap", "ended_ns": 1, "exit_code": 0}),
    _line({"argv": ["a"], "cwd": None, "backend": "wrap", "ended_ns": 1, "exit_code": 0}),
    _line({"argv": ["a"], "cwd": "/", "backend": "wrap", "ended_ns": "1", "exit_code": 0}),
    _line({"argv": ["a"], "cwd": "/", "backend": "wrap", "ended_ns": 1, "exit_code": True}),
])
def test_anything_else_is_refused(received: list[bytes]) -> None:
    assert _launcher_row(received) is None


def test_the_launchers_command_line_is_masked_where_it_is_stored() -> None:
    # The launcher sends it as typed (masking there would load re beside the program).
    sent = RunEnd(("app.py", "--password", "hunter2", "API_TOKEN=abc"), "/w", "wrap", 1, 0, "")
    assert _launcher_row(_line(sent._asdict())) == sent._replace(
        argv=("app.py", "--password", "***", "API_TOKEN=***"))
