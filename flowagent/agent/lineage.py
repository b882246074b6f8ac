"""Which recorded call started this process (or this pool task), so a child's work belongs to
the session of the call that started it.

A *link* names the parent call: its session (``"<process key>-<session number>"``, the id
the store gives that session), its call id, its function's name and its process id. A
process holds at most one link for everything it does (:data:`process`: a child forked,
spawned or run as a subprocess from inside a call), and a pool task holds its own for the
time it runs (:data:`_task`, set by the carrier the submission was wrapped in, see
:mod:`flowagent.agent.integrations.procs`). Every session this process starts while a link
is in force is announced with it (:func:`started`); the flusher sends the announcements in
the batch's ``links`` list, and the sidecar hangs the session under the parent call.

The link travels to the child in memory for ``fork`` (read in the child from the stack it
inherited, before anything else runs there: the parent's fork runs no code of ours), in the
environment variable :data:`ENV` for anything that ``exec``s a new Python,
and in multiprocessing's own preparation data for spawned and forkserver children.
"""

from __future__ import annotations

import os
from contextvars import ContextVar

from ..protocol.rundir import process_key, session_id
from . import recorder, runstate

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any, Optional

ENV = "FLOWAGENT_PARENT"

# (parent session key, parent call id, parent function name, parent pid)
Link = tuple[str, int, str, int]

process: Optional[Link] = None  # the link of everything this process does
_task: ContextVar[Optional[Link]] = ContextVar("flowagent_parent_call", default=None)
_entries: list[list[Any]] = []  # [session, *link], taken by the flusher
_run = os.environ.get("FLOWAGENT_RUN_ID", "")


def _process_key() -> int:
    """This process's key (its transport's, which a fork renews): the first part of the
    ids of its sessions."""
    transport = runstate.transport
    return transport.key if transport is not None and transport.pid == os.getpid() else 0


def here() -> Optional[Link]:
    """The link for a child started now: the current recorded call, or, outside any call,
    whatever this process or pool task itself hangs under."""
    return _link(_process_key(), os.getpid())


def _link(key: int, pid: int) -> Optional[Link]:
    """The link to the current call of the process with this key and pid."""
    frame = recorder._get()
    if frame is not None and frame[recorder.GEN] is recorder.S.gen and frame[recorder.CID]:
        if key:
            module, qualname = recorder._functions[frame[recorder.FID]][:2]
            return (session_id(process_key(key), frame[recorder.SES]), frame[recorder.CID],
                    f"{module}:{qualname}", pid)
    return _task.get() or process


def started(ses: int) -> None:
    """A session starts in this process: announce its link, if one is in force."""
    link = _task.get() or process
    if link is not None:
        _entries.append([ses, *link])


def take() -> list[list[Any]]:
    """The announcements made since the last call (the flusher sends them)."""
    n = len(_entries)
    if not n:
        return []
    out = _entries[:n]
    del _entries[:n]
    return out


def encode(link: Link) -> str:
    """The link as text for the environment or the preparation data (run id first, so a
    child of another run, nested or not, ignores it)."""
    key, call, function, pid = link
    return f"{_run}|{key}|{call}|{pid}|{function}"


def decode(text: Any) -> Optional[Link]:
    """The link in ``text`` if it is one of this run's, else None."""
    if type(text) is not str:
        return None
    parts = text.split("|", 4)
    if len(parts) != 5 or parts[0] != _run or not parts[2].isdigit() or not parts[3].isdigit():
        return None
    return parts[1], int(parts[2]), parts[4], int(parts[3])


def adopt(text: Any) -> None:
    """This process was started with ``text`` as its link (or none: ``None``)."""
    global process
    process = decode(text)


def inherit_at_fork(parent_key: int, parent_pid: int) -> None:
    """In a forked child, before the recorder forgets the parent's frames: whatever the child
    does belongs to the call that forked it (the forking thread's current call, still on the
    stack the child inherited). The parent's announcements not yet sent are the parent's."""
    global process
    del _entries[:]
    try:
        link = _link(parent_key, parent_pid)
    except Exception:
        recorder.S.agent_errors += 1
        return
    if link is not None:
        process = link
