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
from helpers import run_cli, run_python, strip_summary
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
    with open(directory / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    assert shutil.disk_usage(directory).free < 65536


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
    assert "disk is full" in ours or "No space left" in ours, ours
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
