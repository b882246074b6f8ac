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


from . import frameworks, httpclient, mp, procs, propagation, testing, webclients

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any


def install(backend: Any) -> None:
    procs.install()
    for hooks in (frameworks.HOOKS, httpclient.HOOKS, propagation.HOOKS, testing.HOOKS,
                  webclients.HOOKS, procs.HOOKS):
        for module, hook in hooks.items():
            backend.add_post_import_hook(module, hook)
    backend.add_post_import_hook("multiprocessing.util", mp.patch_mp_util)
    backend.add_post_import_hook("multiprocessing.pool", mp.patch_mp_pool)
    if backend.capabilities.instruments_main:
        backend.add_post_import_hook("multiprocessing.spawn", mp.patch_mp_spawn)
