"""What a running code object is, for the backends that see code rather than source.

The ``profile`` and ``monitor`` backends meet a function as a code object and its frame's
globals. :func:`describe_code` decides once per code object whether it is recorded and
registers it under the same name, line, parameters and kind that the ``wrap`` backend reads
from the source, so the three backends record the same functions the same way:

* the line is the ``def`` line, not ``co_firstlineno`` (which is the first decorator's);
* the kind (``method``, ``staticmethod``, ``classmethod``, ``property``, with ``:generator``
  and friends) comes from the object the class holds under that name; a property's setter
  and deleter get ``.setter`` / ``.deleter`` after the shared qualname. A class defined
  inside a function cannot be looked up from the code alone, so its methods are all
  ``method``, where ``wrap`` (reading decorators) may say ``staticmethod`` or ``property``.
"""

from __future__ import annotations


from . import recorder
from .helpernames import LAMBDA, lambda_qualname
from .select import Selector
from .guard import program_exception

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any

CO_OPTIMIZED, CO_VARARGS, CO_VARKEYWORDS = 0x01, 0x04, 0x08
CO_GENERATOR, CO_COROUTINE, CO_ITERABLE_COROUTINE, CO_ASYNC_GENERATOR = 0x20, 0x80, 0x100, 0x200
GENERATOR_FLAGS = CO_GENERATOR | CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR


class CodeSelector:
    """Answers "is this code object recorded?" and registers it when it is.

    The selector's answer is kept per (module, file): it resolves paths, which costs system
    calls, and a program has far fewer files than code objects."""

    def __init__(self, selector: Selector, nested: bool) -> None:
        # A lambda is named as the instrumenter names it, without the instrumenter (ast):
        # reading code objects needs no source.
        self._lambda_name = lambda_qualname
        self.selector = selector
        self.nested = nested
        self._modules: dict[tuple[str, str], bool] = {}
        self._lines: dict[str, list[bytes]] = {}

    def describe(self, code: Any, globs: dict[str, Any]) -> int:
        """The function id of ``code`` (registered now), or 0 when it is not recorded."""
        name = code.co_name
        filename = code.co_filename
        qual = getattr(code, "co_qualname", name)
        # CO_OPTIMIZED: real functions only, not class bodies or modules; and only code from a
        # source file (not `<string>`: dataclass- or namedtuple-generated code), as wrap sees.
        if not code.co_flags & CO_OPTIMIZED or (name.startswith("<") and name != LAMBDA) \
                or filename.startswith("<") or (not self.nested and "<locals>" in qual):
            return 0
        module = globs.get("__name__")
        if type(module) is not str:
            module = "?"
        key = (module, filename)
        wanted = self._modules.get(key)
        if wanted is None:
            wanted = self._modules[key] = self.selector.wants(module, filename)
        if not wanted:
            return 0
        if name == LAMBDA:
            line = code.co_firstlineno
            return recorder.register_function(module, self._lambda_name(qual, line), filename,
                                              line, _params(code), "function")
        kind, qual = _kind(code, globs, qual)
        return recorder.register_function(module, qual, filename, self._def_line(code),
                                          _params(code), kind)

    def _def_line(self, code: Any) -> int:
        """The ``def`` line: ``co_firstlineno`` is the first decorator's line, if any."""
        first: int = code.co_firstlineno
        lines = self._lines.get(code.co_filename)
        if lines is None:
            try:
                with open(code.co_filename, "rb") as f:
                    lines = f.read().splitlines()  # \n, \r\n and \r: the tokenizer's lines
            except OSError:
                lines = []
            self._lines[code.co_filename] = lines
        if first > len(lines) or not lines[first - 1].lstrip().startswith(b"@"):
            return first
        for n in range(first, min(len(lines), first + 200)):
            text = lines[n].lstrip()
            if text.startswith((b"def ", b"def\t", b"async ", b"async\t")):
                return n + 1
        return first


def _params(code: Any) -> tuple[str, ...]:
    """Parameter display names, as wrap shows them (``*args``, ``**kwargs``)."""
    n = code.co_argcount + code.co_kwonlyargcount
    flags = code.co_flags
    names = list(code.co_varnames[:n])
    if flags & CO_VARARGS:
        names.insert(code.co_argcount, "*" + code.co_varnames[n])
        n += 1
    if flags & CO_VARKEYWORDS:
        names.append("**" + code.co_varnames[n])
    return tuple(names)


_MISSING = object()


def _kind(code: Any, globs: dict[str, Any], qual: str) -> tuple[str, str]:
    """(kind, qualname) as the wrap backend names them."""
    flags = code.co_flags
    base = ("async_generator" if flags & CO_ASYNC_GENERATOR else "async"
            if flags & CO_COROUTINE else "generator" if flags & CO_GENERATOR else "function")
    parts = qual.split(".")
    if len(parts) < 2 or parts[-2] == "<locals>":
        return base, qual  # a module function or a function nested in a function
    special = "method"
    attr = _class_attribute(globs, parts)
    if isinstance(attr, staticmethod):
        special = "staticmethod"
    elif isinstance(attr, classmethod):
        special = "classmethod"
    elif isinstance(attr, property):
        special = "property"
        for accessor, fn in (("setter", attr.fset), ("deleter", attr.fdel)):
            if getattr(fn, "__code__", None) is code:
                qual = f"{qual}.{accessor}"  # shares its getter's qualname: keep them apart
                break
    if base == "function":
        return special, qual
    return f"{special}:{base}", qual


_type_dict = type.__dict__["__dict__"].__get__


def _class_attribute(globs: dict[str, Any], parts: list[str]) -> Any:
    """What the class named by ``parts[:-1]`` holds under ``parts[-1]``, read from the
    classes' own dicts through type's C getter: no descriptor or metaclass code runs."""
    if "<locals>" in parts:
        return _MISSING
    obj: Any = globs.get(parts[0], _MISSING)
    for part in parts[1:]:
        if not isinstance(obj, type):
            return _MISSING
        obj = _type_dict(obj).get(part, _MISSING)
    return obj


def note_yield(rec: list[Any], value: Any, kind: str) -> None:
    """Record a yielded value's shape on a generator's frame (never raises)."""
    try:
        recorder._note_yield(rec, value, kind)
    except Exception as exc:
        if type(exc) is not RecursionError and program_exception(exc):
            raise
        recorder.S.agent_errors += 1


def unwrap_async_yield(wrapped: Any) -> Any:
    """The value inside an async generator's yield wrapper (visible to gc only)."""
    import gc

    refs = gc.get_referents(wrapped)
    return refs[0] if refs else None


def is_async_yield(value: Any) -> bool:
    """True for the wrapper an async generator's real ``yield`` hands out (its ``await``
    suspensions hand out plain values)."""
    return type(value).__name__ == "async_generator_wrapped_value"
