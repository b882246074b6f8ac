"""Processes of a run that are still running when the run ends.

A daemon that forked away from the program, or a worker the program left behind, outlives
the launcher. Its ring (if it has one yet: a ring is made with the first recorded batch) is
not finished then, and what it records later is stored by ``flowagent sidecar --resume``. The
summary names these processes, so nothing they record is lost without a word.

They are found two ways: a ring whose producer has not marked a clean exit and whose pid
still exists, and (for a process that has recorded nothing yet) any live Python process whose
environment carries this run's id (every process of the run inherits it; ``/proc`` on Linux).
"""

from __future__ import annotations

import os
from collections.abc import Iterable



def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    argv = [os.fsdecode(a) for a in raw.split(b"\0")[:-1]]
    if argv[1:3] == ["-m", "flowagent.agent.runmain"]:  # the launcher's shim for scripts
        argv = [argv[0], *argv[3:]]
    return argv


def _alive(pid: int) -> bool:
    """Exists and is not a zombie (a zombie has ended; only its parent has not reaped it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")


def scan(run_id: str) -> dict[int, list[str]]:
    """Live Python processes whose environment names this run: pid -> command line."""
    marker = f"FLOWAGENT_RUN_ID={run_id}".encode()
    me = os.getpid()
    found: dict[int, list[str]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        try:
            exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
            if not exe.startswith("python"):
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if marker + b"\0" in env + b"\0" and _alive(pid):
            from ..redact import mask_argv  # its patterns compile at the end of a run only

            found[pid] = mask_argv(_cmdline(pid))
    return found


def still_running(run_id: str, rings: Iterable[tuple[int, list[str], bool]]
                  ) -> list[dict[str, object]]:
    """``rings``: (pid, argv, producer alive) of every ring of the run. Every process of the
    run still running, once, as ``{"pid", "argv"}``."""
    out: dict[int, list[str]] = {}
    for pid, argv, alive in rings:
        if alive and _alive(pid):
            out[pid] = list(argv)
    for pid, argv in scan(run_id).items():
        out.setdefault(pid, argv)
    return [{"pid": pid, "argv": argv} for pid, argv in sorted(out.items())]
