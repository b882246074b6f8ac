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

from .. import recorder, tracecontext

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any

METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
                     "CONNECT"))
UNMATCHED = "<unmatched>"
_FID, _YIELDED = recorder.FID, recorder.YIELDED
_trace_sessions = tracecontext.sessions  # sessions that joined or sent a trace
MAX_TEMPLATE = 512  # a route template is code, but a regex route can still be long
_UNMATCHED_NAMES = {m: f"{m} {UNMATCHED}" for m in (*METHODS, "OTHER")}


def method_name(method: Any) -> str:
    """The request method as it may appear in a session name."""
    if type(method) is bytes:
        method = method.decode("latin-1")
    return method if type(method) is str and method in METHODS else "OTHER"


class _ServerError(Exception):
    """Never raised: stands for a request answered with a 5xx status (its ``<exception>``)."""


# Per request, the root's function id and its output shape are looked up, not built: a
# request costs the program a few dictionary lookups here, whatever its route. Both tables are
# bounded by the program's routes (a method from a fixed list, a template that is code) and
# HTTP statuses; a program that somehow makes more starts them again.
_MAX_CACHED = 4096
_fids: dict[tuple[str, str | None], int] = {}
_status_shapes: dict[int, str] = {}


def root_name(method: str, template: str | None) -> str:
    """The session name of a request: ``METHOD /route/template`` (or ``<unmatched>``)."""
    if template is not None and len(template) > MAX_TEMPLATE:
        template = template[:MAX_TEMPLATE] + "…"
    return f"{method} {template or UNMATCHED}"


def _root_fid(method: str, template: str | None) -> int:
    """The root's function id, registered now: called when ``_fids`` has none (its callers
    look there first, without a call per request)."""
    if len(_fids) >= _MAX_CACHED:
        _fids.clear()
    fid = _fids[method, template] = recorder.register_function(
        "<request>", root_name(method, template), "", 0, (), "request")
    return fid


def _status_shape(status: int) -> str:
    """The output shape of a status, made now: called when ``_status_shapes`` has none."""
    if len(_status_shapes) >= _MAX_CACHED:
        _status_shapes.clear()
    shape = _status_shapes[status] = f"HTTP {status}"
    return shape


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
        return root_name(self.method, self.template)

    def close(self, exc_type: type | None) -> None:
        if self.closed:
            return
        self.closed = True
        frame = self.frame
        # The root already carries its name: it was opened with it and renamed when the
        # route was matched (set_template), so that calls closing earlier name it too.
        status = self.status
        if status:
            try:
                # recorder.set_output_shape, without a call per request
                frame[_YIELDED] = _status_shapes.get(status) or _status_shape(status)
                if exc_type is None and status >= 500:
                    # Handled by the framework and answered 500: still a failed request.
                    exc_type = server_error(status)
            except Exception:
                recorder.S.agent_errors += 1
        if _trace_sessions:
            tracecontext.forget(frame)
        recorder.close_call(frame, exc_type)


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
_current_get = _current.get


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
    outer = _current_get()
    if outer is not None and not outer.closed:
        return None, None
    name = method if type(method) is str and method in METHODS else method_name(method)
    # Opened as ``METHOD <unmatched>`` (renamed when the route matches), with its cached id.
    frame = recorder.enter_root(_UNMATCHED_NAMES[name], always=True,
                                fid=_fids.get((name, None)) or _root_fid(name, None))
    if frame is None:
        return None, None
    if traceparent is not None:
        try:
            tracecontext.join(frame, traceparent, tracestate)
        except Exception:
            recorder.S.agent_errors += 1
    root = RequestRoot(frame, name)
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
    root = _current_get()
    if root is not None and template and template != root.template and not root.closed:
        root.template = template
        root.frame[_FID] = _fids.get((root.method, template)) or _root_fid(root.method, template)
