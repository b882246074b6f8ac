"""What the end summary and the stored figures say names the actual cause: how long a killed
process's open session ran, a module imported before the agent could instrument it, the
sample rate in force at the end of the run."""

from __future__ import annotations

import json
import signal

import pytest

from helpers import REPO, run_cli, write_files

pytestmark = pytest.mark.e2e


def _sessions(root, data):
    proc = run_cli(["sessions", "--json", "--data-dir", str(data)], root)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def test_a_killed_session_lasts_until_its_process_died(tmp_path, backend):
    write_files(tmp_path, {"prog.py": """
        import os, signal, time

        def leaf():
            return 1

        def hang():
            leaf()                   # the session's last recorded event
            time.sleep(1.0)          # ...then it runs for a second more
            os.kill(os.getpid(), signal.SIGKILL)

        hang()
    """})
    data = tmp_path / "d"
    proc = run_cli(["run", "--data-dir", str(data), "--backend", backend, "prog.py"],
                   tmp_path, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    [s] = _sessions(tmp_path, data)
    assert (s["name"], s["result"]) == ("__main__:hang", "incomplete")
    # from its start until the process was seen gone: at least the second it slept
    assert s["duration_ns"] >= 1_000_000_000, s
    trace = json.loads(run_cli(["trace", s["session_id"], "--json", "--data-dir", str(data)],
                               tmp_path).stdout)
    root = next(n for n in trace["nodes"] if n["function_name"] == "__main__:hang")
    leaf = next(n for n in trace["nodes"] if n["function_name"] == "__main__:leaf")
    assert root["result_type"] == "incomplete" and leaf["result_type"] == "success"


def test_a_module_imported_before_the_agent_is_named_with_the_way_to_record_it(tmp_path):
    # random: the agent loads it at start (its own generators); json no longer.
    write_files(tmp_path, {"prog.py": """
        import random
        print(random.Random(5).randrange(10))
    """})
    proc = run_cli(["run", "--data-dir", str(tmp_path / "d"), "--backend", "wrap",
                    "--include", "random", "prog.py"], tmp_path)
    assert proc.returncode == 0 and proc.stdout == b"9\n"
    err = proc.stderr.decode()
    assert "random matches --include but was imported before the agent could instrument it" \
        in err and "--backend profile" in err
    assert "no Python process of this run was recorded" not in err
    # and the advice works: the profile backend records it
    proc = run_cli(["run", "--data-dir", str(tmp_path / "d2"), "--backend", "profile",
                    "--include", "random", "prog.py"], tmp_path)
    assert proc.returncode == 0
    assert {s["name"] for s in _sessions(tmp_path, tmp_path / "d2")} == {
        "random:Random.__init__", "random:Random.randrange"}
    assert "imported before the agent" not in proc.stderr.decode()


CONTROLLED = """
import os, subprocess, sys, time

from flowagent.agent import recorder

def work(i):
    return i

subprocess.run([sys.executable, "-m", "flowagent", "control", "--sample-rate", "0.1",
                "--data-dir", os.environ["DATA"]], check=True, capture_output=True)
deadline = time.monotonic() + 60
while recorder.S.sample_ppm == 1_000_000 and time.monotonic() < deadline:
    work(-1)                      # until the new rate reached this process
    time.sleep(0.01)
for i in range(200):
    work(i)
print("rate", recorder.S.sample_ppm)
"""


def test_the_summary_shows_the_sample_rate_in_force_at_the_end(tmp_path):
    write_files(tmp_path, {"controlled.py": CONTROLLED})
    data = tmp_path / "d"
    proc = run_cli(["run", "--data-dir", str(data), "controlled.py"], tmp_path,
                   env={"DATA": str(data), "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 0 and proc.stdout == b"rate 100000\n", proc.stderr.decode()
    err = proc.stderr.decode()
    assert "sessions were left out by sampling (sample rate 0.1 at the end of the run, set " \
           "with flowagent control; 1 at its start)" in err
    assert "(sample rate 1)" not in err


def test_async_main_awaiting_gather_is_one_session(tmp_path, backend):
    # Python 3.13 reports a coroutine's suspension past its yield: read as one, not as a
    # return, or the profile backend split main into an "error" session with output "?"
    write_files(tmp_path, {"prog.py": """
        import asyncio

        async def work(i):
            await asyncio.sleep(0.01)
            return i

        async def main():
            print(await asyncio.gather(work(1), work(2)))

        asyncio.run(main())
    """})
    data = tmp_path / "d"
    proc = run_cli(["run", "--data-dir", str(data), "--backend", backend, "prog.py"], tmp_path)
    assert proc.returncode == 0 and proc.stdout == b"[1, 2]\n", proc.stderr.decode()
    [s] = _sessions(tmp_path, data)
    assert (s["name"], s["result"], s["calls"]) == ("__main__:main", "success", 3)
