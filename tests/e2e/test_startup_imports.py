"""What ``flowagent run`` loads in its own process before the program runs: a switched-off run
loads nothing of the launcher's run machinery (it becomes the program at once), and a
recorded run leaves the store interface and the command parsers to the processes that use
them. Read from the launcher's ``-X importtime`` lines (the program it starts or becomes
does not inherit the option), against a plain interpreter's own start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import _clean_env, flowagent_cmd, write_files

pytestmark = pytest.mark.e2e


def _imported(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=cwd,
                          env=_clean_env(env), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return {line.rpartition("|")[2].strip() for line in proc.stderr.decode().splitlines()
            if line.startswith("import time:") and "|" in line}


@pytest.fixture
def program(tmp_path: Path) -> Path:
    write_files(tmp_path, {"prog.py": "print('hello')\n"})
    return tmp_path


def test_a_switched_off_run_loads_only_what_becoming_the_program_needs(program: Path) -> None:
    plain = _imported(["-c", "pass"], program)
    launcher = _imported(flowagent_cmd("run", "prog.py")[1:], program,
                         {"FLOWAGENT_ENABLED": "0"}) - plain
    assert "flowagent.launch.target" in launcher  # the option is read: it did run
    heavy = {"flowagent.config", "flowagent.launch.run", "flowagent.launch.supervise",
             "flowagent.launch.summary", "flowagent.protocol.rundir", "argparse", "typing",
             "subprocess", "json", "dataclasses", "signal", "flowagent.cli.common"}
    assert not launcher & heavy, sorted(launcher & heavy)
    assert not (program / ".flowagent").exists()  # and nothing was recorded


def test_a_recorded_run_leaves_the_store_and_the_parsers_to_others(program: Path) -> None:
    plain = _imported(["-c", "pass"], program)
    launcher = _imported(flowagent_cmd("run", "prog.py")[1:], program) - plain
    assert "flowagent.launch.supervise" in launcher
    # Nor the agent's backends (the recorder, the import hook) to name the `auto` backend:
    # they would take CPU from the program and the sidecar while the program runs.
    for name in ("flowagent.store.api", "flowagent.store.sqlite", "sqlite3", "argparse",
                 "flowagent.sidecar.ingest", "networkx", "flask", "flowagent.agent.backends",
                 "flowagent.agent.recorder", "typing",
                 # the program is forked and exec'd without subprocess (and what it loads),
                 # and the summary read without the json package
                 "subprocess", "selectors", "threading", "locale", "json",
                 # the command line is masked by the sidecar, which has re loaded anyway
                 "flowagent.redact"):
        assert name not in launcher, f"the launcher imports {name}"
    assert (program / ".flowagent" / "flowagent.db").exists()


def test_the_run_row_made_while_the_program_runs_is_stored_as_it_ended(tmp_path: Path) -> None:
    """The launcher's part of the run's row (masked command line, cwd, exit status, end) is
    made while the program runs and completed when it ends; the sidecar stores it."""
    write_files(tmp_path, {"prog.py": "import sys\nsys.exit(3)\n"})
    proc = subprocess.run(flowagent_cmd("run", "--data-dir", "data", "prog.py", "--password",
                                        "hunter2"), cwd=tmp_path, env=_clean_env(None),
                          capture_output=True, timeout=120)
    assert proc.returncode == 3, proc.stderr.decode()
    from flowagent.store.api import open_store

    store = open_store(str(tmp_path / "data" / "flowagent.db"), readonly=True)
    (run,) = store.runs()
    store.close()
    assert json.loads(run["argv"]) == ["prog.py", "--password", "***"]
    assert (run["exit_code"], run["status"], run["cwd"]) == (3, "finished", str(tmp_path))
    assert run["ended_ns"] >= run["started_ns"]
    # `auto`, named by the launcher without the backends: what the agent chose.
    from flowagent.agent.backends import choose

    assert run["backend"] == choose("auto")[0].name


def test_the_launchers_name_for_auto_is_the_agents_choice() -> None:
    from flowagent.agent.backends import choose
    from flowagent.agent.runstate import AUTO_BACKEND, AUTO_INSTRUMENTS_MAIN

    backend, _ = choose("auto")
    assert (backend.name, backend.capabilities.instruments_main) == (
        AUTO_BACKEND, AUTO_INSTRUMENTS_MAIN)


def test_the_launcher_stores_its_row_itself_when_the_sidecar_did_not(tmp_path: Path) -> None:
    """The fallback: the row made from the launcher's mapping reaches the store as a RunEnd."""
    from flowagent.config import load_config
    from flowagent.launch.summary import _ended, _finish_run, _run_row
    from flowagent.launch.target import Target
    from flowagent.store.api import open_store

    cfg = load_config(tmp_path, {}, {"data_dir": str(tmp_path / "data")})
    (tmp_path / "data").mkdir()
    store = open_store(str(tmp_path / "data" / "flowagent.db"))
    assert store.create_run("r1", 1, None, None)
    store.close()
    row = _run_row(Target("script", "app.py", ("--token", "t")), str(tmp_path), "wrap")
    _finish_run(cfg, "r1", _ended(row, -15), {"pending": []})
    store = open_store(str(tmp_path / "data" / "flowagent.db"), readonly=True)
    run = store.run("r1")
    store.close()
    assert run is not None
    assert json.loads(run["argv"]) == ["app.py", "--token", "***"]
    assert (run["exit_code"], run["status"], run["backend"]) == (-15, "finished", "wrap")
    assert run["ended_ns"] > 1


def test_the_sidecars_summary_comes_once_everything_is_stored(tmp_path: Path) -> None:
    """The sidecar says its summary once the store is closed: killed the moment its
    summary is read, nothing it summed up is lost (the row, the launcher's part and the
    totals), and the database file is whole (its write-ahead log checkpointed and removed:
    a file copied or backed up as the launcher returns holds the run)."""
    import os
    import signal

    from flowagent.store.api import open_store

    run_dir = tmp_path / "runs" / "r1"
    (run_dir / "rings").mkdir(parents=True)
    db = tmp_path / "flowagent.db"
    for run_id in ("r0", "r1"):  # the second on a store that exists, as on every later run
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowagent.sidecar", "--run-dir", str(run_dir), "--db",
             str(db), "--run-id", run_id, "--max-data-size", str(1 << 30), "--service", "svc",
             "--started-ns", "5"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=_clean_env({"FLOWAGENT_ENABLED": "0"}))
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().startswith(b"READY ")
            end = {"argv": ["app.py", "x"], "cwd": str(tmp_path), "backend": "wrap",
                   "ended_ns": 9, "exit_code": 4}
            proc.stdin.write(json.dumps({"run": end}).encode() + b"\n")
            proc.stdin.close()
            summary = json.loads(proc.stdout.readline())
            os.kill(proc.pid, signal.SIGKILL)  # wherever it is after its summary
            assert not (tmp_path / "flowagent.db-wal").exists()
        finally:
            proc.kill()
            proc.wait(timeout=60)
        assert (summary["run_row"], summary["sessions"], summary["pending"]) == (True, 0, [])
        store = open_store(str(db), readonly=True)
        try:
            run = store.run(run_id)
        finally:
            store.close()
        assert run is not None
        assert (run["status"], run["exit_code"], json.loads(run["argv"] or "[]"),
                run["backend"], run["started_ns"], run["ended_ns"], run["service"],
                run["processes"]) == ("finished", 4, ["app.py", "x"], "wrap", 5, 9, "svc", 0)


def test_the_program_forked_without_subprocess_starts_as_popen_started_it(
        tmp_path: Path) -> None:
    """What subprocess gave the program before: SIGPIPE and SIGXFSZ at their defaults (Python
    ignores them, a program it starts must not), the signal mask the launcher was given, the
    descriptors it inherited; and an exec that fails is one error line naming the cause."""
    r, w = os.pipe()
    os.write(w, b"handed on\n")
    os.close(w)
    os.set_inheritable(r, True)
    code = ("import os, signal, sys\n"
            "os.dup2(int(sys.argv[1]), 5)\n"
            "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})\n"
            "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n")
    proc = subprocess.run([sys.executable, "-c", code, str(r),
                           *flowagent_cmd("run", "--data-dir", "data", "--", "cat",
                                          "/proc/self/status", "/dev/fd/5")[1:]],
                          cwd=tmp_path, env=_clean_env(None), capture_output=True,
                          pass_fds=(r,), timeout=120, start_new_session=True)
    os.close(r)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    out = proc.stdout.decode()
    status = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    ignored, blocked = int(status["SigIgn"], 16), int(status["SigBlk"], 16)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        assert not ignored & (1 << (int(sig) - 1)), sig
    assert blocked == 1 << (int(signal.SIGUSR2) - 1)
    assert out.endswith("handed on\n")
    (tmp_path / "noexec").write_text("#!/nonexistent/interpreter\n")
    (tmp_path / "noexec").chmod(0o755)
    proc = subprocess.run(flowagent_cmd("run", "--data-dir", "data", "--", "./noexec"),
                          cwd=tmp_path, env=_clean_env(None), capture_output=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "flowagent: error: cannot start -- ./noexec: No such file or directory" in \
        proc.stderr.decode()
