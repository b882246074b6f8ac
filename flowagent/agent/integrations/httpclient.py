"""Outgoing HTTP calls made with ``http.client`` (so ``urllib.request``, and requests and
urllib3, which build on it) are recorded as calls of the session that makes them:
``<http>:GET host:port/route/{int}``, output the response status (a 5xx status is an
``error`` whose exception reads ``HTTP 503``).

The name is a route-like template of the URL: no scheme, no query or fragment, and path
segments that look like values (numbers, hex or UUID ids, long tokens) replaced by
``{int}``, ``{id}`` or ``{}``, so the name says which endpoint was called, not with what.

No agent frame sits on the program's stack where ``http.client`` can raise: the call is
noted when ``putrequest`` assigns the connection's ``_method`` and ends when the response's
``begin`` assigns its ``status`` (both are plain attribute assignments, made only after the
checks that can fail), through data descriptors that store the value where it always was (the
instance dict). A request that fails before a status arrives (connection refused, timeout)
is left unrecorded rather than guessed.

The call carries a W3C ``traceparent`` (:mod:`flowagent.agent.tracecontext`) unless the
program set one itself: the header is added to the connection's buffered header lines when
``endheaders`` sends them (the buffer of a recorded call is a list whose ``extend``, the one
step of ``_send_output`` before the lines are joined, adds it), so again no agent frame is
on the stack where the program's request can fail.
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from types import ModuleType

from .. import recorder, tracecontext
from . import webrequest

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any, Callable

MAX_NAME = 256
_INT = r"^\d+$"
_ID = r"^(?=.*\d)[0-9a-fA-F-]{8,}$"

_pending: ContextVar[list[Any] | None] = ContextVar("flowagent_http_call", default=None)
_fids: dict[str, int] = {}
# (method, host, url) -> the call's function id: a program calls the same URLs again and
# again, and the template is a pure function of the three (no URL parse, no pattern match
# and no name built per request). Bounded: a program calling ever new URLs starts it again.
_MAX_URLS = 4096
_url_fids: dict[tuple[str, str, str], int] = {}
_YIELDED = recorder.YIELDED


_parsers: tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]] | None = None


def _load_parsers() -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """urlsplit and the two segment patterns, compiled: loaded once a program makes an HTTP
    call, not at every start (and not looked up in re's cache per segment)."""
    global _parsers
    import re
    from urllib.parse import urlsplit

    _parsers = (urlsplit, re.compile(_INT).match, re.compile(_ID).match)
    return _parsers


def url_template(method: str, host: str, url: str) -> str:
    """``GET example.org:443/items/{int}`` for ``GET /items/42?x=1`` on that host."""
    urlsplit, is_int, is_id = _parsers or _load_parsers()
    parts = urlsplit(url)
    if parts.netloc:  # an absolute URL (a request through a plain HTTP proxy)
        host = parts.netloc.rpartition("@")[2]
    segments = []
    for seg in parts.path.split("/"):
        if is_int(seg):
            seg = "{int}"
        elif is_id(seg):
            seg = "{id}"
        elif len(seg) > 32:
            seg = "{}"
        segments.append(seg)
    name = f"{webrequest.method_name(method)} {host}{'/'.join(segments) or '/'}"
    return name if len(name) <= MAX_NAME else name[:MAX_NAME] + "…"


def _fid(name: str) -> int:
    fid = _fids.get(name)
    if fid is None:
        fid = _fids[name] = recorder.register_function("<http>", name, "", 0, (), "request")
    return fid


class _TracedBuffer(list["Any"]):
    """A connection's header buffer that adds the trace headers of the recorded call
    ``frame`` when ``_send_output`` ends the header block (``extend((b"", b""))``)."""

    __slots__ = ("frame",)
    frame: list[Any] | None

    def extend(self, items: Any) -> None:
        frame = self.frame
        if frame is not None:
            self.frame = None
            try:
                add_trace_lines(self, frame)
            except Exception:
                recorder.S.agent_errors += 1
        list.extend(self, items)


def add_trace_lines(lines: list[Any], frame: list[Any]) -> None:
    """Header lines (``b"Name: value"``, the first one the request line) get a
    ``traceparent`` and the session's ``tracestate`` unless the program sent its own."""
    own_parent = own_state = False
    for line in lines[1:]:
        if type(line) is bytes:
            head = line[:12].lower()
            if head == b"traceparent:":
                tracecontext.adopt(frame, line[12:].strip())
                own_parent = True
            elif head[:11] == b"tracestate:":
                own_state = True
    if not own_parent:
        parent, state = tracecontext.outgoing(frame)
        lines.append(b"traceparent: " + parent.encode("ascii"))
        if state and not own_state:
            lines.append(b"tracestate: " + state.encode("latin-1"))


def _begin(conn: Any, method: Any) -> None:
    """``putrequest`` assigned the method: open the call (a leaf, never current)."""
    buffer = vars(conn).get("_buffer")
    if type(buffer) is _TracedBuffer:
        buffer.frame = None  # a kept-alive connection's previous call
    if recorder._get() is None or type(method) is not str:
        return
    url = sys._getframe(2).f_locals.get("url")  # putrequest's own argument
    if type(url) is not str:
        return
    # Attributes, not the instance dict: urllib3's connections make `host` a property.
    tunnel = getattr(conn, "_tunnel_host", None)
    host = tunnel or getattr(conn, "host", None)
    port = getattr(conn, "_tunnel_port", None) if tunnel else getattr(conn, "port", None)
    frame = open_client_call(method, f"{host}:{port}" if port else str(host), url)
    if frame is None:
        return
    _pending.set(frame)
    if type(buffer) is list and not buffer:
        buffer = vars(conn)["_buffer"] = _TracedBuffer()
    if type(buffer) is _TracedBuffer:
        buffer.frame = frame


def _end(status: Any) -> None:
    """The response's ``begin`` assigned the status: close the call."""
    frame = _pending.get()
    if frame is None or type(status) is not int:
        return
    _pending.set(None)
    close_client_call(frame, status)


def open_client_call(method: str, host: str, url: str) -> list[Any] | None:
    """Open the call of an outgoing request (a leaf, left not current: a request that fails
    before a status arrives is never closed, so never recorded), or None outside a session."""
    if recorder._get() is None:
        return None
    key = (method, host, url)
    fid = _url_fids.get(key)
    if fid is None:
        if len(_url_fids) >= _MAX_URLS:
            _url_fids.clear()
        fid = _url_fids[key] = _fid(url_template(method, host, url))
    frame = recorder.open_call(fid, ())
    if frame is not None and recorder._get() is frame:
        recorder._set(frame[recorder.OUTER])
    return frame


def close_client_call(frame: list[Any], status: int) -> None:
    """The response arrived: the call ends with its status (a 5xx one as an error)."""
    # recorder.set_output_shape, without a call per request
    frame[_YIELDED] = webrequest._status_shapes.get(status) or webrequest._status_shape(status)
    recorder.close_call(frame, webrequest.server_error(status) if status >= 500 else None)


def _stored_in_dict(name: str, on_set: Callable[[Any, Any], None]) -> property:
    """A data descriptor that keeps the value in the instance dict (where it was) and calls
    ``on_set`` on each assignment."""

    def get(self: Any) -> Any:
        try:
            return vars(self)[name]
        except KeyError:
            raise AttributeError(name) from None

    def set_(self: Any, value: Any) -> None:
        vars(self)[name] = value
        try:
            on_set(self, value)
        except Exception:
            recorder.S.agent_errors += 1

    def delete(self: Any) -> None:
        try:
            del vars(self)[name]
        except KeyError:
            raise AttributeError(name) from None

    return property(get, set_, delete)


def patch_http_client(module: ModuleType) -> None:
    conn, resp = module.HTTPConnection, module.HTTPResponse
    if isinstance(conn.__dict__.get("_method"), property) \
            or isinstance(resp.__dict__.get("status"), property):
        return  # patched already, or not the http.client this was written for
    conn._method = _stored_in_dict("_method", _begin)
    resp.status = _stored_in_dict("status", lambda self, value: _end(value))


HOOKS: dict[str, Callable[[ModuleType], None]] = {"http.client": patch_http_client}
