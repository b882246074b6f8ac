"""One web request, one session: the synthetic ``<request>:METHOD /route/template`` root.

Both protocol middlewares (:mod:`.wsgi`, :mod:`.asgi`) open a :class:`RequestRoot` when a
request enters the application and close it when the response is over (after a streamed body
and background tasks), so everything the request runs nests under it. Framework route lookups
(:mod:`.routes`) only fill in :attr:`RequestRoot.template` once the framework has matched the
URL; the root is named when it closes, so a route known late still names the whole session.

Request data never becomes structure: the name holds a method from a fixed list (anything
else is ``OTHER``) and the framework's route template, never the raw path, so a client
cannot create function names (or make them 100 KB long).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from .. import recorder, tracecontext

METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
                     "CONNECT"))
UNMATCHED = "<unmatched>"
MAX_TEMPLATE = 512  # a route template is code, but a regex route can still be long


def method_name(method: Any) -> str:
    """The request method as it may appear in a session name."""
    if type(method) is bytes:
        method = method.decode("latin-1")
    return method if type(method) is str and method in METHODS else "OTHER"


class _ServerError(Exception):
    """Never raised: stands for a request answered with a 5xx status (its ``<exception>``)."""


class RequestRoot:
    """The open root call of one request."""

    __slots__ = ("frame", "method", "template", "status", "closed", "streaming", "base_path")

    def __init__(self, frame: list[Any], method: str) -> None:
        self.frame = frame
        self.method = method
        self.template: str | None = None
        self.status = 0
        self.closed = False
        self.streaming = False  # the body is produced after the app returned
        self.base_path = ""  # ASGI: the server's root_path, in front of every route

    def name(self) -> str:
        template = self.template
        if template is not None and len(template) > MAX_TEMPLATE:
            template = template[:MAX_TEMPLATE] + "…"
        return f"{self.method} {template or UNMATCHED}"

    def close(self, exc_type: type | None) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            recorder.rename_root(self.frame, self.name())
            if self.status:
                recorder.set_output_shape(self.frame, f"HTTP {self.status}")
            if exc_type is None and self.status >= 500:
                # Handled by the framework and answered 500: still a failed request.
                exc_type = server_error(self.status)
        except Exception:
            recorder.S.agent_errors += 1
        tracecontext.forget(self.frame)
        recorder.close_call(self.frame, exc_type)


_server_errors: dict[int, type] = {}


def server_error(status: int) -> type:
    """An exception type named ``HTTP 5xx`` (what a failed request shows as its exception)."""
    tp = _server_errors.get(status)
    if tp is None:
        tp = _server_errors[status] = type("_ServerError", (_ServerError,), {
            "__module__": "builtins", "__qualname__": f"HTTP {status}"})
    return tp


# The request being served in this context (thread, task, or the threads and tasks it hands
# work to, which copy the context).
_current: ContextVar[RequestRoot | None] = ContextVar("flowagent_request", default=None)


def current() -> RequestRoot | None:
    """The open request this code runs for, if any."""
    root = _current.get()
    return root if root is not None and not root.closed else None


def open_request(method: Any, traceparent: Any = None, tracestate: Any = None
                 ) -> tuple[RequestRoot | None, Any]:
    """Start a request's session, or (None, None) when one is already open here (a framework
    app called by another, a sub-application) or nothing is recorded. The second value is
    the token :func:`leave` needs. A request that carries a W3C ``traceparent`` joins the
    caller's trace."""
    if current() is not None:
        return None, None
    frame = recorder.enter_root(f"{method_name(method)} {UNMATCHED}", always=True)
    if frame is None:
        return None, None
    if traceparent is not None:
        try:
            tracecontext.join(frame, traceparent, tracestate)
        except Exception:
            recorder.S.agent_errors += 1
    root = RequestRoot(frame, method_name(method))
    return root, _current.set(root)


def leave(token: Any) -> None:
    try:
        _current.reset(token)
    except (ValueError, RuntimeError):
        # Closed from another context (a WSGI body closed by the server elsewhere).
        _current.set(None)


def set_template(template: str | None) -> None:
    """The framework matched the URL: name the current request after its route, now, so the
    calls that close before the request name it as their caller."""
    root = current()
    if root is not None and template and template != root.template:
        root.template = template
        recorder.rename_root(root.frame, root.name())
