"""The end of a run between the launcher and its sidecar (flowagent/launch/supervise.py): the
summary is taken from the sidecar's last line as soon as it is complete, never from a line
a run-end hook printed; a sidecar that does not finish is killed and reported."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from flowagent.launch.supervise import _summary_line

pytestmark = pytest.mark.e2e

SUMMARY = b'{"sessions": 2, "calls": 5, "run_row": true, "pending": []}\n'


def test_the_summary_is_the_complete_last_line() -> None:
    assert _summary_line(b"READY 12\n" + SUMMARY) == {
        "sessions": 2, "calls": 5, "run_row": True, "pending": []}
    assert _summary_line(SUMMARY) is not None
    assert _summary_line(b"READY 12\n" + SUMMARY[:-1]) is None  # not complete yet
    assert _summary_line(b"READY 12\n" + SUMMARY[:20]) is None
    assert _summary_line(b"READY 12\n") is None


def test_a_hooks_line_on_the_sidecars_stdout_is_not_the_summary() -> None:
    assert _summary_line(b'READY 12\n{"event": "run_end", "sessions": 2}\n') is None
    assert _summary_line(b"READY 12\n[1, 2]\n") is None
    assert _summary_line(b'READY 12\n{"sessions": \n') is None


def test_a_sidecar_that_does_not_finish_is_killed_and_reported(tmp_path: Path) -> None:
    """A real sidecar, stopped (SIGSTOP) so that it never answers: finish() gives up at its
    deadline, kills it and says why, instead of hanging the launcher."""
    from flowagent.config import load_config
    from flowagent.launch.run import _claim_run_dir
    from flowagent.launch.supervise import Sidecar

    cfg = load_config(tmp_path, {}, {"data_dir": str(tmp_path / "data")})
    run_id, run_dir = _claim_run_dir(cfg.data_dir)
    sidecar = Sidecar(run_dir, str(tmp_path / "data" / "flowagent.db"), run_id, cfg)
    os.kill(sidecar.proc.pid, signal.SIGSTOP)
    end = {"argv": ["app.py"], "cwd": str(tmp_path), "backend": "wrap", "ended_ns": 1,
           "exit_code": 0, "status": ""}
    assert sidecar.finish(end, timeout=0.5) is None
    assert sidecar.failure.endswith("(it did not finish within 0.5 s)"), sidecar.failure
    assert sidecar.proc.returncode == -signal.SIGKILL
    sidecar.reap()
