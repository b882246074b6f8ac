"""Outgoing HTTP calls of the clients that do not build on ``http.client``: httpx (``Client``
and ``AsyncClient``) and aiohttp's ``ClientSession``. Each call is recorded like one made
with ``http.client`` (:mod:`.httpclient`: ``<http>:GET host:port/route/{int}``, the status as
output) and carries a W3C ``traceparent`` unless the program set one.

Both clients have their own extension points, called before the request is sent and after
its response arrived, and the patch only adds one to every client the program makes:

* httpx: a ``request`` and a ``response`` event hook (async ones for ``AsyncClient``),
  added whenever the client's hook table is assigned (``__init__`` and the
  ``event_hooks`` setter);
* aiohttp: a ``TraceConfig`` (``on_request_start``/``on_request_end``), added whenever the
  session's ``_trace_configs`` is assigned.

So no agent frame sits on the stack where the request itself can fail, and a request that
fails before its status arrives stays unrecorded, as with ``http.client``.
"""

from __future__ import annotations

from types import ModuleType, SimpleNamespace

from .. import recorder, tracecontext
from .httpclient import _stored_in_dict, close_client_call, open_client_call

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any, Callable

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

# httpx: the open call of each request in flight, by the request's id (bounded: a request
# that failed never reaches the response hook).
_in_flight: dict[int, list[Any]] = {}
_MAX_IN_FLIGHT = 1024


def _host(scheme: Any, host: Any, port: Any) -> str:
    port = port or _DEFAULT_PORTS.get(str(scheme))
    return f"{host}:{port}" if port else str(host)


def _start(method: Any, host: str, path: Any, headers: Any) -> list[Any] | None:
    """Open the call and give ``headers`` (a case-insensitive mutable mapping) the trace
    headers; the program's own ``traceparent`` is kept and adopted."""
    if type(method) is not str or type(path) is not str:
        return None
    frame = open_client_call(method.upper(), host, path)
    if frame is None:
        return None
    own = headers.get("traceparent")
    if own is not None:
        tracecontext.adopt(frame, own)
    else:
        parent, state = tracecontext.outgoing(frame)
        headers["traceparent"] = parent
        if state and "tracestate" not in headers:
            headers["tracestate"] = state
    return frame


# -- httpx -------------------------------------------------------------------------------

def _httpx_request(request: Any) -> None:
    try:
        url = request.url
        frame = _start(request.method, _host(url.scheme, url.host, url.port), url.path,
                       request.headers)
        if frame is not None:
            if len(_in_flight) >= _MAX_IN_FLIGHT:
                _in_flight.clear()
            _in_flight[id(request)] = frame
    except Exception:
        recorder.S.agent_errors += 1


def _httpx_response(response: Any) -> None:
    try:
        frame = _in_flight.pop(id(response.request), None)
        if frame is not None:
            close_client_call(frame, int(response.status_code))
    except Exception:
        recorder.S.agent_errors += 1


async def _httpx_arequest(request: Any) -> None:
    _httpx_request(request)


async def _httpx_aresponse(response: Any) -> None:
    _httpx_response(response)


def _httpx_hooks(client: Any, hooks: Any) -> None:
    if type(hooks) is not dict:
        return
    is_async = hasattr(type(client), "aclose")  # AsyncClient awaits its hooks
    request_hook, response_hook = (_httpx_arequest, _httpx_aresponse) if is_async \
        else (_httpx_request, _httpx_response)
    requests, responses = hooks.get("request"), hooks.get("response")
    if type(requests) is list and request_hook not in requests:
        requests.append(request_hook)
    if type(responses) is list and response_hook not in responses:
        responses.insert(0, response_hook)  # before a program's hook that may raise


def patch_httpx(module: ModuleType) -> None:
    base = getattr(module, "BaseClient", None)
    if base is None or isinstance(base.__dict__.get("_event_hooks"), property):
        return
    base._event_hooks = _stored_in_dict("_event_hooks", _httpx_hooks)


# -- aiohttp -----------------------------------------------------------------------------

async def _aiohttp_start(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    try:
        url = params.url
        ctx.flowagent_call = _start(params.method, _host(url.scheme, url.host, url.port),
                                    url.path, params.headers)
    except Exception:
        recorder.S.agent_errors += 1


async def _aiohttp_end(session: Any, ctx: SimpleNamespace, params: Any) -> None:
    try:
        frame = getattr(ctx, "flowagent_call", None)
        if frame is not None:
            ctx.flowagent_call = None
            close_client_call(frame, int(params.response.status))
    except Exception:
        recorder.S.agent_errors += 1


_aiohttp_config: list[Any] = []


def _aiohttp_configs(session: Any, configs: Any) -> None:
    if type(configs) is not list or not _aiohttp_config:
        return
    ours = _aiohttp_config[0]
    if ours not in configs:
        # A copy: the list the program passed in stays its own.
        vars(session)["_trace_configs"] = [*configs, ours]


def patch_aiohttp(module: ModuleType) -> None:
    cls = module.ClientSession
    if isinstance(cls.__dict__.get("_trace_configs"), property):
        return
    from aiohttp.tracing import TraceConfig

    config = TraceConfig()
    config.on_request_start.append(_aiohttp_start)
    config.on_request_end.append(_aiohttp_end)
    config.freeze()
    _aiohttp_config.append(config)
    cls._trace_configs = _stored_in_dict("_trace_configs", _aiohttp_configs)


HOOKS: dict[str, Callable[[ModuleType], None]] = {
    "httpx._client": patch_httpx,
    "aiohttp.client": patch_aiohttp,
}
