"""``flowagent run -m pytest``: one session per test, named after its node id, holding its
fixtures' setup and teardown, with the test's outcome as output (a failed test is an
error). pytest's own output and exit status are unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import PROGRAMS, Recording, run_cli, run_python, strip_summary, write_files

pytestmark = pytest.mark.e2e

SUITE = PROGRAMS / "pytest_suite"
ARGS = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "test_calc.py"]


def test_each_test_is_a_session(tmp_path: Path, backend: str) -> None:
    write_files(tmp_path, {"calc.py": (SUITE / "calc.py").read_text(),
                           "test_calc.py": (SUITE / "check_calc.py").read_text()})
    # bytecode written: pytest caches its rewritten test modules, which the run must neither
    # take instead of instrumenting them nor overwrite with instrumented code
    env = {"PYTEST_ADDOPTS": "", "PYTEST_PLUGINS": "", "PYTHONDONTWRITEBYTECODE": ""}
    # pytest's own start-up is thousands of calls the profile backend's callback sees
    plain = run_python(ARGS, tmp_path, env=env, timeout=300)
    [cached] = (tmp_path / "__pycache__").glob("test_calc.*pytest*.pyc")
    cached_bytes = cached.read_bytes()
    proc = run_cli(["run", "--data-dir", str(tmp_path / "data"), "--backend", backend, *ARGS],
                   tmp_path, env=env, timeout=300)
    assert proc.returncode == plain.returncode == 1  # one test fails
    summary = [line for line in proc.stdout.decode().splitlines() if " passed" in line]
    assert summary and summary[-1].startswith("1 failed, 3 passed, 1 skipped, 1 xfailed")
    assert strip_summary(proc.stderr) == plain.stderr
    rec = Recording(proc.returncode, "", "", tmp_path, tmp_path / "data", backend)
    sessions = {s["name"]: s for s in rec.sessions()}
    prefix = "<test>:test_calc.py::"
    assert sorted(n for n in sessions if n.startswith("<test>:")) == sorted(
        prefix + t for t in ("test_add", "test_div_fails", "test_param[1]", "test_param[2]",
                             "test_skipped", "test_xfail"))
    outcome = {n[len(prefix):]: (s["result"], rec.tree(s["session_id"])["nodes"][0])
               for n, s in sessions.items() if n.startswith(prefix)}
    assert outcome["test_add"][0] == "success" and outcome["test_add"][1]["output_shape"] == "passed"
    assert outcome["test_div_fails"][0] == "error"
    assert outcome["test_div_fails"][1]["exception_type"] == "failed"
    assert outcome["test_skipped"][1]["output_shape"] == "skipped"
    assert outcome["test_xfail"][1]["output_shape"] == "xfailed"
    # the fixture's setup and teardown run inside the test's session
    add = rec.tree(sessions[prefix + "test_add"]["session_id"])
    names = [n["function_name"] for n in add["nodes"]]
    assert {"calc:Store.__init__", "calc:Store.put", "calc:add", "calc:Store.close"} <= set(names)
    # the test module itself is recorded despite pytest's assertion rewriting: the test
    # function and its fixture (setup and teardown: one generator call) under the test
    by_id = {n["id"]: n for n in add["nodes"]}
    parents = {n["function_name"]: by_id[n["parent_id"]]["function_name"]
               for n in add["nodes"] if n["parent_id"] in by_id}
    assert parents["test_calc:test_add"] == parents["test_calc:store"] == prefix + "test_add"
    assert parents["calc:add"] == "test_calc:test_add"
    assert parents["calc:Store.put"] == parents["calc:Store.close"] == "test_calc:store"
    assert cached.read_bytes() == cached_bytes  # pytest's cache is the plain run's
    again = run_python(ARGS, tmp_path, env=env, timeout=300)
    assert again.stdout.splitlines()[-1].startswith(b"1 failed, 3 passed")
    div = rec.tree(sessions[prefix + "test_div_fails"]["session_id"])
    assert [n["result_type"] for n in div["nodes"] if n["function_name"] == "calc:div"] == ["error"]
    assert [n["result_type"] for n in div["nodes"]
            if n["function_name"] == "test_calc:test_div_fails"] == ["error"]
