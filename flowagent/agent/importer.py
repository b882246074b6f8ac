"""Import hook: a meta-path finder that instruments selected modules as they are imported,
and runs post-import hooks for framework modules (Flask) without importing them first.

The finder asks the finders after it for the spec; for a selected pure-Python source module
it makes that spec's own loader compile instrumented code (see :func:`instrument_loader`).
"""

from __future__ import annotations

import importlib.machinery
import sys
import threading
from types import ModuleType

from . import codecache, recorder, runstate
from .select import Selector
from .guard import program_exception

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any, Callable

    PostImportHook = Callable[[ModuleType], None]


counter = [0, 0]  # modules, functions instrumented in this process


def instrument_loader(loader: importlib.machinery.SourceFileLoader, nested: bool) -> None:
    """Make this one SourceFileLoader compile instrumented code.

    Only the instance gets a ``get_code``: the module's ``__loader__`` and
    ``__spec__.loader`` stay a plain ``SourceFileLoader`` as far as the program can tell.
    Instrumented code comes from :mod:`codecache` (its own ``.flowagent-<key>.pyc`` entries,
    with function ids remapped at load); the program's own ``.pyc`` files are never touched.
    """
    plain_get_code = loader.get_code

    def get_code(fullname: str) -> Any:
        source = loader.get_data(loader.path)
        try:
            code, n = codecache.instrumented_code(source, loader.path, fullname, nested)
        except SyntaxError:
            raise
        except Exception as exc:
            if type(exc) is not RecursionError and program_exception(exc):
                raise
            # Our bug must not break the user's import: fall back to the plain code.
            recorder.S.agent_errors += 1
            return plain_get_code(fullname)
        counter[0] += 1
        counter[1] += n
        return code

    loader.get_code = get_code  # type: ignore[method-assign]


class _ChainedLoader:
    """Delegates everything to the real loader and calls hooks after the module executed."""

    def __init__(self, loader: Any, hooks: list[PostImportHook]) -> None:
        self._loader = loader
        self._hooks = hooks

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        # Keep the module's loader the real one (importlib.resources and friends look at it).
        try:
            module.__loader__ = self._loader
            if module.__spec__ is not None:
                module.__spec__.loader = self._loader
        except Exception as exc:
            if type(exc) is not RecursionError and program_exception(exc):
                raise
            pass
        for hook in self._hooks:
            try:
                hook(module)
            except Exception as exc:
                if type(exc) is not RecursionError and program_exception(exc):
                    raise
                recorder.S.agent_errors += 1


class Finder:
    """The meta-path finder. Installed at position 0; removable with :meth:`uninstall`."""

    def __init__(self, selector: Selector, nested: bool,
                 post_import: dict[str, list[PostImportHook]], instrument: bool = True) -> None:
        self.selector = selector
        self.post_import = post_import
        self.nested = nested
        self.instrument = instrument  # False: backends that see code at run time
        self._busy = threading.local()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if getattr(self._busy, "on", False):
            return None  # re-entered from a finder below us
        hooks = self.post_import.get(fullname)
        wanted = self.selector.wants_name(fullname)
        if wanted is False and hooks is None:
            return None
        self._busy.on = True
        try:
            spec = self._find_below(fullname, path, target)
        finally:
            self._busy.on = False
        if spec is None:
            return None
        loader = spec.loader
        if hooks is not None:
            spec.loader = _ChainedLoader(loader, hooks)
            return spec
        if type(loader) is not importlib.machinery.SourceFileLoader or not spec.origin:
            return None  # extension modules, namespace packages, zip imports: left alone
        if wanted is None and not self.selector.wants(fullname, spec.origin):
            return None
        if self.instrument:
            instrument_loader(loader, self.nested)
        from .integrations.imports import session_loader

        session_loader(loader, fullname)
        # A selected module: the program is about to record, and it imports right now (the
        # main thread's import being the safe point for the batch codec's own).
        transport = runstate.transport
        if transport is not None:
            transport.prepare_encoder()
        return spec

    def _find_below(self, fullname: str, path: Any, target: Any) -> Any:
        for finder in list(sys.meta_path):
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                return spec
        return None

    def install(self) -> None:
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass

    def invalidate_caches(self) -> None:
        pass
