"""What every instrumentation backend shares: the :class:`Backend` interface, its
:class:`Capabilities`, and the post-import hooks the framework integrations hang on.

Its own module so that :mod:`backends` (the chooser) and each backend living elsewhere
(:mod:`monitor`) import it, and the chooser can import a backend without a cycle.
"""

from __future__ import annotations

import sys

from ..record import NamedTuple
from . import recorder
from .guard import program_exception
from .importer import Finder
from .select import Selector

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Protocol

    from .importer import PostImportHook
else:
    Protocol = object  # the interface is for the type checker; nothing subclasses it


class Capabilities(NamedTuple):
    exception_types: bool      # the recorded exception type is the real one
    instruments_main: bool     # needs the runmain shim to see the main script


class Backend(Protocol):
    name: str
    capabilities: Capabilities

    def install(self, selector: Selector, nested: bool) -> None: ...
    def uninstall(self) -> None: ...
    def add_post_import_hook(self, module: str, hook: PostImportHook) -> None: ...


class _NothingSelected(Selector):
    def __init__(self) -> None:
        super().__init__((), (), ())

    def wants_name(self, name: str) -> bool | None:
        return False


class HooksMixin:
    """Post-import hooks (framework integrations), with or without instrumenting imports."""

    finder: Finder | None = None
    _post_import: dict[str, list[PostImportHook]]

    def add_post_import_hook(self, module: str, hook: PostImportHook) -> None:
        if module in sys.modules:  # already imported (e.g. before the agent started)
            try:
                hook(sys.modules[module])
            except Exception as exc:
                if type(exc) is not RecursionError and program_exception(exc):
                    raise
                recorder.S.agent_errors += 1
            return
        self._post_import.setdefault(module, []).append(hook)

    def _install_finder(self, selector: Selector, nested: bool, instrument: bool = True) -> None:
        self.finder = Finder(selector, nested, self._post_import, instrument)
        self.finder.install()

    def _install_hooks_only(self, nested: bool, selector: Selector | None = None) -> None:
        """For backends that see code at run time: the finder only runs post-import hooks
        (and, given the selector, gives selected modules their import sessions)."""
        self._install_finder(selector or _NothingSelected(), nested, instrument=False)

    def _uninstall_finder(self) -> None:
        if self.finder is not None:
            self.finder.uninstall()
