"""Shapes of values: the structure and types of what a call received or returned, never the values.

:func:`shape_of` runs inside the recorded program, once per argument and return value of every
recorded call. It is therefore built to be a guest: standard library only, bounded work whatever
it is handed, no user code ever called, and it never raises.

Notation
--------

==========================================  ====================================================
value                                       shape
==========================================  ====================================================
``None``, ``True``, ``3``, ``1.5``, ``2j``  ``None``, ``bool``, ``int``, ``float``, ``complex``
``"x"``, ``b"x"``, ``bytearray()``          ``str``, ``bytes``, ``bytearray`` (never a length)
``[1, "a"]``, ``{1}``, ``deque([1])``       ``list[int|str]``, ``set[int]``, ``deque[int]``
``[]``, ``frozenset()``                     ``list[]``, ``frozenset[]``
``(1, "a")``, ``(1, 2, 3, 4, 5)``, ``()``   ``tuple[int, str]``, ``tuple[int, ...]``, ``tuple[]``
``{"sku": "a", "qty": 1}``                  ``dict{qty:int,sku:str}`` (a record)
``{"user-1": 1}``, ``{1: "a"}``             ``dict[str, int]``, ``dict[int, str]`` (a mapping)
``{}``                                      ``dict{}``
dataclass / attrs / pydantic instance       ``Cart{items:list[str],total:float}``
NamedTuple instance                         ``Point(x:int,y:int)``
``OrderedDict(a=1)``, ``MyList([1])``       ``OrderedDict{a:int}``, ``MyList[int]``
Enum, IntEnum, str/int subclass instance    ``Color`` (the class's qualified name)
any other object                            ``Cart``, ``Outer.Inner``, ``datetime``, ``Decimal``
a class / a module                          ``type[Cart]`` / ``module``
function, method, builtin                   ``function``
generator, coroutine, async generator       ``generator``, ``coroutine``, ``async_generator``
==========================================  ====================================================

* Collections show the union of the shapes of *sampled* elements: the first and last
  ``MAX_ITEMS // 2`` of a sequence or dict, the first ``MAX_ITEMS`` of a set. Alternatives are
  sorted and joined with ``|``; more than ``MAX_UNION`` of them become ``any``.
* A dict is a *record* only if it has at most ``MAX_FIELDS`` keys and every key is a ``str``
  that is an identifier and not a keyword; only then are keys shown (sorted). Any other dict
  is a *mapping* of key shapes to value shapes, so keys that are data (ids, user names, paths)
  never leak.
* Tuples of up to ``MAX_TUPLE`` elements are positional; longer ones use ``tuple[T, ...]``.
* Records, dataclasses and named tuples show at most ``MAX_FIELDS`` fields, then ``...``.
* ``...`` marks a cut: a collection or record nested deeper than ``MAX_DEPTH`` (scalars and
  plain objects are still shown there, as in :mod:`reprlib`), a value met again on its own
  path (a cycle), or any position after ``MAX_NODES`` values were visited in one call. In a
  union, an element sample that the budget cut short is dropped instead (the complete samples
  before it stand for the collection), so there the budget shows only if the first sample was
  cut: ``list[...]``. Cycles and depth still show in unions: ``list[int|...]``.
* ``?`` marks a shape that could not be read safely (a field behind a property, an unset slot,
  an exception). Every ``?`` adds one to :data:`failures`.
"""

from __future__ import annotations

import sys
from collections import deque
from itertools import chain, islice
from keyword import iskeyword
from operator import itemgetter
from types import (
    AsyncGeneratorType,
    BuiltinFunctionType,
    ClassMethodDescriptorType,
    CoroutineType,
    FunctionType,
    GeneratorType,
    GetSetDescriptorType,
    MemberDescriptorType,
    MethodDescriptorType,
    MethodType,
    MethodWrapperType,
    ModuleType,
    WrapperDescriptorType,
)

# typing costs milliseconds at import and the host program may never load it; annotations are
# strings here (PEP 563), so only type checkers need it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    _Body = Callable[["_Walk", Any, int, str, Any], str]

__all__ = [
    "MAX_DEPTH",
    "MAX_FIELDS",
    "MAX_ITEMS",
    "MAX_NODES",
    "MAX_TUPLE",
    "MAX_UNION",
    "failures",
    "shape_of",
    "stats",
]

MAX_DEPTH = 3  # collections/records nested deeper than this become "..."
MAX_FIELDS = 16  # most keys a dict may have to be a record; most fields shown per record
MAX_ITEMS = 8  # elements sampled per collection
MAX_NODES = 64  # values visited per shape_of() call, all levels together
MAX_UNION = 4  # most alternatives in a union before it becomes "any"
MAX_TUPLE = 4  # longest tuple shown positionally

CUT = "..."
UNKNOWN = "?"

failures: int = 0
"""Shapes that came out as ``?``. Read by the agent and reported by the sidecar. Updated without
a lock: a lost increment under thread contention is acceptable for a diagnostic counter."""

# Reading class metadata through type's own C descriptors, not ``cls.__qualname__``: attribute
# access on a class goes through its metaclass's ``__getattribute__``, which user code may
# override (and make raise, loop or lie). These getters read the type struct directly.
_mro_of: Callable[[type], tuple[type, ...]] = type.__dict__["__mro__"].__get__
_qualname_of: Callable[[type], str] = type.__dict__["__qualname__"].__get__
_dict_of: Callable[[type], Any] = type.__dict__["__dict__"].__get__

# Types whose shape is a constant, keyed by id(type) rather than the type itself: a dict lookup
# hashes its key, and hashing a class calls its metaclass's ``__hash__``. Every type here is a
# static builtin that lives as long as the process, so its id can never be reused.
_FIXED: dict[int, str] = {
    id(t): name
    for t, name in (
        (type(None), "None"),
        (bool, "bool"),
        (int, "int"),
        (float, "float"),
        (complex, "complex"),
        (str, "str"),
        (bytes, "bytes"),
        (bytearray, "bytearray"),
        (FunctionType, "function"),
        (MethodType, "function"),
        (BuiltinFunctionType, "function"),
        (MethodWrapperType, "function"),
        (WrapperDescriptorType, "function"),
        (MethodDescriptorType, "function"),
        (ClassMethodDescriptorType, "function"),
        (ModuleType, "module"),
        (GeneratorType, "generator"),
        (CoroutineType, "coroutine"),
        (AsyncGeneratorType, "async_generator"),
    )
}

_LEAF, _CLASS, _COMPOSITE = 0, 1, 2
_by_key = itemgetter(0)
_MISSING = object()


class _Unreadable(Exception):
    """A field exists but reading it would run user code (a property) or it has no value."""


def shape_of(value: object) -> str:
    """Return the canonical shape of ``value`` (see the module docstring for the notation).

    Never raises (except ``KeyboardInterrupt``/``SystemExit`` arriving meanwhile, which belong to
    the user), never calls user-defined code and never includes a value.
    """
    fixed = _FIXED.get(id(type(value)))
    if fixed is not None:  # the common case: one dict lookup and done
        return fixed
    try:
        return _Walk().visit(value, 1)
    except Exception:
        return _failed()


def stats() -> dict[str, int]:
    """Counters for the agent's self-report."""
    return {"failures": failures}


def _failed() -> str:
    global failures
    failures += 1
    return UNKNOWN


def _union(alternatives: set[str]) -> str:
    """Sorted ``a|b`` with any cut last; ``any`` past MAX_UNION alternatives."""
    if len(alternatives) == 1:
        return alternatives.pop()
    if len(alternatives) > MAX_UNION:
        return "any"
    cut = CUT in alternatives
    alternatives.discard(CUT)
    ordered = sorted(alternatives)
    if cut:
        ordered.append(CUT)
    return "|".join(ordered)


def _indices(n: int) -> range | chain[int]:
    """Positions sampled from a sequence of length ``n``: all, or the first and last halves."""
    if n <= MAX_ITEMS:
        return range(n)
    half = MAX_ITEMS // 2
    return chain(range(half), range(n - half, n))


class _Walk:
    """State of one shape_of() call: the node budget and the ids on the current path."""

    __slots__ = ("budget", "cut", "path")

    def __init__(self) -> None:
        self.budget = MAX_NODES
        self.cut = False  # set once a position was refused for lack of budget
        self.path: set[int] = set()

    def visit(self, v: object, depth: int) -> str:
        if self.budget <= 0:
            self.cut = True
            return CUT
        self.budget -= 1
        t = type(v)
        fixed = _FIXED.get(id(t))
        if fixed is not None:
            return fixed
        try:
            exact = _CONTAINERS.get(id(t))
            if exact is not None:
                body, name = exact
                data: object = None
            else:
                kind, name, body, data = _classify(t)
                if kind == _LEAF:
                    return name
                if kind == _CLASS:
                    return "type[" + _qualname_of(v) + "]"  # type: ignore[arg-type]
            if depth > MAX_DEPTH:
                return CUT
            key = id(v)
            if key in self.path:
                return CUT
            self.path.add(key)
            try:
                return body(self, v, depth + 1, name, data)
            finally:
                self.path.discard(key)
        except Exception:
            return _failed()

    # Bodies of composite shapes. ``depth`` is already the depth of the children. Elements are
    # reached only through the base type's unbound C methods (dict.items(v), list.__getitem__),
    # so a subclass overriding __iter__, __len__, items or __getitem__ is never called.

    def sample(self, elements: Any, depth: int) -> str:
        """Union of the shapes of sampled elements.

        A sample that the budget cut short is dropped rather than shown half-cut, as long as a
        complete one exists: a list of rows stays ``list[dict{...}]`` instead of growing a
        second, truncated alternative. Only a first sample is ever shown cut.
        """
        alternatives: set[str] = set()
        for x in elements:
            shape = self.visit(x, depth)
            if self.cut and alternatives:
                break
            alternatives.add(shape)
        return _union(alternatives)

    def dict_(self, v: Any, depth: int, name: str, _: object) -> str:
        n = dict.__len__(v)
        if n == 0:
            return name + "{}"
        half = MAX_ITEMS // 2
        sample: Any
        if n <= MAX_FIELDS:
            items = list(dict.items(v))
            for k, _x in items:
                if type(k) is not str or not k.isidentifier() or iskeyword(k):
                    break
            else:
                # Sorted before visiting so a budget cut falls on the same fields whatever the
                # insertion order; exact-str keys make the sort safe.
                items.sort(key=_by_key)
                visit = self.visit
                return name + "{" + ",".join([k + ":" + visit(x, depth) for k, x in items]) + "}"
            sample = items if n <= MAX_ITEMS else items[:half] + items[-half:]
        else:
            sample = chain(islice(dict.items(v), half), islice(reversed(dict.items(v)), half))
        keys: set[str] = set()
        values: set[str] = set()
        for k, x in sample:  # as in sample(): a pair cut short by the budget is dropped
            key_shape, value_shape = self.visit(k, depth), self.visit(x, depth)
            if self.cut and keys:
                break
            keys.add(key_shape)
            values.add(value_shape)
        return name + "[" + _union(keys) + ", " + _union(values) + "]"

    def list_(self, v: Any, depth: int, name: str, _: object) -> str:
        n = list.__len__(v)
        if n == 0:
            return name + "[]"
        get = list.__getitem__
        return name + "[" + self.sample((get(v, i) for i in _indices(n)), depth) + "]"

    def deque_(self, v: Any, depth: int, name: str, _: object) -> str:
        n = deque.__len__(v)
        if n == 0:
            return name + "[]"
        get = deque.__getitem__  # O(1) near either end, and we only sample the ends
        return name + "[" + self.sample((get(v, i) for i in _indices(n)), depth) + "]"

    def tuple_(self, v: Any, depth: int, name: str, _: object) -> str:
        n = tuple.__len__(v)
        get = tuple.__getitem__
        if n <= MAX_TUPLE:
            return name + "[" + ", ".join([self.visit(get(v, i), depth) for i in range(n)]) + "]"
        return name + "[" + self.sample((get(v, i) for i in _indices(n)), depth) + ", ...]"

    def set_(self, v: Any, depth: int, name: str, _: object) -> str:
        return self._unordered(set.__len__(v), set.__iter__(v), depth, name)

    def frozenset_(self, v: Any, depth: int, name: str, _: object) -> str:
        return self._unordered(frozenset.__len__(v), frozenset.__iter__(v), depth, name)

    def _unordered(self, n: int, it: Any, depth: int, name: str) -> str:
        if n == 0:
            return name + "[]"
        return name + "[" + self.sample(islice(it, MAX_ITEMS), depth) + "]"

    def namedtuple_(self, v: Any, depth: int, name: str, fields: Any) -> str:
        # By position rather than attribute: same values, and no descriptor is involved.
        n = min(tuple.__len__(v), len(fields))
        get = tuple.__getitem__
        parts = [fields[i] + ":" + self.visit(get(v, i), depth) for i in range(min(n, MAX_FIELDS))]
        if n > MAX_FIELDS:
            parts.append(CUT)
        return name + "(" + ",".join(parts) + ")"

    def record_(self, v: Any, depth: int, name: str, data: Any) -> str:
        fields, mro = data
        instance_dict = _instance_dict(v, mro)
        parts = []
        for field in fields[:MAX_FIELDS]:
            if self.budget <= 0:  # don't even read the field
                self.cut = True
                parts.append(field + ":" + CUT)
                continue
            try:
                value = _read_field(v, mro, field, instance_dict)
            except Exception:
                parts.append(field + ":" + _failed())
                continue
            parts.append(field + ":" + self.visit(value, depth))
        if len(fields) > MAX_FIELDS:
            parts.append(CUT)
        return name + "{" + ",".join(parts) + "}"


# Builtin collection types → (body, name). Used for exact instances and, through the MRO, for
# subclasses (which are then named by their own qualname: OrderedDict{...}, MyList[...]).
_CONTAINERS: dict[int, tuple[_Body, str]] = {
    id(dict): (_Walk.dict_, "dict"),
    id(list): (_Walk.list_, "list"),
    id(tuple): (_Walk.tuple_, "tuple"),
    id(set): (_Walk.set_, "set"),
    id(frozenset): (_Walk.frozenset_, "frozenset"),
    id(deque): (_Walk.deque_, "deque"),
}

_MARKERS = frozenset(
    (
        "_member_map_",  # enum classes
        "_fields",  # namedtuple classes
        "__dataclass_fields__",
        "__attrs_attrs__",
        "__pydantic_fields__",  # pydantic >= 2.10
        "model_fields",  # pydantic 2.0 - 2.9
        "__pydantic_fields_set__",  # slot declared on pydantic.BaseModel
    )
)


def _classify(t: type) -> tuple[int, str, Any, Any]:
    """How to render instances of ``t``: (kind, name, body, data), from class metadata only.

    Not cached per type: a cache would have to notice classes mutated after their first instance
    was seen (and hold or weakly track every class). Uncached this costs about 0.5 µs for a plain
    class and 1-1.5 µs for a dataclass; revisit with a benchmark if records dominate real runs.
    """
    mro = _mro_of(t)
    name = _qualname_of(t)
    container = None
    found: dict[str, Any] = {}
    for k in mro:
        kid = id(k)
        if kid == _OBJECT_ID:
            continue  # holds none of the markers; skipping it halves the work for plain classes
        if kid == _TYPE_ID:
            return _CLASS, name, None, None
        if kid == _MODULE_ID:
            return _LEAF, "module", None, None
        if container is None:
            container = _CONTAINERS.get(kid)
        d = _dict_of(k)
        # dict_keys & frozenset iterates the smaller side: at most len(_MARKERS) lookups.
        for marker in d.keys() & _MARKERS:
            if marker not in found:  # the first class in the MRO wins, as for attributes
                found[marker] = d[marker]
    if found:
        if "_member_map_" in found:
            return _LEAF, name, None, None
        if container is not None and container[1] == "tuple":
            fields = _namedtuple_fields(found.get("_fields"))
            if fields is not None:
                return _COMPOSITE, name, _Walk.namedtuple_, fields
        names = _record_fields(found)
        if names is not None:
            return _COMPOSITE, name, _Walk.record_, (names, mro)
    if container is not None:
        return _COMPOSITE, name, container[0], None
    return _LEAF, name, None, None


_OBJECT_ID = id(object)
_TYPE_ID = id(type)
_MODULE_ID = id(ModuleType)


def _namedtuple_fields(fields: object) -> tuple[str, ...] | None:
    if type(fields) is not tuple:
        return None
    for f in fields:
        if type(f) is not str:
            return None
    return fields


def _record_fields(found: dict[str, Any]) -> list[str] | None:
    """Field names of a dataclass, attrs class or pydantic model, or None if it is none."""
    if "__dataclass_fields__" in found:
        fd = found["__dataclass_fields__"]
        field_cls, regular = _dataclass_markers()
        if field_cls is not None and type(fd) is dict:
            return [
                n
                for n, f in dict.items(fd)
                if type(n) is str
                and type(f) is field_cls
                and object.__getattribute__(f, "_field_type") is regular  # not ClassVar/InitVar
            ]
    if "__attrs_attrs__" in found:
        attrs = found["__attrs_attrs__"]
        if issubclass(type(attrs), tuple):
            names = [object.__getattribute__(a, "name") for a in tuple.__iter__(attrs)]
            return [n for n in names if type(n) is str]
    if "__pydantic_fields_set__" in found:
        fd = found.get("__pydantic_fields__", found.get("model_fields"))
        if type(fd) is dict:
            return [n for n in dict.keys(fd) if type(n) is str]
    return None


_dc_markers: tuple[Any, Any] = (None, None)


def _dataclass_markers() -> tuple[Any, Any]:
    """``dataclasses.Field`` and the marker of regular fields, without importing dataclasses.

    A real dataclass instance means the module is already imported; until one shows up, a class
    with ``__dataclass_fields__`` is an impostor and gets no fields.
    """
    global _dc_markers
    if _dc_markers[0] is None:
        dc = sys.modules.get("dataclasses")
        if type(dc) is ModuleType:
            _dc_markers = (dc.__dict__.get("Field"), dc.__dict__.get("_FIELD"))
    return _dc_markers


def _instance_dict(v: object, mro: tuple[type, ...]) -> dict[str, Any] | None:
    """``v.__dict__`` through the C getset the class machinery installed, never a user override."""
    for k in mro:
        desc = _dict_of(k).get("__dict__")
        if desc is not None:
            if type(desc) is GetSetDescriptorType:
                d = desc.__get__(v)
                return d if issubclass(type(d), dict) else None
            return None
    return None


def _read_field(v: object, mro: tuple[type, ...], field: str, instance_dict: Any) -> object:
    """The value attribute lookup would give for a field, where that needs no user code.

    Mirrors object.__getattribute__ for the cases records use (a slot, an instance dict entry,
    a plain class-level default) and refuses the rest: a property or other descriptor would run
    user code, which may raise, block, or lazily load from a database.
    """
    class_attr = _MISSING
    for k in mro:
        if id(k) == _OBJECT_ID:
            break
        d = _dict_of(k)
        if field in d:
            class_attr = d[field]
            attr_type = type(class_attr)
            if attr_type is MemberDescriptorType:
                return class_attr.__get__(v)  # a slot; AttributeError if unset
            if _defines(attr_type, "__set__", "__delete__"):
                raise _Unreadable(field)  # a data descriptor, e.g. a property
            break
    if instance_dict is None:
        raise _Unreadable(field)  # the instance may shadow the class default: unknown
    value = dict.get(instance_dict, field, _MISSING)
    if value is not _MISSING:
        return value
    if class_attr is not _MISSING and not _defines(type(class_attr), "__get__"):
        return class_attr  # e.g. field(init=False, default=0.0) never set on the instance
    raise _Unreadable(field)


def _defines(t: type, *names: str) -> bool:
    """Whether any class in ``t``'s MRO defines one of ``names`` (the descriptor protocol)."""
    for k in _mro_of(t):
        d = _dict_of(k)
        for name in names:
            if name in d:
                return True
    return False
