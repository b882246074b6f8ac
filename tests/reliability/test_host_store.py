"""The data directory and the store around runs: the size limit and its pruning, run ids that
never collide, a damaged database met by every reader, command lines masked alike for the
run and its children, and rings removed once drained."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import _clean_env, flowagent_cmd, run_cli, wait_until, write_files

from flowagent.launch import run as launcher
from flowagent.protocol.ring import HEADER_SIZE, RingReader, RingWriter
from flowagent.config import load_config
from flowagent.errors import ConfigError, StoreDamagedError
from flowagent.redact import mask_argv
from flowagent.store.limit import enforce
from flowagent.store.api import db_path
from flowagent.store.sqlite import SQLiteStore

pytestmark = pytest.mark.e2e

_PROG = """
def f(x): return {"x": x, "tag": "t" * 20}
for i in range(2500): f(i)
"""


def _runs(data: Path) -> list[dict]:
    store = SQLiteStore(db_path(str(data)), readonly=True)
    try:
        return store.runs()
    finally:
        store.close()


# -- the size limit ---------------------------------------------------------------------------

def test_data_limit_prunes_oldest_runs_first_and_says_so(tmp_path: Path, figure) -> None:
    write_files(tmp_path, {"prog.py": _PROG})
    data = tmp_path / "data"
    ids, lines = [], []
    for _ in range(4):
        proc = run_cli(["run", "--data-dir", str(data), "--max-data-size", "1MiB", "prog.py"],
                       tmp_path, timeout=120)
        assert proc.returncode == 0, proc.stderr
        err = proc.stderr.decode()
        ids.append(err.split("flowagent: run ", 1)[1].split(":", 1)[0])
        lines.append([ln for ln in err.splitlines() if "pruned" in ln])
    left = [r["run_id"] for r in _runs(data)]
    assert ids[-1] in left and ids[0] not in left
    assert set(left) == set(ids[len(ids) - len(left):]), "pruned newest-first"
    assert any(lines), "no run reported its pruning"
    assert all("oldest run" in ln and "--max-data-size" in ln for ls in lines for ln in ls)
    for gone in set(ids) - set(left):
        assert not (data / "runs" / gone).exists(), "a pruned run's directory stayed"
    store = SQLiteStore(db_path(str(data)), readonly=True)
    try:
        live = store.stored_bytes()
        for table in ("sessions", "functions", "chunks", "processes", "graph_nodes"):
            runs = {r[0] for r in store.db.execute(f"SELECT DISTINCT run_id FROM {table}")}
            assert runs <= set(left), (table, runs - set(left))
    finally:
        store.close()
    figure(f"data directory limit 1 MiB over 4 runs of 2 500 sessions each: {len(ids) - len(left)} "
           f"oldest pruned and reported, {live / 2**20:.2f} MiB of database pages in use after",
           pruned=len(ids) - len(left), live_bytes=live)


def test_data_limit_spares_running_and_pending_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = SQLiteStore(db_path(str(data)))
    with store.transaction():
        for i, (run_id, status, ended) in enumerate((
                ("a-finished", "finished", 1), ("b-pending", "pending", 1),
                ("c-running", "running", None), ("d-failed", "sidecar-failed", 1),
                ("e-current", "running", None))):
            store.db.execute("INSERT INTO runs(run_id, started_ns, ended_ns, status) "
                             "VALUES(?,?,?,?)", (run_id, i, ended, status))
            store.db.execute("INSERT INTO main.sessions(session_id, run_id, name) VALUES(?,?,?)",
                             (f"s-{run_id}", run_id, "x" * 4000))
            (data / "runs" / run_id).mkdir(parents=True)
    kept = enforce(store, str(data), 1, "e-current")
    left = {r["run_id"] for r in store.runs()}
    store.close()
    assert kept.runs == ("a-finished", "d-failed")
    assert left == {"b-pending", "c-running", "e-current"}
    assert not (data / "runs" / "a-finished").exists() and (data / "runs" / "b-pending").exists()


def test_data_limit_is_configured_in_layers(tmp_path: Path) -> None:
    (tmp_path / "flowagent.toml").write_text('max_data_size = "512MiB"\n')
    assert load_config(tmp_path, {}, {}).max_data_size == 512 << 20
    env = {"FLOWAGENT_MAX_DATA_SIZE": "3GiB"}
    assert load_config(tmp_path, env, {}).max_data_size == 3 << 30
    assert load_config(tmp_path, env, {"max_data_size": "0"}).max_data_size == 0
    assert load_config(tmp_path / "..", {}, {}).max_data_size in (2 << 30, 512 << 20)
    with pytest.raises(ConfigError, match="FLOWAGENT_MAX_DATA_SIZE.*at least 1MiB"):
        load_config(tmp_path, {"FLOWAGENT_MAX_DATA_SIZE": "12"}, {})
    with pytest.raises(ConfigError, match="--max-data-size"):
        load_config(tmp_path, {}, {"max_data_size": "lots"})


# -- run ids ----------------------------------------------------------------------------------

def test_runs_started_in_the_same_second_never_share_an_id(tmp_path: Path, figure) -> None:
    write_files(tmp_path, {"prog.py": "def f(): return 1\nf()\n"})
    data = tmp_path / "data"
    n = 10
    procs = [subprocess.Popen(flowagent_cmd("run", "--data-dir", str(data), "prog.py"),
                              cwd=tmp_path, env=_clean_env({}), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(n)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    runs = _runs(data)
    assert len({r["run_id"] for r in runs}) == n == len(runs)
    assert all(r["sessions"] == 1 and r["status"] == "finished" for r in runs), runs
    figure(f"{n} runs started together into one data directory: {n} distinct run ids, each "
           "with its own session")


def test_a_taken_run_id_is_never_reused(tmp_path: Path, monkeypatch) -> None:
    ids = iter(["20260101-000000-aaaaaaaa", "20260101-000000-aaaaaaaa",
                "20260101-000000-bbbbbbbb"])
    monkeypatch.setattr(launcher, "_new_run_id", lambda: next(ids))
    first = launcher._claim_run_dir(str(tmp_path))
    second = launcher._claim_run_dir(str(tmp_path))
    assert first[0] != second[0] and os.path.isdir(os.path.join(second[1], "rings"))


def test_sidecar_refuses_to_write_into_an_existing_run(tmp_path: Path) -> None:
    write_files(tmp_path, {"prog.py": "def f(): return 1\nf()\n"})
    data = tmp_path / "data"
    assert run_cli(["run", "--data-dir", str(data), "prog.py"], tmp_path).returncode == 0
    run = _runs(data)[0]
    proc = subprocess.run(
        [sys.executable, "-m", "flowagent.sidecar", "--run-dir", str(tmp_path / "x"), "--db",
         db_path(str(data)), "--run-id", run["run_id"], "--once"],
        cwd=tmp_path, env=_clean_env({}), capture_output=True, timeout=60)
    assert proc.returncode != 0 and b"already exists" in proc.stderr
    assert _runs(data)[0] == run


# -- a damaged store ---------------------------------------------------------------------------

def _damage(db_file: Path) -> None:
    data = bytearray(db_file.read_bytes())
    for page in range(1, len(data) // 4096):
        data[page * 4096 + 8:page * 4096 + 4096] = os.urandom(4088)
    db_file.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["garbage", "pages", "truncated-header"])
def test_every_command_says_the_store_is_damaged(tmp_path: Path, how: str) -> None:
    write_files(tmp_path, {"prog.py": _PROG})
    data = tmp_path / "data"
    assert run_cli(["run", "--data-dir", str(data), "prog.py"], tmp_path,
                   timeout=120).returncode == 0
    db_file = Path(db_path(str(data)))
    for extra in ("-wal", "-shm"):
        Path(str(db_file) + extra).unlink(missing_ok=True)
    if how == "garbage":
        db_file.write_bytes(b"\x13" * 10000)
    elif how == "pages":
        _damage(db_file)
    else:
        db_file.write_bytes(db_file.read_bytes()[:50])
    before = db_file.read_bytes()
    for cmd in (["runs"], ["sessions"], ["stats"], ["trace", "x"], ["export", "-f", "json"],
                ["diff", "a", "b"], ["stubs", "-o", "out"], ["control", "--pause"],
                ["sidecar", "--resume", "x"], ["view", "--port", "0"]):
        proc = run_cli([*cmd, "--data-dir", str(data)], tmp_path)
        err = proc.stderr.decode()
        assert proc.returncode == 2, (cmd, proc.returncode, err)
        assert err.count("\n") == 1 and "damaged" in err and "Traceback" not in err, (cmd, err)
    proc = run_cli(["run", "--data-dir", str(data), "prog.py"], tmp_path, timeout=120)
    assert proc.returncode == 0
    assert "damaged" in proc.stderr.decode() and "--resume" in proc.stderr.decode()
    assert db_file.read_bytes() == before, "a new run wrote into the damaged store"


def test_viewer_health_reports_a_damaged_store(tmp_path: Path) -> None:
    from viewer import create_app

    (tmp_path / "flowagent.db").write_bytes(b"not a database at all" * 100)
    client = create_app({"DATA_DIR": str(tmp_path)}).test_client()
    reply = client.get("/health")
    assert reply.status_code == 200
    body = reply.get_json()
    assert body["store"] == "damaged" and "damaged" in body["store_error"]
    with pytest.raises(StoreDamagedError):
        SQLiteStore(db_path(str(tmp_path)), readonly=True)


# -- command lines -------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "masked"), [
    (["--password", "p1"], ["--password", "***"]),
    (["--password=p1"], ["--password=***"]),
    (["-token", "t"], ["-token", "***"]),
    (["--db-password", "x", "--user", "u"], ["--db-password", "***", "--user", "u"]),
    (["--api-key=k", "--apikey", "k", "--access-key", "k"],
     ["--api-key=***", "--apikey", "***", "--access-key", "***"]),
    (["--client-secret", "s", "--auth", "a", "--cookie", "c"],
     ["--client-secret", "***", "--auth", "***", "--cookie", "***"]),
    (["AWS_SECRET_ACCESS_KEY=abc", "GITHUB_TOKEN=x", "PATH=/bin"],
     ["AWS_SECRET_ACCESS_KEY=***", "GITHUB_TOKEN=***", "PATH=/bin"]),
    (["https://user:pw@example.com/x", "redis://:pw@h:6379"],
     ["https://user:***@example.com/x", "redis://:***@h:6379"]),
    (["--password", "--verbose"], ["--password", "--verbose"]),  # no value given
    (["--author", "me", "--sort", "key", "--keyword", "k", "-p", "8080"],
     ["--author", "me", "--sort", "key", "--keyword", "k", "-p", "8080"]),
    (["app.py", "--", "--token", "t"], ["app.py", "--", "--token", "***"]),
])
def test_secret_option_values_are_masked(argv: list[str], masked: list[str]) -> None:
    assert mask_argv(argv) == masked


# -- rings -----------------------------------------------------------------------------------

def test_a_closed_drained_ring_is_removed_and_keeps_its_counters(tmp_path: Path) -> None:
    path = str(tmp_path / "1-1.ring")
    w = RingWriter(path, 64 * 1024, os.getpid(), os.getppid(), 1, 0, {"argv": ["x"]})
    for seq in range(1, 4):
        assert w.write(seq, b"payload", 2)
    r = RingReader(path)
    assert not r.retire_if_done(), "an open ring is never removed"
    frames = list(r.read())
    assert [f[0] for f in frames] == [1, 2, 3]
    r.commit(frames[-1][2])
    assert not r.retire_if_done(), "still open: its producer may write more"
    w.close()
    assert r.retire_if_done() and not os.path.exists(path)
    assert r.counters()["produced_events"] == 6 and list(r.read()) == []
    r.set_control(True, 5)  # a retired ring takes control writes as no-ops


def test_a_ring_with_unread_frames_is_kept(tmp_path: Path) -> None:
    path = str(tmp_path / "1-2.ring")
    w = RingWriter(path, 64 * 1024, os.getpid(), os.getppid(), 2, 0, {})
    w.write(1, b"payload", 1)
    w.close()
    r = RingReader(path)
    assert not r.retire_if_done(producer_gone=True) and os.path.exists(path)


_LIMITED = """
import errno, json, os, resource, sys
from flowagent.protocol.ring import fit_limits, RingWriter
kind, soft = sys.argv[1], int(sys.argv[2])
limit = {"fsize": resource.RLIMIT_FSIZE, "as": resource.RLIMIT_AS}[kind]
resource.setrlimit(limit, (soft, resource.getrlimit(limit)[1]))
fit = fit_limits(8 << 20)
made = None
try:
    w = RingWriter(os.path.join(sys.argv[3], "9-9.ring"), 8 << 20, 9, 1, 9, 0, {})
    made = w.capacity
except OSError as exc:
    made = errno.errorcode[exc.errno]
print(json.dumps({"fit": fit, "made": made, "files": sorted(os.listdir(sys.argv[3]))}))
"""


@pytest.mark.parametrize(("kind", "soft", "expect"), [
    ("fsize", 1 << 20, "shrunk"), ("fsize", 32 << 10, "EFBIG"),
    ("as", 44 << 20, "shrunk"), ("as", 1 << 30, "whole"),
])
def test_ring_fits_the_resource_limits(tmp_path: Path, kind: str, soft: int,
                                       expect: str) -> None:
    out = tmp_path / "rings"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", _LIMITED, kind, str(soft), str(out)],
                          env=_clean_env({}), capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr  # never SIGXFSZ, never MemoryError
    r = json.loads(proc.stdout)
    if expect == "EFBIG":
        assert r["fit"] == -errno.EFBIG and r["made"] == "EFBIG"
        assert r["files"] == ["9-9.ring.EFBIG"], "the cause is left as a marker"
    elif expect == "shrunk":
        assert 64 << 10 <= r["made"] < 8 << 20 and r["files"] == ["9-9.ring"]
        if kind == "fsize":
            assert r["made"] + HEADER_SIZE <= soft
    else:
        assert r["made"] == 8 << 20


def test_orphaned_sidecar_ends_when_its_launcher_is_killed(tmp_path: Path) -> None:
    write_files(tmp_path, {"prog.py": "import time\nopen('ready','w').close()\n"
                                      "time.sleep(60)\n"})
    data = tmp_path / "data"
    proc = subprocess.Popen(flowagent_cmd("run", "--data-dir", str(data), "prog.py"),
                            cwd=tmp_path, env=_clean_env({}), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    wait_until(lambda: (tmp_path / "ready").exists(), "the program to start", proc=proc)
    sidecars = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, str(data))
                and _cmdline_has(p, "flowagent.sidecar")]
    assert sidecars
    proc.kill()
    proc.wait()
    wait_until(lambda: not any(_cmdline_has(p, str(data)) for p in sidecars),
               "the sidecar to end with its launcher")
    run = _runs(data)[0]
    assert run["status"] == "running"  # the launcher never finished it: it was killed


def _cmdline_has(pid: str, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False
