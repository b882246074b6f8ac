"""Fleet control end to end: one service recorded on two "hosts" (two data directories, two
sidecars) and another service, all into one PostgreSQL; a control of the first service
through the store pauses and resumes both of its recordings and not the other, and a module
glob it adds is recorded by the modules those programs import afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from helpers import flowagent_cmd, run_cli, wait_until, write_files

pytest.importorskip("psycopg")

from flowagent.store.postgres import PostgresStore  # noqa: E402
from flowagent.store.sqlite import SQLiteStore  # noqa: E402

pytestmark = pytest.mark.e2e

WORK = '''
def step(i):
    return {"i": i, "even": i % 2 == 0}
'''

# Outside the program's directory (so not recorded unless a glob selects it).
OUTSIDE = '''
def helper(i):
    return [i]
'''

# One session per iteration (a module-level call of a recorded function) until told to
# stop; progress (iterations, and how many of them called the outside module) in a file.
PROG = '''
import os
import sys
import time

import work

here = os.path.dirname(os.path.abspath(__file__))
sys.path.append(os.environ["OUTSIDE_DIR"])
outside = None
i = done = 0
while not os.path.exists(os.path.join(here, "stop")):
    work.step(i)
    if outside is None and os.path.exists(os.path.join(here, "import-outside")):
        import outside
    if outside is not None:
        outside.helper(i)
        done += 1
    i += 1
    with open(os.path.join(here, ".progress"), "w") as f:
        f.write(f"{i} {done} {time.time_ns()}")
    os.replace(os.path.join(here, ".progress"), os.path.join(here, "progress"))
    time.sleep(0.005)
print("stopped")
'''


class Host:
    """One recorded program: its directory, data directory and run."""

    def __init__(self, root: Path, outside: Path, url: str, service: str, host: str) -> None:
        self.root, self.service, self.host = root, service, host
        write_files(root, {"prog.py": PROG, "work.py": WORK})
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWAGENT_")}
        env.pop("PYTHONPATH", None)
        env.update(FLOWAGENT_HOST=host, FLOWAGENT_SERVICE=service, OUTSIDE_DIR=str(outside))
        self.data = root / ".fa"
        self.proc = subprocess.Popen(
            flowagent_cmd("run", "--data-dir", str(self.data), "--store", url, "prog.py"),
            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.run_id = ""

    def progress(self) -> tuple[int, int, int]:
        try:
            i, done, ns = (self.root / "progress").read_text().split()
        except (OSError, ValueError):
            return 0, 0, 0
        return int(i), int(done), int(ns)

    def spool(self) -> SQLiteStore:
        return SQLiteStore(str(self.data / "pg-spool.db"), readonly=True)

    def last_session_ns(self) -> int:
        store = self.spool()
        try:
            rows = store.sessions(self.run_id, order="-started", limit=1)
            return int(rows[0]["started_ns"]) if rows else 0
        finally:
            store.close()

    def control_file(self) -> dict[str, Any]:
        try:
            return json.loads((self.data / "runs" / self.run_id / "control.json").read_text())
        except (OSError, ValueError):
            return {}

    def stop(self) -> str:
        (self.root / "stop").touch()
        out, err = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, err
        return out


def started_between(pg: PostgresStore, run_id: str, lo: int, hi: int) -> int:
    return sum(1 for s in pg.sessions(run_id, limit=1_000_000) if lo < s["started_ns"] < hi)


def quiet_since(host: Host) -> int:
    """When the host's program has iterated on for a while (each iteration a session when
    recorded) with no new session stored by its sidecar: the time of the last one, else 0."""
    last = host.last_session_ns()
    _i, _d, now = host.progress()
    return last if last and now - last > 1_500_000_000 else 0


def control_via_cli(url: str, cwd: Path) -> Callable[..., None]:
    def control(service: str, paused: bool | None = None, include: list[str] | None = None,
                **_: Any) -> None:
        args = ["control", "--service", service, "--store", url]
        if paused is not None:
            args.append("--pause" if paused else "--resume")
        for glob in include or ():
            args += ["--include", glob]
        proc = run_cli(args, cwd, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return control


def fleet_control(url: str, tmp_path: Path, control: Callable[..., None]) -> None:
    outside = tmp_path / "outside"
    write_files(outside, {"outside.py": OUTSIDE})
    a = Host(tmp_path / "a", outside, url, "shop", "host-a")
    b = Host(tmp_path / "b", outside, url, "shop", "host-b")
    c = Host(tmp_path / "c", outside, url, "mail", "host-c")
    hosts = (a, b, c)
    pg = PostgresStore(url)
    try:
        def run_of(h: Host) -> str:
            found = pg.runs(service=h.service, host=h.host)
            return found[0]["run_id"] if found else ""

        for h in hosts:
            h.run_id = wait_until(lambda h=h: run_of(h), f"the run of {h.host}", timeout=120,
                                  proc=h.proc)
            wait_until(lambda h=h: h.last_session_ns(), f"sessions of {h.host}", timeout=120,
                       proc=h.proc)

        control("shop", paused=True)
        for h in (a, b):  # the sidecars took it from the store ...
            wait_until(lambda h=h: h.control_file().get("paused") is True,
                       f"the pause reaching {h.host}", timeout=60, proc=h.proc)
        # ... and the programs stopped recording, while still running
        paused_at = {h.host: wait_until(lambda h=h: quiet_since(h), f"{h.host} quiet",
                                        timeout=60, proc=h.proc) for h in (a, b)}
        assert c.control_file().get("paused") is None
        c_before = c.last_session_ns()
        wait_until(lambda: c.last_session_ns() > c_before, "the other service recording on",
                   timeout=60, proc=c.proc)
        resumed_at = time.time_ns()
        control("shop", paused=False)
        for h in (a, b):
            wait_until(lambda h=h: h.last_session_ns() > resumed_at, f"{h.host} resumed",
                       timeout=60, proc=h.proc)

        # A glob added live: modules the programs import from now on are selected by it.
        control("shop", include=["outside"])
        for h in (a, b):
            wait_until(lambda h=h: h.control_file().get("include") == ["outside"],
                       f"the glob reaching {h.host}", timeout=60, proc=h.proc)
            # the sidecar told the process (the ring's control generation moved), and the
            # process flushed (and so read its control) many times since
            i0 = h.progress()[0]
            wait_until(lambda h=h, i0=i0: h.progress()[0] > i0 + 100, f"{h.host} going on",
                       timeout=60, proc=h.proc)
        for h in hosts:
            (h.root / "import-outside").touch()
        for h in hosts:
            wait_until(lambda h=h: h.progress()[1] > 50, f"{h.host} calling outside",
                       timeout=60, proc=h.proc)
        for h in hosts:
            assert h.stop() == "stopped\n"  # the programs' own output, untouched
        pg.close()
        pg = PostgresStore(url)
        for h in (a, b):
            # Nothing recorded while paused; recorded before and after.
            assert started_between(pg, h.run_id, paused_at[h.host] + 1, resumed_at) == 0
            assert started_between(pg, h.run_id, resumed_at, time.time_ns()) > 0
            names = {f["qualname"] for f in pg.functions(h.run_id).values()}
            assert "helper" in names and "step" in names
        assert started_between(pg, c.run_id, min(paused_at.values()), resumed_at) > 0
        other = {f["qualname"] for f in pg.functions(c.run_id).values()}
        assert "step" in other and "helper" not in other  # another service: not its glob
    finally:
        for h in hosts:
            if h.proc.poll() is None:
                (h.root / "stop").touch()
                try:
                    h.proc.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    h.proc.kill()
                    h.proc.communicate()
        pg.close()


def test_fleet_control_through_the_store(pg_url: str, tmp_path: Path) -> None:
    """``flowagent control --service`` pauses, resumes and adds a module glob, live."""
    fleet_control(pg_url, tmp_path, control_via_cli(pg_url, tmp_path))


def test_service_control_row_in_both_stores(pg_url: str, tmp_path: Path) -> None:
    sqlite = SQLiteStore(str(tmp_path / "flowagent.db"))
    pg = PostgresStore(pg_url)
    try:
        for store in (sqlite, pg):
            assert store.service_control("shop") is None
            first = store.set_service_control("shop", paused=True, include=["lib.*"])
            assert (first.paused, first.sample_rate, first.include, first.generation) == (
                True, None, ("lib.*",), 1)
            second = store.set_service_control("shop", sample_rate=0.25)
            # given settings replace, others stay
            assert (second.paused, second.sample_rate, second.include, second.generation) == (
                True, 0.25, ("lib.*",), 2)
            assert store.service_control("mail") is None
            assert [c.service for c in store.service_controls()] == ["shop"]
    finally:
        sqlite.close()
        pg.close()


def test_a_sidecar_follows_its_service_row_in_a_sqlite_store(tmp_path: Path) -> None:
    from flowagent.sidecar import control

    db = str(tmp_path / "flowagent.db")
    writer = SQLiteStore(db)
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    reader = SQLiteStore(db, readonly=True)
    poller = control.FleetPoller(str(run_dir), "shop", lambda: reader)
    try:
        assert poller.poll(reader) is False  # never controlled: the run's own settings
        writer.set_service_control("mail", paused=True)
        assert poller.poll(reader) is False  # another service
        writer.set_service_control("shop", sample_rate=0.5, exclude=["noisy.*"])
        assert poller.poll(reader) is True
        assert control.read(str(run_dir)) == {"sample_rate": 0.5, "include": [],
                                              "exclude": ["noisy.*"], "fleet_generation": 1}
        assert poller.poll(reader) is False  # unchanged: the file is not written again
        writer.set_service_control("shop", paused=True)
        assert poller.poll(reader) is True
        assert control.read(str(run_dir))["paused"] is True
        # A sidecar started later (or restarted) applies the current row once.
        again = control.FleetPoller(str(run_dir), "shop", lambda: reader)
        assert again.poll(reader) is False
    finally:
        reader.close()
        writer.close()


def test_live_globs_add_to_the_configured_selection(tmp_path: Path) -> None:
    from flowagent.agent.select import Selector

    sel = Selector((), ("noisy",), (str(tmp_path),))
    lib = "/usr/lib/python3/dist-packages/requests/api.py"
    assert sel.wants("requests.api", lib) is False       # a library: not by default
    assert sel.wants("app", str(tmp_path / "app.py")) is True
    sel.set_live(("requests.*",), ("app",))
    assert sel.wants("requests.api", lib) is True        # added live
    assert sel.wants("app", str(tmp_path / "app.py")) is False  # skipped live
    assert sel.wants("noisy", str(tmp_path / "noisy.py")) is False  # configured: still
    assert sel.wants("json.decoder", None) is False      # the standard library: never
    sel.set_live((), ())                                  # a later control clears them
    assert sel.wants("requests.api", lib) is False
    assert sel.wants("app", str(tmp_path / "app.py")) is True
