"""A real PostgreSQL server for the tests, started and stopped by the tests themselves.

``initdb`` + ``pg_ctl`` from the Debian packages (on PATH, or under
``/usr/lib/postgresql/<version>/bin``) in a fresh temporary directory, listening on a free
TCP port of 127.0.0.1 only (no Unix socket: nothing is shared with a system cluster). One
server per pytest process (per xdist worker), stopped when the session ends; each test gets
its own database in it. PostgreSQL refuses to run as root, so under root the server runs as
an unprivileged user (``postgres``, else ``nobody``).

Fixtures (import them into a test module, or list this module in ``pytest_plugins``):

* ``pg_server`` (session): the :class:`PgServer`; skips when PostgreSQL or psycopg is
  missing (``scripts/test.sh`` installs both);
* ``pg_url`` (function): ``postgresql://`` URL of a new, empty database.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from typing import Iterator

import pytest

_BINARIES = ("initdb", "pg_ctl")


def find_bindir() -> str | None:
    """The directory holding initdb and pg_ctl: PATH first, then Debian's versioned
    directories (newest version first)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return os.path.dirname(os.path.realpath(found))

    def version(path: str) -> tuple[int, ...]:
        tail = path.split("/")[-2]
        return tuple(int(p) for p in tail.split(".") if p.isdigit())

    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if all(os.access(os.path.join(bindir, b), os.X_OK) for b in _BINARIES):
            return bindir
    return None


def _server_user() -> str | None:
    """Who runs the server: ourselves, or under root an unprivileged account."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' account "
                       "exists to run PostgreSQL as")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One PostgreSQL cluster in its own directory; :meth:`stop` and :meth:`start` may be
    called any number of times (the port stays the same, so URLs handed out stay valid)."""

    def __init__(self, bindir: str, base: str | None = None) -> None:
        self.bindir = bindir
        self.user = _server_user()
        self.base = base or tempfile.mkdtemp(prefix="flowagent-pg-")
        self.datadir = os.path.join(self.base, "data")
        self.logfile = os.path.join(self.base, "server.log")
        self.port = 0
        self.superuser = "flowagent"
        if self.user is not None:  # the server's user must own its directory
            entry = pwd.getpwnam(self.user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        os.chmod(self.base, 0o700)
        self._run("initdb", "-D", self.datadir, "-U", self.superuser, "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync", timeout=120)

    def _run(self, binary: str, *args: str, timeout: float = 60) -> str:
        proc = subprocess.run([os.path.join(self.bindir, binary), *args], user=self.user,
                              cwd=self.base, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{binary} {' '.join(args)} failed ({proc.returncode}):\n"
                               f"{proc.stdout}{proc.stderr}{self.log_tail()}")
        return proc.stdout

    def log_tail(self, n: int = 4000) -> str:
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        proc = subprocess.run([os.path.join(self.bindir, "pg_ctl"), "status", "-D",
                               self.datadir], user=self.user, capture_output=True, timeout=30)
        return proc.returncode == 0

    def start(self) -> None:
        # A free port is only free until someone binds it: retry on a clash (other workers).
        for attempt in range(5):
            port = self.port or free_port()
            options = (f"-p {port} -c listen_addresses=127.0.0.1 "
                       "-c unix_socket_directories='' -c fsync=off -c synchronous_commit=off "
                       "-c full_page_writes=off -c shared_buffers=32MB -c max_connections=60 "
                       "-c max_locks_per_transaction=256")
            try:
                self._run("pg_ctl", "start", "-w", "-t", "60", "-D", self.datadir,
                          "-l", self.logfile, "-o", options, timeout=90)
            except RuntimeError:
                if self.port or attempt == 4:
                    raise
                continue
            self.port = port
            return

    def stop(self) -> None:
        if self.running:
            self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", self.datadir,
                      timeout=90)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def pg_available() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    if find_bindir() is None:
        return "PostgreSQL (initdb, pg_ctl) is not installed: scripts/test.sh installs it"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install -e '.[test]'"
    return None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    reason = pg_available()
    if reason:
        pytest.skip(reason)
    server = PgServer(find_bindir() or "")
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    if not pg_server.running:  # a test that stopped it and failed before starting it again
        pg_server.start()
    return pg_server.create_database()
