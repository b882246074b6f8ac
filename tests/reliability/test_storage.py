"""Storage failure: the data directory is unwritable, is not a directory, holds something that
is not a database, or is full (before or during the run). flowagent says so in one clear
line and the program itself is unaffected: it runs, with the same output and exit status.

The read-only and full cases mount a small tmpfs (the tests run as root here); where
mounting is not allowed they are skipped with the reason.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli, run_python, strip_summary, wait_until

from flowagent.sidecar.state import read_state
from reliability_support import PROGRAMS, launch

pytestmark = pytest.mark.e2e

PROGRAM = """\
import sys

def greet(name):
    print("hello", name)
    print("to stderr", file=sys.stderr)
    return 3

sys.exit(greet("world"))
"""


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``tmpfs("1m", ro=False)`` mounts a small tmpfs and returns its path."""
    mounted: list[Path] = []

    def mount(size: str, ro: bool = False) -> Path:
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        opts = f"size={size}" + (",ro" if ro else "")
        try:
            proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)],
                                  capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot mount a tmpfs here ({exc}); needs root and CAP_SYS_ADMIN")
        if proc.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): "
                        + proc.stderr.decode(errors="replace").strip())
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30,
                       check=False)


def _fill(directory: Path) -> None:
    """Write until the filesystem says it is full."""
    with open(directory / "filler", "wb", buffering=0) as f:  # nothing left to flush at close
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    assert shutil.disk_usage(directory).free < 4096


def _unaffected(tmp: Path, data_dir: str, recorded: bool = False) -> str:
    """Run PROGRAM plainly and under flowagent with ``data_dir``; same output and status,
    and flowagent's own stderr is exactly one error line. Returns that line.

    ``recorded``: the failure shows only once the program runs (the sidecar cannot open the
    store): the line then says where the recording waits and how to store it."""
    (tmp / "prog.py").write_text(PROGRAM)
    plain = run_python(["prog.py"], tmp)
    fa = run_cli(["run", "--data-dir", data_dir, "prog.py"], tmp)
    assert (fa.returncode, fa.stdout) == (plain.returncode, plain.stdout) == (3, b"hello world\n")
    assert strip_summary(fa.stderr) == plain.stderr
    ours = [line for line in fa.stderr.decode().splitlines() if line.startswith("flowagent:")]
    assert len(ours) == 1 and ours[0].startswith("flowagent: error: "), ours
    assert ("sidecar --resume" if recorded else "without recording") in ours[0]
    return ours[0]


def test_data_dir_under_a_regular_file(tmp_path: Path, figure) -> None:
    (tmp_path / "afile").write_text("x")
    line = _unaffected(tmp_path, str(tmp_path / "afile" / "data"))
    assert "cannot create the data directory" in line and "Not a directory" in line
    figure(f"data dir below a regular file: program unaffected (output, exit 3); one line: "
           f"{line!r}")


def test_database_path_is_a_directory(tmp_path: Path, figure) -> None:
    (tmp_path / "data" / "flowagent.db").mkdir(parents=True)
    line = _unaffected(tmp_path, str(tmp_path / "data"), recorded=True)
    assert "cannot open the flowagent database" in line
    figure(f"flowagent.db is a directory: program unaffected; one line: {line[:110]!r}...")


def test_database_is_garbage(tmp_path: Path, figure) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "flowagent.db").write_bytes(bytes(range(256)) * 64)
    line = _unaffected(tmp_path, str(tmp_path / "data"), recorded=True)
    assert "file is not a database" in line
    # Nothing recorded is lost: once the database is moved away, the run is stored.
    (tmp_path / "data" / "flowagent.db").rename(tmp_path / "garbage.db")
    run_id = line.split("sidecar --resume ")[1].split()[0]
    resumed = run_cli(["sidecar", "--resume", run_id, "--data-dir", str(tmp_path / "data")],
                      tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    stored = run_cli(["sessions", "--run", run_id, "--data-dir", str(tmp_path / "data")],
                     tmp_path).stdout.decode()
    assert "__main__:greet" in stored, stored
    figure(f"flowagent.db is not a database: program unaffected and recorded; one line: "
           f"{line[:110]!r}...; after moving the file away, 'flowagent sidecar --resume' "
           "stored the run")


def test_read_only_filesystem(tmp_path: Path, tmpfs: Callable[..., Path], figure) -> None:
    ro = tmpfs("1m", ro=True)
    line = _unaffected(tmp_path, str(ro / "data"))
    assert "Read-only file system" in line
    figure(f"read-only filesystem: program unaffected; one line: {line!r}")


def test_full_before_the_run_names_the_cause(tmp_path: Path, tmpfs: Callable[..., Path],
                                             figure) -> None:
    # (bug 10: the line pointed to an empty sidecar.log; the sidecar could not write it)
    full = tmpfs("1m")
    _fill(full)
    line = _unaffected(tmp_path, str(full / "data")).replace(str(tmp_path), "DIR")
    assert "space" in line, line
    figure(f"full filesystem before the run: program unaffected; one line: {line!r}")


def _fill_during_a_run(tmp: Path, fs: Path) -> tuple[Any, int, Any]:
    """phases.py under flowagent with its data on ``fs``, filled up after the first 50
    sessions; returns (plain run, exit status, the flowagent run)."""
    shutil.copy(PROGRAMS / "phases.py", tmp)
    go = tmp / "go"
    args = ["phases.py", "50", "3000", str(go)]
    go.touch()
    plain = run_python(args, tmp)
    go.unlink()
    run = launch(["run", "--data-dir", str(fs / "data"), *args], tmp)
    try:
        run.wait_line(b"phase 1 done")
        time.sleep(0.3)  # the first batches are in the ring and the store
        _fill(fs)
        go.touch()
        rc = run.wait()
    finally:
        run.kill()
    assert (rc, run.stdout) == (plain.returncode, plain.stdout)
    assert strip_summary(run.stderr) == plain.stderr
    return plain, rc, run


def _ours(run: Any) -> list[str]:
    return [line for line in run.stderr.decode().splitlines() if line.startswith("flowagent:")]


def test_full_during_the_run(tmp_path: Path, tmpfs: Callable[..., Path], figure) -> None:
    # (found by this suite: the program died of SIGBUS writing into its sparse ring file
    # once the filesystem was full; fixed since)
    _, rc, run = _fill_during_a_run(tmp_path, tmpfs("16m"))  # room for the 8 MiB ring
    ours = " | ".join(_ours(run))
    # the sidecar's own line names the cause, though its log is on the full disk
    assert "the sidecar stopped" in ours and "no output" not in ours, ours
    assert "disk is full" in _ours(run)[0] or "No space left" in _ours(run)[0], ours
    figure(f"filesystem full in the middle of the run (16 MiB tmpfs filled after 50 of 3050 "
           f"sessions): program unaffected (same output, exit {rc}); flowagent said: "
           f"{ours.replace(str(tmp_path), '...')[:260]!r}")


def test_no_room_for_the_ring_is_reported_as_such(tmp_path: Path,
                                                  tmpfs: Callable[..., Path], figure) -> None:
    # (bug 11: recording was silently off and the summary blamed the target)
    _, _, run = _fill_during_a_run(tmp_path, tmpfs("2m"))  # too small for an 8 MiB ring
    ours = " | ".join(_ours(run)).replace(str(tmp_path), "DIR")
    assert "is the target a Python program" not in ours, ours
    assert "free space" in ours and "ring" in ours, ours
    figure(f"2 MiB data filesystem, 8 MiB ring: program unaffected; said before it ran: "
           f"{ours[:200]!r}")



THREE_PHASES = """\
import os, sys, time

def leaf(k):
    return k

def session(i):
    return i + sum(leaf(k) for k in range(5))

def wait_for(path):
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)

total = sum(session(i) for i in range(50))
print("phase 1 done", flush=True)
wait_for("go1")
total += sum(session(i) for i in range(20000))
print("phase 2 done", flush=True)
wait_for("go2")
total += sum(session(i) for i in range(1000))
print("phase 3 done", total)
"""


def _sidecar_state(fs: Path) -> str:
    return " ".join(read_state(str(d)) for d in (fs / "data" / "runs").glob("*"))


def test_full_for_a_while_during_the_run_loses_nothing(tmp_path: Path,
                                                       tmpfs: Callable[..., Path],
                                                       figure) -> None:
    """The store's disk fills in the middle of the run and gets room again before the end:
    the sidecar lets go of the store and waits (the rings keep what the program records),
    then stores everything; the program is unaffected, the run is complete, and the summary
    says the disk was full for a while."""
    fs = tmpfs("32m")  # room for the 8 MiB ring and the store
    (tmp_path / "prog.py").write_text(THREE_PHASES)
    for go in ("go1", "go2"):
        (tmp_path / go).touch()
    plain = run_python(["prog.py"], tmp_path)
    for go in ("go1", "go2"):
        (tmp_path / go).unlink()
    run = launch(["run", "--data-dir", str(fs / "data"), "prog.py"], tmp_path)
    try:
        run.wait_line(b"phase 1 done")
        wait_until(lambda: shutil.disk_usage(fs).used > 8 << 20,
                   "the program's ring")  # made with its first batch
        _fill(fs)
        (tmp_path / "go1").touch()  # phase 2 records while the store has no room
        wait_until(lambda: "waiting for room" in _sidecar_state(fs),
                   "the sidecar to find the disk full (its state file says so)")
        (fs / "filler").unlink()
        (tmp_path / "go2").touch()
        rc = run.wait()
    finally:
        run.kill()
    assert (rc, run.stdout) == (plain.returncode, plain.stdout)
    assert strip_summary(run.stderr) == plain.stderr
    ours = " | ".join(_ours(run))
    assert "error:" not in ours and "21052 sessions" in ours and " 0 dropped" in ours, ours  # + 2 wait_for
    assert "the store's disk was full once" in ours, ours
    figure(f"store's disk full during the run and freed again: program unaffected (exit {rc}),"
           f" the sidecar waited for room and stored every session: {ours[:400]!r}")

WORK = """\
def child():
    print("child recorded nothing")
"""

PARENT = """\
import subprocess, sys, time

def parent():
    print("parent", flush=True)
    return 0

parent()
time.sleep(0.3)  # flushed: this process's ring now exists
subprocess.run([sys.executable, "-c", "import work; work.child()"], check=True)
"""


def test_process_without_room_for_its_ring_is_named(tmp_path: Path,
                                                     tmpfs: Callable[..., Path],
                                                     figure) -> None:
    """Room for the first ring only: the program's child process cannot have one. It runs
    unaffected, unrecorded, and the summary says which processes were not and why."""
    (tmp_path / "prog.py").write_text(PARENT)
    (tmp_path / "work.py").write_text(WORK)
    plain = run_python(["prog.py"], tmp_path)
    fs = tmpfs("12m")  # one 8 MiB ring fits, two do not
    fa = run_cli(["run", "--data-dir", str(fs / "data"), "prog.py"], tmp_path)
    assert (fa.returncode, fa.stdout) == (plain.returncode, plain.stdout) == (
        0, b"parent\nchild recorded nothing\n")
    ours = [line for line in fa.stderr.decode().splitlines() if line.startswith("flowagent:")]
    said = " | ".join(ours).replace(str(fs), "FS")
    assert "(1 process)" in said and "1 process was not recorded" in said, said
    assert "No space left on device" in said, said
    figure(f"12 MiB data filesystem: the program's ring fits, its child's does not: both run "
           f"unaffected; the summary says {said[:260]!r}")
