"""Shape texts as trees: parse, render, and merge the shapes one function saw across calls.

The notation is the one :func:`flowagent.agent.shapes.shape_of` writes (see its module docstring
and the README's "Shape notation"), plus what the recorder adds around it (``Iterator[...]``,
``AsyncIterator[...]``, ``HTTP 200``) and what :func:`merge_shapes` adds (``email?:str``, an
optional record field). ``render(parse(s)) == s`` for every shape the agent writes.

Ambiguities of the notation, and how :func:`parse` reads them (either way renders the same):

* ``Name[A, B]`` is a mapping unless ``Name`` is ``tuple``: a dict subclass with 17 keys and a
  2-tuple subclass look alike, and dict subclasses are the likelier. ``Name[T, ...]`` (not a
  known mapping name) is a variable-length tuple; ``Name[A]`` with ``Name`` not ``tuple`` is a
  one-element container.
* ``tuple[T, ...]`` is a long tuple, even when it was a 2-tuple whose second element was cut.
* ``Cart{a:int}`` may be a dataclass or a dict subclass (``OrderedDict{a:int}``); the tree keeps
  the name and lets consumers decide.
* Names are class ``__qualname__`` values, which a program may set to anything: a class named
  ``any``, ``function``, ``module`` or ``HTTP`` reads as the marker, and one whose qualname
  holds a space, ``?`` or one of ``[]{}(),:|`` cannot be told apart from structure.
* The recorder joins generator samples in plain sorted order (``Iterator[...|int]``), not
  with the cut last as :func:`shape_of` does; both parse, and merging writes the latter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, NoReturn, TypeAlias

from flowagent.errors import FlowagentError

__all__ = [
    "Container", "Field", "FieldStats", "MappingShape", "MergedShape", "Name", "Record",
    "Shape", "ShapeSyntaxError", "TupleShape", "Union", "Unknown", "merge_inputs",
    "merge_shapes", "merge_trees", "parse", "render", "split_inputs",
]

CUT: Final = "..."
UNREADABLE: Final = "?"
MAPPING_NAMES = frozenset({"dict", "defaultdict", "OrderedDict", "Counter"})
MAX_NESTING = 64  # far beyond shape_of's depth 3; guards the recursion against corrupt text


@dataclass(frozen=True, slots=True)
class Name:
    """A scalar or class name: ``int``, ``None``, ``Outer.Inner``, ``any``, ``HTTP 200``."""

    name: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """``?`` (could not be read) or ``...`` (cut by depth, cycle or budget)."""

    marker: Literal["?", "..."]


@dataclass(frozen=True, slots=True)
class Union:
    """Two or more alternatives, ``int|str``, in their written order."""

    options: tuple[Shape, ...]


@dataclass(frozen=True, slots=True)
class Container:
    """``list[T]``, ``set[T]``, ``deque[T]``, ``Iterator[T]``, ``type[Cart]``, ``MyList[T]``;
    ``item`` is None when empty (``list[]``)."""

    name: str
    item: Shape | None


@dataclass(frozen=True, slots=True)
class TupleShape:
    """``tuple[a, b]``, ``tuple[]``, or with ``variadic`` ``tuple[T, ...]`` (one item)."""

    name: str
    items: tuple[Shape, ...]
    variadic: bool = False


@dataclass(frozen=True, slots=True)
class MappingShape:
    """``dict[K, V]``, ``defaultdict[K, V]``: a dict whose keys are data."""

    name: str
    key: Shape
    value: Shape


@dataclass(frozen=True, slots=True)
class Field:
    """One record field; ``optional`` only in merged shapes (written ``name?:T``)."""

    name: str
    shape: Shape
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Record:
    """``dict{a:int}`` / ``Cart{a:int}`` (style ``{}``) or ``Point(x:int)`` (style ``()``);
    ``truncated`` when fields past ``MAX_FIELDS`` were cut (a trailing ``,...``)."""

    name: str
    fields: tuple[Field, ...]
    style: Literal["{}", "()"] = "{}"
    truncated: bool = False


Shape: TypeAlias = Name | Unknown | Union | Container | TupleShape | MappingShape | Record


class ShapeSyntaxError(FlowagentError, ValueError):
    """A shape text that is not in the notation; ``position`` is the offending offset."""

    def __init__(self, text: str, position: int, expected: str) -> None:
        found = repr(text[position:position + 12]) if position < len(text) else "the end"
        super().__init__(
            f"malformed shape at position {position}: expected {expected}, found {found} in "
            f"{text[:200]!r}; the store may be corrupt (re-record the run to replace it)")
        self.text = text
        self.position = position


# Anything but a delimiter or a space: identifiers, qualnames (Outer.<locals>.C), ``...``, ``?``
# and field names with their optional marker (``email?``).
_TOKEN = re.compile(r"[^\[\]{}(),:|\s]*")
_SPACE = re.compile(r"\s*")
_CLOSE = {"[": "]", "{": "}", "(": ")"}


def parse(text: str) -> Shape:
    """Parse one shape text into a tree; raise :class:`ShapeSyntaxError` (a ValueError) on
    anything else, never another exception."""
    if not isinstance(text, str):
        raise ShapeSyntaxError(repr(text), 0, "a shape string")
    p = _Parser(text)
    shape = p.union(0)
    p.space()
    if p.pos != len(text):
        p.fail("the end")
    return shape


class _Parser:
    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, expected: str) -> NoReturn:
        raise ShapeSyntaxError(self.text, self.pos, expected)

    def space(self) -> None:
        self.pos = _SPACE.match(self.text, self.pos).end()  # type: ignore[union-attr]

    def peek(self) -> str:
        return self.text[self.pos:self.pos + 1]

    def expect(self, char: str) -> None:
        self.space()
        if self.peek() != char:
            self.fail(repr(char))
        self.pos += 1

    def token(self) -> str:
        self.space()
        end = _TOKEN.match(self.text, self.pos).end()  # type: ignore[union-attr]
        word, self.pos = self.text[self.pos:end], end
        return word

    def union(self, depth: int) -> Shape:
        if depth > MAX_NESTING:
            self.fail(f"at most {MAX_NESTING} nested levels")
        options = [self.alternative(depth)]
        while True:
            self.space()
            if self.peek() != "|":
                break
            self.pos += 1
            options.append(self.alternative(depth))
        return options[0] if len(options) == 1 else Union(tuple(options))

    def alternative(self, depth: int) -> Shape:
        start = self.pos
        word = self.token()
        if not word:
            self.fail("a shape")
        if word == "HTTP" and self.peek() == " ":  # a request root's output: "HTTP 200"
            self.pos += 1
            return Name(word + " " + self.token())
        opener = self.peek()
        if word in (CUT, UNREADABLE):
            if opener in _CLOSE:
                self.fail("no bracket after " + word)
            return Unknown(word)  # type: ignore[arg-type]
        if UNREADABLE in word:
            self.pos = start
            self.fail("a name")
        if opener not in _CLOSE:
            return Name(word)
        self.pos += 1
        if opener == "[":
            return _generic(word, self.arguments(depth))
        return self.record(word, opener, depth)

    def arguments(self, depth: int) -> list[Shape]:
        self.space()
        if self.peek() == "]":
            self.pos += 1
            return []
        args = [self.union(depth + 1)]
        while True:
            self.space()
            char = self.peek()
            self.pos += 1
            if char == "]":
                return args
            if char != ",":
                self.pos -= 1
                self.fail("',' or ']'")
            args.append(self.union(depth + 1))

    def record(self, name: str, opener: str, depth: int) -> Record:
        close = _CLOSE[opener]
        fields: list[Field] = []
        truncated = False
        self.space()
        if self.peek() == close:
            self.pos += 1
        else:
            while True:
                if truncated:
                    self.fail(f"{close!r} after the trailing '...'")
                start = self.pos
                word = self.token()
                if word == CUT:
                    truncated = True
                else:
                    optional = word.endswith("?") and len(word) > 1
                    field = word[:-1] if optional else word
                    if not field or field.endswith("?"):
                        self.pos = start
                        self.fail("a field name")
                    self.expect(":")
                    fields.append(Field(field, self.union(depth + 1), optional))
                self.space()
                char = self.peek()
                self.pos += 1
                if char == close:
                    break
                if char != ",":
                    self.pos -= 1
                    self.fail(f"',' or {close!r}")
        style: Literal["{}", "()"] = "{}" if opener == "{" else "()"
        return Record(name, tuple(fields), style, truncated)


def _generic(name: str, args: list[Shape]) -> Shape:
    """Classify ``name[args]``; see the module docstring for the ambiguous cases."""
    variadic = len(args) == 2 and args[1] == Unknown(CUT)
    if not args:
        return TupleShape(name, ()) if name == "tuple" else Container(name, None)
    if name == "tuple" or len(args) > 2 or (variadic and name not in MAPPING_NAMES):
        return TupleShape(name, (args[0],) if variadic else tuple(args), variadic)
    if len(args) == 2:
        return MappingShape(name, args[0], args[1])
    return Container(name, args[0])


def render(shape: Shape) -> str:
    """The canonical text of a tree, as :func:`flowagent.agent.shapes.shape_of` writes it."""
    if isinstance(shape, Name):
        return shape.name
    if isinstance(shape, Unknown):
        return shape.marker
    if isinstance(shape, Union):
        return "|".join(render(o) for o in shape.options)
    if isinstance(shape, Container):
        return shape.name + "[" + ("" if shape.item is None else render(shape.item)) + "]"
    if isinstance(shape, TupleShape):
        parts = [render(i) for i in shape.items] + ([CUT] if shape.variadic else [])
        return shape.name + "[" + ", ".join(parts) + "]"
    if isinstance(shape, MappingShape):
        return shape.name + "[" + render(shape.key) + ", " + render(shape.value) + "]"
    parts = [f.name + ("?" if f.optional else "") + ":" + render(f.shape) for f in shape.fields]
    if shape.truncated:
        parts.append(CUT)
    return shape.name + shape.style[0] + ",".join(parts) + shape.style[1]


# --------------------------------------------------------------------------------------------
# Merging: the shapes one function's input (per parameter) or output took across calls.


@dataclass(frozen=True, slots=True)
class FieldStats:
    """One field of a merged top-level record: its type union and how often it was there."""

    name: str
    shape: str
    optional: bool  # missing from at least one variant
    variants: int  # distinct shapes that had it
    calls: int  # calls those shapes were seen in


@dataclass(frozen=True, slots=True)
class MergedShape:
    """The merge of several shape variants. ``fields`` describes the top-level record when the
    merge has exactly one (``dict{...}`` or ``dict{...}|None``), else it is empty."""

    shape: Shape
    text: str
    variants: int
    calls: int
    fields: tuple[FieldStats, ...]


def merge_shapes(counts: Mapping[str, int]) -> MergedShape:
    """Merge shape texts (→ number of calls) into one shape.

    Records of the same name and bracket style merge field by field (a field missing from some
    of them becomes optional, ``email?:str``); containers, mappings and same-length tuples merge
    their element shapes; everything else joins a union, sorted with ``...`` last as
    :func:`shape_of` does, and ``any`` absorbs the rest. The result does not depend on the
    mapping's order. Raises ValueError for no variants or a malformed shape.
    """
    if not counts:
        raise ValueError("no shapes to merge: the function has no recorded calls on this side")
    variants = [(parse(text), count) for text, count in sorted(counts.items())]
    merged = merge_trees(shape for shape, _ in variants)
    records = [a for a in _options(merged) if isinstance(a, Record)]
    stats: tuple[FieldStats, ...] = ()
    if len(records) == 1:
        top = records[0]
        stats = tuple(_field_stats(top, f, variants) for f in top.fields)
    return MergedShape(merged, render(merged), len(variants), sum(c for _, c in variants), stats)


def merge_inputs(params: list[str], counts: Mapping[str, int]) -> dict[str, str]:
    """Merge input variants, each a JSON list of per-parameter shapes aligned with ``params``
    (as the store keeps them), into parameter → merged shape text. A parameter that no variant
    covers is left out; extra list entries are ignored."""
    per_param: list[dict[str, int]] = [{} for _ in params]
    for text, count in counts.items():
        for slot, shape in zip(per_param, split_inputs(text)):
            slot[shape] = slot.get(shape, 0) + count
    return {p: merge_shapes(c).text for p, c in zip(params, per_param) if c}


def split_inputs(text: str) -> list[str]:
    """The per-parameter shape texts of one stored input variant (a JSON list of strings)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as e:
        raise ValueError(f"input variant {text!r:.200} is not JSON: {e}") from None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ValueError(f"input variant {text!r:.200} is not a JSON list of shape strings")
    return value


def merge_trees(shapes: Iterable[Shape]) -> Shape:
    """Merge trees (see :func:`merge_shapes`); each tree counts as one occurrence."""
    groups: dict[tuple[object, ...], list[Shape]] = {}
    for shape in shapes:
        for alt in _options(shape):
            groups.setdefault(_merge_key(alt), []).append(alt)
    merged = [_merge_group(group) for group in groups.values()]
    if any(m == Name("any") for m in merged):
        return Name("any")
    unique = {render(m): m for m in merged}
    if not unique:
        raise ValueError("no shapes to merge")
    order = sorted(unique, key=lambda t: (t == CUT, t))
    return unique[order[0]] if len(order) == 1 else Union(tuple(unique[t] for t in order))


def _options(shape: Shape) -> tuple[Shape, ...]:
    return shape.options if isinstance(shape, Union) else (shape,)


def _merge_key(s: Shape) -> tuple[object, ...]:
    if isinstance(s, (Name, Unknown)):
        return ("leaf", render(s))
    if isinstance(s, TupleShape):
        return ("tuple", s.name, s.variadic, len(s.items))
    if isinstance(s, Record):
        return ("record", s.name, s.style)
    return (type(s).__name__, s.name)  # type: ignore[union-attr]


def _merge_group(group: list[Shape]) -> Shape:
    first = group[0]
    if isinstance(first, Container):
        items = [g.item for g in group if isinstance(g, Container) and g.item is not None]
        return Container(first.name, merge_trees(items) if items else None)
    if isinstance(first, TupleShape):
        columns = zip(*(g.items for g in group if isinstance(g, TupleShape)))
        return TupleShape(first.name, tuple(merge_trees(c) for c in columns), first.variadic)
    if isinstance(first, MappingShape):
        maps = [g for g in group if isinstance(g, MappingShape)]
        return MappingShape(first.name, merge_trees(m.key for m in maps),
                            merge_trees(m.value for m in maps))
    if isinstance(first, Record):
        return _merge_records([g for g in group if isinstance(g, Record)])
    return first


def _merge_records(records: list[Record]) -> Record:
    shapes: dict[str, list[Shape]] = {}
    optional: set[str] = set()
    for r in records:
        for f in r.fields:
            shapes.setdefault(f.name, []).append(f.shape)
            if f.optional:
                optional.add(f.name)
    names = _field_order([[f.name for f in r.fields] for r in records])
    fields = tuple(Field(n, merge_trees(shapes[n]), n in optional or len(shapes[n]) < len(records))
                   for n in names)
    first = records[0]
    return Record(first.name, fields, first.style, any(r.truncated for r in records))


def _field_order(orders: list[list[str]]) -> list[str]:
    """Sorted if every record lists its fields sorted (dicts always do); otherwise declaration
    order, each new field placed after the field that precedes it where it was seen."""
    if all(o == sorted(o) for o in orders):
        return sorted({n for o in orders for n in o})
    result: list[str] = []
    for order in orders:
        for i, name in enumerate(order):
            if name not in result:
                before = [n for n in order[:i] if n in result]
                result.insert(result.index(before[-1]) + 1 if before else len(result), name)
    return result


def _field_stats(top: Record, field: Field, variants: list[tuple[Shape, int]]) -> FieldStats:
    key = _merge_key(top)
    having = [c for shape, c in variants
              if any(isinstance(a, Record) and _merge_key(a) == key
                     and any(f.name == field.name for f in a.fields) for a in _options(shape))]
    return FieldStats(field.name, render(field.shape), field.optional, len(having), sum(having))
