"""Import time is one flow: calls made while a selected module is imported belong to one
``<import>:module`` session per imported module tree, not to a session per call.

The finder gives each selected module's loader an ``exec_module`` that opens the root when
nothing is current in this context (an import made inside a recorded call stays in that
call's session), so the module's own top-level calls (decorator factories, registries,
configuration) and the imports it makes nest under it. A module whose import recorded no call
leaves no session: the root is opened without announcing a session and is discarded when no
call id was taken meanwhile.

The wrapper carries importlib's own frame file name, so the interpreter strips it from the
traceback of an import that fails, together with importlib's frames (the program sees the
traceback it would see without the agent).
"""

from __future__ import annotations

from types import ModuleType

from .. import recorder

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any, Callable

_IMPORTLIB_FILE = "<frozen importlib._bootstrap_external>"


def _open(name: str) -> list[Any] | None:
    if not recorder.S.on or recorder._get() is not None:
        return None
    return recorder.enter_root(name, module="<import>", always=True, announce=False)


def _close(frame: list[Any], exc_type: type | None) -> None:
    try:
        if recorder.S.next_id() == frame[recorder.CID] + 1:
            recorder.discard(frame)  # nothing was called while the module ran
            return
    except Exception:
        recorder.S.agent_errors += 1
    recorder.close_call(frame, exc_type)


def session_loader(loader: Any, fullname: str) -> None:
    """Make this one loader instance run its module inside an import session."""
    plain_exec: Callable[[ModuleType], None] = loader.exec_module

    def exec_module(module: ModuleType) -> None:
        frame = _open(fullname)
        if frame is None:
            return plain_exec(module)
        exc_type = None
        try:
            return plain_exec(module)
        except BaseException as exc:
            exc_type = type(exc)
            raise
        finally:
            _close(frame, exc_type)

    try:
        exec_module.__code__ = exec_module.__code__.replace(co_filename=_IMPORTLIB_FILE)
    except Exception:
        pass
    loader.exec_module = exec_module
