"""W3C Trace Context in the host process: which trace a session belongs to, and the span id
each outgoing HTTP call sent, so a reader can hang another service's request under the
client call that made it.

* A request that arrives with a valid ``traceparent`` *joins* that trace: its session notes
  the trace id and the caller's span id (:func:`join`).
* An outgoing call asks :func:`outgoing` for its header: the session's trace (a new random
  trace id for a session that has none yet), and a new span id for this call. When the
  program (or OpenTelemetry) already set a ``traceparent``, that header is sent unchanged
  and the call notes the span id found in it (:func:`adopt`).

Each of these leaves a small entry ``[session, kind, trace id, span id, call id]`` that the
flusher sends in the batch's ``traces`` list; the sidecar stores them beside the session.
Nothing here imports more than the standard library.
"""

from __future__ import annotations

from random import Random

from . import recorder

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any

JOINED, SENT = 0, 1  # entry kinds: the session joined a trace / a call sent a span id

_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
MAX_TRACESTATE = 512  # the specification's own limit is 32 list members
_MAX_SESSIONS = 4096  # sessions whose trace is remembered (oldest forgotten first)

# Ids come from a generator of our own, seeded from the OS and again in a forked child: the
# program's `random` state is never touched, and an id costs no system call.
_ids = Random()


def _new_id(bits: int) -> str:
    return f"{_ids.getrandbits(bits) or 1:0{bits // 4}x}"


# session id -> [trace id, flags, tracestate or None]
_sessions: dict[int, list[Any]] = {}
# The same dict, read by the request roots: while it is empty a session has nothing to forget.
sessions = _sessions
# entries not yet sent (taken by the flusher)
_entries: list[list[Any]] = []


def parse(value: Any) -> tuple[str, str, str] | None:
    """``(trace id, parent span id, flags)`` of a ``traceparent`` value, or None when it is
    not one this version of the specification accepts."""
    if type(value) is bytes:
        value = value.decode("latin-1")
    if type(value) is not str or len(value) > 512:
        return None
    fields = _fields(value.strip())
    if fields is None:
        return None
    version, trace, span, flags, rest = fields
    if version == "ff" or (version == "00" and rest) or trace == _ZERO_TRACE \
            or span == _ZERO_SPAN:
        return None
    return trace, span, flags


def _fields(v: str) -> tuple[str, str, str, str, str] | None:
    """What ``^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$`` matches of
    a stripped value, without `re` (which with `enum` would load into every recorded
    process's start): version, trace id, span id, flags, the rest ("" when none)."""
    if len(v) < 55 or v[2] != "-" or v[35] != "-" or v[52] != "-":
        return None
    rest = v[55:]
    if rest and (rest[0] != "-" or "\n" in rest):
        return None
    version, trace, span, flags = v[0:2], v[3:35], v[36:52], v[53:55]
    if not _HEX.issuperset(version + trace + span + flags):
        return None
    return version, trace, span, flags, rest


def header(trace: str, span: str, flags: str = "01") -> str:
    return f"00-{trace}-{span}-{flags}"


def _remember(ses: int, state: list[Any]) -> None:
    if len(_sessions) >= _MAX_SESSIONS:
        for key in list(_sessions)[:_MAX_SESSIONS // 4]:
            del _sessions[key]
    _sessions[ses] = state


def join(frame: list[Any] | None, traceparent: Any, tracestate: Any = None) -> None:
    """A request root ``frame`` arrived with these headers: its session joins the trace."""
    if frame is None or not frame[recorder.CID]:
        return
    parsed = parse(traceparent)
    if parsed is None:
        return
    trace, parent, flags = parsed
    if type(tracestate) is bytes:
        tracestate = tracestate.decode("latin-1")
    if type(tracestate) is not str or len(tracestate) > MAX_TRACESTATE:
        tracestate = None
    ses = frame[recorder.SES]
    _remember(ses, [trace, flags, tracestate])
    _entries.append([ses, JOINED, trace, parent, frame[recorder.CID]])


def forget(frame: list[Any] | None) -> None:
    """The request's session ended."""
    if frame is not None:
        _sessions.pop(frame[recorder.SES], None)


def outgoing(frame: list[Any]) -> tuple[str, str | None]:
    """The ``traceparent`` (and ``tracestate``, or None) the outgoing call ``frame`` sends."""
    ses = frame[recorder.SES]
    state = _sessions.get(ses)
    if state is None:
        state = [_new_id(128), "01", None]
        _remember(ses, state)
    span = f"{_ids.getrandbits(64) or 1:016x}"  # _new_id(64) and header(), without two calls
    _entries.append([ses, SENT, state[0], span, frame[recorder.CID]])
    return f"00-{state[0]}-{span}-{state[1]}", state[2]


def adopt(frame: list[Any], traceparent: Any) -> None:
    """The program sent its own ``traceparent`` on the call ``frame``: note its span id."""
    parsed = parse(traceparent)
    if parsed is not None:
        _entries.append([frame[recorder.SES], SENT, parsed[0], parsed[1], frame[recorder.CID]])


def take() -> list[list[Any]]:
    """The entries made since the last call (the flusher sends them with the batch)."""
    n = len(_entries)
    if not n:
        return []
    out = _entries[:n]
    del _entries[:n]
    return out


def reset_after_fork() -> None:
    """The parent sends its own entries; a forked child starts with none (and ids of its own)."""
    _ids.seed()
    _sessions.clear()
    del _entries[:]
