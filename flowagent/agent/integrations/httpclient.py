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
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from types import ModuleType
from typing import Any, Callable

from .. import recorder
from . import webrequest

MAX_NAME = 256
_INT = r"^\d+$"
_ID = r"^(?=.*\d)[0-9a-fA-F-]{8,}$"

_pending: ContextVar[list | None] = ContextVar("flowagent_http_call", default=None)
_fids: dict[str, int] = {}


def url_template(method: str, host: str, url: str) -> str:
    """``GET example.org:443/items/{int}`` for ``GET /items/42?x=1`` on that host."""
    import re  # imported once a program makes an HTTP call, not at every start
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.netloc:  # an absolute URL (a request through a plain HTTP proxy)
        host = parts.netloc.rpartition("@")[2]
    segments = []
    for seg in parts.path.split("/"):
        if re.match(_INT, seg):
            seg = "{int}"
        elif re.match(_ID, seg):
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


def _begin(conn: Any, method: Any) -> None:
    """``putrequest`` assigned the method: open the call (a leaf, never current)."""
    if recorder._get() is None or type(method) is not str:
        return
    url = sys._getframe(2).f_locals.get("url")  # putrequest's own argument
    if type(url) is not str:
        return
    # Attributes, not the instance dict: urllib3's connections make `host` a property.
    tunnel = getattr(conn, "_tunnel_host", None)
    host = tunnel or getattr(conn, "host", None)
    port = getattr(conn, "_tunnel_port", None) if tunnel else getattr(conn, "port", None)
    name = url_template(method, f"{host}:{port}" if port else str(host), url)
    frame = recorder.open_call(_fid(name), ())
    if frame is None:
        return
    if recorder._get() is frame:
        recorder._set(frame[recorder.OUTER])
    _pending.set(frame)


def _end(status: Any) -> None:
    """The response's ``begin`` assigned the status: close the call."""
    frame = _pending.get()
    if frame is None or type(status) is not int:
        return
    _pending.set(None)
    recorder.set_output_shape(frame, f"HTTP {status}")
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
