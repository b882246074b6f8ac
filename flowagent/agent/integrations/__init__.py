"""Framework and runtime entry points, patched when (and only if) the program imports them.

Web requests: one middleware per protocol (:mod:`.wsgi`, :mod:`.asgi`) makes each request
one session rooted at ``<request>:METHOD /route/template`` (:mod:`.webrequest`);
:mod:`.frameworks` says where each framework's app enters them and where its URL matching
names the route. :mod:`.imports` makes import time one session per module tree,
:mod:`.propagation` carries a call's context into the threads and pool work it starts,
:mod:`.testing` makes each pytest test one session, :mod:`.httpclient` (``http.client``,
so urllib, requests and urllib3) and :mod:`.webclients` (httpx, aiohttp) record outgoing
HTTP calls and carry the W3C trace context, :mod:`.mp` keeps multiprocessing
children recording and :mod:`.procs` hangs child processes' sessions under the call
that started them.
"""

from __future__ import annotations

from . import procs, propagation

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any, Callable

# The integrations loaded when their first target module is imported, and the modules each
# one hooks (its HOOKS' keys, in order; a test keeps the two equal): most programs import
# none of these frameworks and clients, and loading every integration (with the request
# roots, the W3C context, the middlewares) cost every recorded process's start. `procs`
# (which patches how children are started, now) and `propagation` (whose target, threading,
# the agent has already loaded) are loaded at once.
LAZY: dict[str, tuple[str, ...]] = {
    "frameworks": ("flask.app", "django.core.handlers.base", "django.core.handlers.wsgi",
                   "django.core.handlers.asgi", "starlette.applications",
                   "starlette.routing", "fastapi.routing"),
    "httpclient": ("http.client",),
    "testing": ("_pytest.runner", "_pytest.assertion.rewrite"),
    "webclients": ("httpx._client", "aiohttp.client"),
}


def _later(integration: str, target: str, attr: str = "") -> Callable[[ModuleType], None]:
    """The hook of ``integration`` for the module ``target`` (its ``HOOKS`` entry, or the
    function ``attr``), imported when ``target`` has been."""

    def hook(module: ModuleType) -> None:
        loaded = __import__(f"{__name__}.{integration}", fromlist=("HOOKS",))
        (getattr(loaded, attr) if attr else loaded.HOOKS[target])(module)

    return hook


def install(backend: Any) -> None:
    procs.install()
    for name in ("frameworks", "httpclient", "propagation", "testing", "webclients", "procs"):
        if name in LAZY:
            for module in LAZY[name]:
                backend.add_post_import_hook(module, _later(name, module))
        else:
            hooks = (propagation if name == "propagation" else procs).HOOKS
            for module, hook in hooks.items():
                backend.add_post_import_hook(module, hook)
    backend.add_post_import_hook("multiprocessing.util", _later("mp", "", "patch_mp_util"))
    backend.add_post_import_hook("multiprocessing.pool", _later("mp", "", "patch_mp_pool"))
    if backend.capabilities.instruments_main:
        backend.add_post_import_hook("multiprocessing.spawn",
                                     _later("mp", "", "patch_mp_spawn"))
