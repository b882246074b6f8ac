"""Where a run's files live, and how a process and its sessions are named.

The launcher makes ``<data dir>/runs/<run id>/`` and its ``rings/`` folder; each recorded
process makes its ring there as ``<pid>-<key>.ring`` (``key``: 48 random bits, printed as 12
hex digits, the process key ``pk``), lists what it had imported before its agent started in
``<pid>.preimported``, and reads ``control.json`` (written by ``flowagent control``). The
sidecar logs to ``sidecar.log`` and says what it is doing in ``sidecar.state``. A session is named ``<pk>-<number>``, the number being the
``ses`` field of its process's call records. Every side reads these names from here.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # the launcher and the agent import this: typing costs ~3 ms each
if TYPE_CHECKING:
    from collections.abc import Iterable

RUNS = "runs"
RINGS = "rings"
RING_SUFFIX = ".ring"
PREIMPORTED_SUFFIX = ".preimported"
CONTROL_FILE = "control.json"
SIDECAR_LOG = "sidecar.log"
SIDECAR_STATE = "sidecar.state"


def run_dir(data_dir: str, run_id: str) -> str:
    return os.path.join(data_dir, RUNS, run_id)


def rings_dir(run_dir: str) -> str:
    return os.path.join(run_dir, RINGS)


def process_key(key: int) -> str:
    """The process key ``pk`` as it appears in ring names and session ids."""
    return f"{key:012x}"


def ring_name(pid: int, key: int) -> str:
    return f"{pid}-{process_key(key)}{RING_SUFFIX}"


def preimported_name(pid: int) -> str:
    return f"{pid}{PREIMPORTED_SUFFIX}"


def ring_process_key(name: str) -> str:
    """``"<pid>-<pk>.ring"`` → ``pk``."""
    return name[:-len(RING_SUFFIX)].rpartition("-")[2]


def session_id(pk: str, ses: int) -> str:
    return f"{pk}-{ses}"


def session_ids(pk: str, numbers: Iterable[int]) -> list[str]:
    """:func:`session_id` of each number, built by C-level builtins (a frame can finish
    thousands of one-call sessions)."""
    return list(map(f"{pk}-".__add__, map(str, numbers)))


def session_number(session_id: str) -> int:
    """The process's own number of a session (``"<pk>-<number>"``), the ``ses`` field of its
    records; 0 for an id of another form (a session written by a tool)."""
    tail = session_id.rpartition("-")[2]
    return int(tail) if tail.isdigit() else 0

