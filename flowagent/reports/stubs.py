"""``.pyi`` stubs from observed shapes: the types a program really passed and returned.

One stub per module. Methods are grouped into ``class`` blocks by qualname prefix; dict records
become ``TypedDict`` classes named after where they were seen (``checkout``'s ``payload`` →
``CheckoutPayload``, its field ``user`` → ``CheckoutPayloadUser``, the output →
``CheckoutResult``), shared when two have the same fields and types. What a stub cannot say
precisely becomes ``Any``: cuts and unreadable shapes, and classes not recorded in the same
module (named in a trailing comment, since a shape carries a qualname but no module).

Stubs describe observations: parameters the program never passed do not appear, parameters
get no defaults, keyword-only markers without ``*args`` are not known, and a property's
setter and deleter arrive with the same kind as its getter (the first one wins).
"""

from __future__ import annotations

import keyword
from collections.abc import Iterable
from dataclasses import dataclass

from flowagent.reports.shapetree import (
    Container, Field, MappingShape, Name, Record, Shape, TupleShape, Union, Unknown, merge_trees,
    parse,
)

__all__ = ["FunctionShapes", "generate_stubs"]

_SAME = {n: n for n in ("None", "bool", "int", "float", "complex", "str", "bytes", "bytearray")}
_SPECIAL = {  # shape name → (annotation, the names it imports)
    "any": ("Any", ("Any",)),
    "function": ("Callable[..., Any]", ("Callable", "Any")),
    "module": ("ModuleType", ("ModuleType",)),
    "generator": ("Generator[Any, Any, Any]", ("Generator", "Any")),
    "coroutine": ("Coroutine[Any, Any, Any]", ("Coroutine", "Any")),
    "async_generator": ("AsyncGenerator[Any, Any]", ("AsyncGenerator", "Any")),
}
_GENERIC = {"list": "builtins", "set": "builtins", "frozenset": "builtins", "type": "builtins",
            "deque": "collections", "Iterator": "collections.abc",
            "AsyncIterator": "collections.abc"}
_IMPORTED = {"Any": "typing", "NotRequired": "typing", "TypedDict": "typing",
             "Callable": "collections.abc", "Generator": "collections.abc",
             "Coroutine": "collections.abc", "AsyncGenerator": "collections.abc",
             "ModuleType": "types", "deque": "collections", "Iterator": "collections.abc",
             "AsyncIterator": "collections.abc"}
_DECORATORS = ("method", "classmethod", "staticmethod", "property")
# Builtins that annotations name. A class body with a member of one of these names (a method
# called ``set`` or ``list`` is common) shadows the builtin for the annotations after it.
_BUILTINS = frozenset(_SAME) - {"None"} | {"list", "set", "frozenset", "type", "tuple", "dict"}


@dataclass(frozen=True, slots=True)
class FunctionShapes:
    """One recorded function: ``params`` as the store names them (``*args``, ``**kwargs``),
    ``inputs`` parameter → merged shape text, ``output`` the merged output shape (None if no
    call returned), ``calls`` how many calls these shapes summarize."""

    module: str
    qualname: str
    params: list[str]
    kind: str
    inputs: dict[str, str]
    output: str | None
    calls: int = 0


def generate_stubs(functions: Iterable[FunctionShapes]) -> dict[str, str]:
    """Stub text per module name, modules sorted, functions in the order given."""
    by_module: dict[str, list[FunctionShapes]] = {}
    for f in functions:
        by_module.setdefault(f.module, []).append(f)
    return {m: _ModuleStub(fs).text() for m, fs in sorted(by_module.items())}


def _pascal(text: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in text.replace(".", "_").split("_") if p)


def _is_name(text: str) -> bool:
    return text.isidentifier() and not keyword.iskeyword(text)


class _ModuleStub:
    def __init__(self, functions: list[FunctionShapes]) -> None:
        self.imports: set[str] = set()
        self.typed_dicts: list[str] = []  # class texts, nested ones first
        self.by_fields: dict[tuple[tuple[str, str, bool, str], ...], str] = {}
        self.skipped: list[str] = []
        kept: list[FunctionShapes] = []
        for f in functions:
            parts = f.qualname.split(".")
            bad = [n for n in parts + [p.lstrip("*") for p in f.params] if not _is_name(n)]
            if "<locals>" in parts:
                self.skipped.append(f"# skipped nested function {f.qualname}")
            elif bad:
                self.skipped.append(f"# skipped {f.qualname}: {bad[0]!r} is not a valid "
                                    "Python identifier")
            else:
                kept.append(f)
        self.calls = sum(max(f.calls, 0) for f in kept)
        self.classes = {".".join(f.qualname.split(".")[:i])
                        for f in kept for i in range(1, f.qualname.count(".") + 1)}
        self.taken = set(self.classes) | {f.qualname.split(".")[0] for f in kept} | set(_IMPORTED)
        # Class tree: scope ("" = module) → member lines, in first-seen order.
        self.members: dict[str, list[str]] = {"": []}
        self.defined: set[str] = set()
        self.names_in: dict[str, set[str]] = {}  # scope → names its class body defines
        for qual in [f.qualname for f in kept] + sorted(self.classes):
            scope, _, name = qual.rpartition(".")
            self.names_in.setdefault(scope, set()).add(name)
        self.shadowed: frozenset[str] = frozenset()  # builtins to qualify where we emit now
        for f in kept:
            self._function(f)

    def text(self) -> str:
        lines = [f"# Generated by flowagent from {self.calls} observed calls.",
                 "# Types are what the recorded runs passed and returned, not declarations.", ""]
        if "builtins" in self.imports:
            lines.append("import builtins")
        for module in ("collections", "collections.abc", "types", "typing"):
            names = sorted(n for n in self.imports if _IMPORTED.get(n) == module)
            if names:
                lines.append(f"from {module} import {', '.join(names)}")
        if self.imports:
            lines.append("")
        lines.extend(self.skipped + ([""] if self.skipped else []))
        for block in self.typed_dicts:
            lines.extend(block.splitlines() + [""])
        lines.extend(self._scope("", ""))
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines) + "\n"

    def _scope(self, scope: str, indent: str) -> list[str]:
        out: list[str] = []
        for member in self.members.get(scope, []):
            if member.startswith("class "):
                name = member[6:]
                qual = f"{scope}.{name}" if scope else name
                body = self._scope(qual, indent + "    ") or [indent + "    ..."]
                out.extend([f"{indent}class {name}:", *body] + ([] if indent else [""]))
            else:
                out.extend(indent + line for line in member.splitlines())
                if not indent:
                    out.append("")
        return out

    def _place(self, qualname: str) -> str:
        """Register the class blocks around ``qualname``; return its enclosing scope."""
        parts = qualname.split(".")
        for i in range(1, len(parts)):
            qual = ".".join(parts[:i])
            if qual not in self.members:
                self.members[qual] = []
                self.members[".".join(parts[:i - 1])].append("class " + parts[i - 1])
        return ".".join(parts[:-1])

    def _function(self, f: FunctionShapes) -> None:
        if f.qualname in self.defined:
            return  # a property's setter or deleter: same qualname as the getter
        if f.kind.startswith("property") and len(f.params) > 1:
            self.skipped.append(f"# skipped {f.qualname}: a property setter without its getter")
            return
        self.defined.add(f.qualname)
        scope = self._place(f.qualname)
        self.shadowed = _BUILTINS & self.names_in.get(scope, set()) if scope else frozenset()
        name = f.qualname.split(".")[-1]
        kinds = f.kind.split(":")  # "method:async", "classmethod", "generator", ...
        decorator = kinds[0] if kinds[0] in _DECORATORS else None
        base = kinds[-1] if kinds[-1] in ("async", "generator", "async_generator") else "function"
        if not scope:
            decorator = None
        elif not f.params:
            decorator = "staticmethod"  # anything else needs a first parameter to be valid
        elif decorator is None:  # the profile backend cannot see decorators: go by the name
            decorator = {"self": "method", "cls": "classmethod"}.get(f.params[0], "staticmethod")
        notes: list[str] = []
        owner = _pascal(f.qualname)
        params = []
        for i, p in enumerate(f.params):
            if i == 0 and decorator in ("method", "classmethod", "property"):
                params.append(p)
                continue
            text = f.inputs.get(p)
            shape = Unknown("?") if text is None else self._read(text, notes)
            if p.startswith("**"):
                shape = _kwargs_values(shape)
            elif p.startswith("*"):
                shape = _args_items(shape)
            params.append(f"{p}: {self._annotation(shape, owner + _pascal(p.lstrip('*')), notes)}")
        returns = self._returns(f, base, name, owner, notes)
        head = "async def" if base == "async" else "def"
        lines = [] if decorator in (None, "method") else [f"@{decorator}"]
        line = f"{head} {name}({', '.join(params)}) -> {returns}: ...{_comment(notes)}"
        self.members[scope].append("\n".join(lines + [line]))

    def _returns(self, f: FunctionShapes, base: str, name: str, owner: str,
                 notes: list[str]) -> str:
        if name == "__init__":
            return "None"
        shape: Shape = Unknown("?") if f.output is None else self._read(f.output, notes)
        if base in ("generator", "async_generator"):
            wrapper = "Iterator" if base == "generator" else "AsyncIterator"
            if not (isinstance(shape, Container) and shape.name == wrapper):
                shape = Container(wrapper, None)
        return self._annotation(shape, owner + "Result", notes)

    def _read(self, text: str, notes: list[str]) -> Shape:
        try:
            return merge_trees([parse(text)])  # merged text is already merged; stays robust
        except ValueError:
            notes.append("unreadable shape")
            return Unknown("?")

    def _annotation(self, s: Shape, context: str, notes: list[str]) -> str:
        """The Python type for a shape; ``context`` names TypedDicts made for records."""
        if isinstance(s, Union):
            alts = list(dict.fromkeys(self._annotation(o, context, notes) for o in s.options))
            if "Any" in alts:
                return "Any"
            return " | ".join(sorted(alts, key=lambda a: a == "None"))  # None last, as usual
        if isinstance(s, Name):
            if s.name in _SAME:
                return self._builtin(s.name)
            if s.name in _SPECIAL:
                text, names = _SPECIAL[s.name]
                self.imports.update(names)
                return text
            return self._class(s.name, notes)
        if isinstance(s, Container):
            if s.name not in _GENERIC:
                return self._class(s.name, notes)
            if s.name in _IMPORTED:
                self.imports.add(s.name)
            if s.name == "type":
                inner = s.item.name if isinstance(s.item, Name) else ""
                return f"{self._builtin('type')}[{self._class(inner, notes)}]"
            item = self._any() if s.item is None else self._annotation(s.item, context, notes)
            return f"{self._builtin(s.name)}[{item}]"
        if isinstance(s, TupleShape):
            if s.name != "tuple":
                return self._class(s.name, notes)
            items = [self._annotation(i, context, notes) for i in s.items]
            tup = self._builtin("tuple")
            return f"{tup}[{items[0]}, ...]" if s.variadic else f"{tup}[{', '.join(items) or '()'}]"
        if isinstance(s, MappingShape):
            key = self._annotation(s.key, context, notes)
            return f"{self._builtin('dict')}[{key}, {self._annotation(s.value, context, notes)}]"
        if isinstance(s, Record):
            if s.name == "dict" and s.style == "{}":
                return self._typed_dict(s, context)
            return self._class(s.name, notes)
        return self._any()

    def _builtin(self, name: str) -> str:
        if name in self.shadowed:
            self.imports.add("builtins")
            return "builtins." + name
        return name

    def _any(self) -> str:
        self.imports.add("Any")
        return "Any"

    def _class(self, name: str, notes: list[str]) -> str:
        if name in self.classes:
            return name
        notes.append(name or "?")
        return self._any()

    def _typed_dict(self, r: Record, context: str) -> str:
        if not r.fields or r.truncated or not all(_is_name(f.name) for f in r.fields):
            return f"{self._builtin('dict')}[{self._builtin('str')}, {self._any()}]"
        shadowed, self.shadowed = self.shadowed, frozenset()  # TypedDicts live at module level
        try:
            fields = tuple(self._typed_field(f, context) for f in r.fields)
        finally:
            self.shadowed = shadowed
        known = self.by_fields.get(fields)
        if known is not None:
            return known
        name, n = context, 1
        while name in self.taken:
            n += 1
            name = f"{context}{n}"
        self.taken.add(name)
        self.by_fields[fields] = name
        self.imports.add("TypedDict")
        body = []
        for field, annotation, optional, comment in fields:
            if optional:
                self.imports.add("NotRequired")
                annotation = f"NotRequired[{annotation}]"
            body.append(f"    {field}: {annotation}{comment}")
        self.typed_dicts.append("\n".join([f"class {name}(TypedDict):", *body]))
        return name

    def _typed_field(self, f: Field, context: str) -> tuple[str, str, bool, str]:
        """(name, annotation, optional, comment): what ``Any`` stands for goes on the field's
        own line, not on every def that uses the TypedDict."""
        notes: list[str] = []
        annotation = self._annotation(f.shape, context + _pascal(f.name), notes)
        return f.name, annotation, f.optional, _comment(notes)


def _comment(notes: list[str]) -> str:
    return "  # Any: " + ", ".join(sorted(set(notes))) if notes else ""


def _args_items(s: Shape) -> Shape:
    """``*args: T`` annotates each element: the union of the recorded tuple's elements."""
    if isinstance(s, TupleShape) and s.items:
        return merge_trees(s.items)
    return Unknown("?")


def _kwargs_values(s: Shape) -> Shape:
    """``**kwargs: T`` annotates each value: the union of the recorded dict's values."""
    if isinstance(s, Record) and s.fields:
        return merge_trees(f.shape for f in s.fields)
    if isinstance(s, MappingShape):
        return s.value
    return Unknown("?")
