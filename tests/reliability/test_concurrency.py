"""Concurrency: threads, asyncio, thread and process pools (fork and spawn), forking while
threads record, daemon threads recording at exit, gevent (when installed). Each scenario runs
3 times (50 with FLOWAGENT_FULL=1), each run with a timeout: no deadlock at fork or exit, and
no session mixes the calls of two requests.

Every request's calls receive the same argument, an int or a str depending on the request,
so a session whose calls show both `int` and `str` inputs holds two requests' calls.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections import defaultdict
from pathlib import Path

import pytest
from helpers import REPO, run_cli, run_python, strip_summary
from reliability_support import launch

from flowagent.store.sqlite import SQLiteStore

pytestmark = pytest.mark.e2e

FULL = os.environ.get("FLOWAGENT_FULL", "") == "1"
REPEAT = 50 if FULL else 3
HERE = Path(__file__).resolve().parent
APP = HERE / "programs" / "concurrency"
# Where scripts/reliability.sh installs gevent (outside the project's virtualenv).
EXTRA_SITE = os.environ.get("FLOWAGENT_RELIABILITY_SITE", "")

# scenario: (requests, root function, calls per session)
SCENARIOS = {
    "threads": (400, "conc_app:handle", 4),
    "asyncio": (200, "conc_app:ahandle", 7),
    "thread-pool": (200, "conc_app:handle", 4),
    "process-pool-fork": (64, "conc_app:handle", 4),
    "process-pool-spawn": (64, "conc_app:handle", 4),
    "fork-with-threads": (0, "conc_app:handle", 4),  # 4 threads x 1000 + 10 forks x 5
    "daemon-exit": (100, "conc_app:handle", 4),
    "gevent": (200, "conc_app:ghandle", 4),  # test_gevent_* below
}


def _gevent_available() -> bool:
    if importlib.util.find_spec("gevent") is not None:
        return True
    return bool(EXTRA_SITE) and (Path(EXTRA_SITE) / "gevent").is_dir()


needs_gevent = pytest.mark.skipif(
    not _gevent_available(), reason="gevent is not installed (scripts/reliability.sh --full "
    "installs it into a separate directory and sets FLOWAGENT_RELIABILITY_SITE)")


def _sessions(data: Path) -> list[dict]:
    """Every stored session with the input kinds, threads and pids of its calls."""
    store = SQLiteStore(str(data / "flowagent.db"), readonly=True)
    by: dict[str, dict] = defaultdict(lambda: {"calls": 0, "kinds": set(), "threads": set()})
    try:
        for run_id in [r["run_id"] for r in store.runs()]:
            for g in store.iter_session_graphs(run_id):
                for c in g["nodes"]:
                    if c["result_type"] == "incomplete":
                        continue
                    s = by[g["session_id"]]
                    s.update(name=g["name"], complete=int(g["complete"]), pid=c["pid"])
                    s["calls"] += 1
                    s["threads"].add(c["thread"])
                    s["kinds"].update(k for k in c["input_shape"].values() if k in ("int", "str"))
    finally:
        store.close()
    return list(by.values())


def _once(tmp: Path, scenario: str, rep: int, timeout: float = 120) -> dict:
    requests, root, per_session = SCENARIOS[scenario]
    data = tmp / f"data{rep}"
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), EXTRA_SITE) if p)}
    t0 = time.monotonic()
    # In its own process group: a deadlocked run is killed whole (launcher and program).
    # Every call's shapes are taken (no budget): the mixing check reads each call's input.
    run = launch(["run", "--data-dir", str(data), "--include", "conc_app", "--shape-every-call",
                  "conc_main.py", scenario, str(requests)], tmp, env=env)
    try:
        rc = run.wait(timeout)
    finally:
        run.kill()
    elapsed = time.monotonic() - t0
    assert rc == 0, run.stderr.decode()
    out = run.stdout.decode().split()
    assert out[-1] == "ok", out
    main_pid, expected = int(out[1]), int(out[3])
    sessions = _sessions(data)
    mixed = [s for s in sessions if len(s["kinds"]) > 1 or len(s["threads"]) > 1]
    assert not mixed, mixed[:3]
    complete = [s for s in sessions if s["complete"] and s["name"] == root]
    assert all(s["calls"] == per_session for s in complete), \
        sorted({s["calls"] for s in complete})
    if expected >= 0:
        said = run.stderr.decode(errors="replace")[-1500:]
        assert len(complete) == expected, said
        assert len(sessions) == expected, said  # nothing else, nothing open
    else:
        assert len(complete) >= requests
    if scenario.startswith("process-pool"):
        assert main_pid not in {s["pid"] for s in sessions}  # recorded in the workers
    return {"elapsed": elapsed, "sessions": len(sessions)}


def _copy_app(tmp: Path) -> None:
    for name in ("conc_app.py", "conc_main.py"):
        shutil.copy(APP / name, tmp / name)


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "gevent"])
def test_no_deadlock_no_mixing(tmp_path: Path, scenario: str, figure) -> None:
    _copy_app(tmp_path)
    runs = [_once(tmp_path, scenario, rep) for rep in range(REPEAT)]
    slowest = max(r["elapsed"] for r in runs)
    figure(f"{scenario}: {REPEAT}/{REPEAT} runs ended (slowest {slowest:.1f} s, limit 120 s), "
           f"{runs[0]['sessions']} sessions per run, 0 mixed sessions",
           scenario=scenario, runs=REPEAT, slowest_s=round(slowest, 2))


@needs_gevent
def test_gevent_program_runs_no_agent_code_on_gevent(tmp_path: Path) -> None:
    # Deterministic sign of the bug: after monkey.patch_all(), a second gevent hub appears
    # (the agent's flusher thread's), where plainly there is only the main thread's.
    _copy_app(tmp_path)
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), EXTRA_SITE) if p)}
    plain = run_python(["conc_main.py", "gevent-hubs", "0"], tmp_path, env=env)
    fa = run_cli(["run", "--data-dir", str(tmp_path / "data"), "--include", "conc_app",
                  "conc_main.py", "gevent-hubs", "0"], tmp_path, env=env)
    assert b"gevent hubs: 1\n" in plain.stdout
    assert b"gevent hubs: 1\n" in fa.stdout, fa.stdout


@pytest.mark.slow
@needs_gevent
def test_gevent_never_deadlocks_nor_mixes(tmp_path: Path, figure) -> None:
    # Up to 300 runs, stopping at the first failure (the bug shows within ~30-60 runs).
    _copy_app(tmp_path)
    for rep in range(300):
        _once(tmp_path, "gevent", rep % 5, timeout=30)
        shutil.rmtree(tmp_path / f"data{rep % 5}")
    figure("gevent (monkey.patch_all): 300/300 runs ended, 0 mixed sessions")


FORKS_ONCE = """\
import os

def child():
    return 1

pid = os.fork()
if pid == 0:
    child()
    os._exit(0)
os.waitpid(pid, 0)
print("parent done")
"""


def test_fork_in_a_single_threaded_program_is_as_plain(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(FORKS_ONCE)
    plain = run_python(["prog.py"], tmp_path)
    fa = run_cli(["run", "--data-dir", str(tmp_path / "data"), "prog.py"], tmp_path)
    assert (fa.returncode, fa.stdout) == (plain.returncode, plain.stdout) == (0, b"parent done\n")
    assert strip_summary(fa.stderr) == plain.stderr
