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

Caches
------

The same kinds of values come back call after call, so what depends only on a class or on a
dict's key set is worked out once and kept, and a shape costs little more than one pass over
the values it samples:

* per class, keyed by ``id(cls)`` with a weak reference to tell a reused id: how instances are
  rendered, with a record's field-reading plan (where each field lives: instance dict, slot,
  class default, or behind a descriptor). A mutable class is re-checked once per
  :func:`shape_of` call against what its plan was built from: the MRO, the qualname, the size
  of each mutable class dict on the MRO (attributes added or deleted) and the identity of every
  attribute the plan depends on (record markers such as ``__dataclass_fields__`` and its size,
  class attributes of fields). Any change rebuilds the plan; a redefined class is a new class.
* per key set of a dict (a tuple of exact ``str`` keys, at most ``_MAX_KEYSET_CHARS`` characters
  in all): record or mapping, and the sorted key order as a %-template.
* static (builtin and C extension) classes that render as their name join the fixed shapes:
  they cannot change and live as long as the process.

Each cache is emptied when it reaches ``MAX_CACHED`` entries, so a run that keeps making new
classes or key sets holds a bounded amount. Entries hold ids, names and key strings only, never
an instance, a class or a value (a class descriptor would hold its class: it is fetched anew).
"""

from __future__ import annotations

import sys
from _weakref import ref
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

try:
    from .guard import program_exception
except ImportError:  # loaded on its own, outside the package (its import-cost test)
    def program_exception(exc: BaseException) -> bool:
        return False

# typing costs milliseconds at import and the host program may never load it; annotations are
# strings here (PEP 563), so only type checkers need it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from _collections_abc import dict_items, dict_keys, dict_values
    from typing import Any, Callable

    _Body = Callable[["_Walk", Any, int, str, Any], "str | _Positional"]

__all__ = [
    "MAX_CACHED",
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
MAX_CACHED = 1024  # entries per cache (classes, dict key sets) before it is emptied

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
_flags_of: Callable[[type], int] = type.__dict__["__flags__"].__get__
_IMMUTABLE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE: no attribute of the class can be set or deleted
_HEAP = 1 << 9  # Py_TPFLAGS_HEAPTYPE: without it, a static type that lives as long as the process

# Types whose shape is a constant, keyed by id(type) rather than the type itself: a dict lookup
# hashes its key, and hashing a class calls its metaclass's ``__hash__``. Every type here is a
# static type that lives as long as the process, so its id can never be reused. Static types
# met later that render as their name (datetime, range, ...) are added by _learn().
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

_fixed_shape = _FIXED.get

_LEAF, _CLASS, _COMPOSITE = 0, 1, 2
_MISSING: Any = object()  # compared by identity only: Any keeps dict.get's value type


class _Unreadable:
    """Type of :data:`_UNREADABLE`, which stands for a field that could not be read safely."""

    __slots__ = ()


_UNREADABLE = _Unreadable()

# How a record field is read (see _field_plan), mirroring object.__getattribute__ for the cases
# records use and refusing the rest.
_DICT = 0  # the instance dict only (no class attribute, or a non-data descriptor)
_DEFAULT = 1  # the instance dict, else the plain class attribute (a default never set)
_SLOT = 2  # a slot: the class's member descriptor
_REFUSED = 3  # a data descriptor such as a property: reading it would run user code


def shape_of(value: object) -> str:
    """Return the canonical shape of ``value`` (see the module docstring for the notation).

    Never raises (except ``KeyboardInterrupt``/``SystemExit`` arriving meanwhile, which belong to
    the user), never calls user-defined code and never includes a value.
    """
    fixed = _FIXED.get(id(type(value)))
    if fixed is not None:  # the common case: one dict lookup and done
        return fixed
    try:
        walk = _Walk()
        walk.budget -= 1  # what visit() would do: the top value is the first node
        return walk.describe(value, 1)
    except Exception as exc:
        if type(exc) is not RecursionError and program_exception(exc):
            raise
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


_HEAD = slice(MAX_ITEMS // 2)
_TAIL = slice(-(MAX_ITEMS // 2), None)
_ALL = slice(None)

# The base types' unbound C methods, bound to names once: the only way elements are reached, so
# a subclass overriding __iter__, __len__, keys or __getitem__ is never called.
# Typed as taking any object: each caller has checked the exact type (type(v) is dict) first.
_dict_len: Callable[[Any], int] = dict.__len__
_dict_keys: Callable[[Any], dict_keys[Any, Any]] = dict.keys
_dict_values: Callable[[Any], dict_values[Any, Any]] = dict.values
_dict_items: Callable[[Any], dict_items[Any, Any]] = dict.items
_list_len: Callable[[Any], int] = list.__len__
_list_copy: Callable[[Any], list[Any]] = list.copy
_list_get: Callable[[Any, slice], list[Any]] = list.__getitem__
_tuple_len: Callable[[Any], int] = tuple.__len__
_tuple_get: Callable[[Any, slice], tuple[Any, ...]] = tuple.__getitem__


class _Walk:
    """State of one shape_of() call: the node budget and the ids on the current path.

    The walk object also marks the classes checked during it (see _recheck): a class entry
    checked by this walk holds it, so the check is done once per walk, not once per instance.
    """

    __slots__ = ("budget", "cut", "path")

    def __init__(self) -> None:
        self.budget = MAX_NODES
        self.cut = False  # set once a position was refused for lack of budget
        self.path: list[int] = []  # at most MAX_DEPTH ids: a list beats a set here

    def visit(self, v: object, depth: int) -> str:
        if self.budget <= 0:
            self.cut = True
            return CUT
        self.budget -= 1
        fixed = _fixed_shape(id(type(v)))
        return fixed if fixed is not None else self.describe(v, depth)

    def describe(self, v: object, depth: int) -> str:
        """The shape of a value that is not a scalar, its visit already paid for.

        A body (see below) either returns the finished shape or, for a composite whose elements
        each have their own place (a record, a tuple), a %-template and the elements in order:
        their shapes are filled in here, a scalar's without the cost of a call.
        """
        t = type(v)
        try:
            entry = _types.get(id(t))
            if entry is None:
                entry = _learn(t, self)
            elif entry[_REF] is not None:  # a heap type: the same class, and unchanged?
                if entry[_REF]() is not t:
                    entry = _learn(t, self)
                elif entry[_CHECKED] is not self and entry[_CHECKS] is not None:
                    entry = _recheck(t, entry, self)
            kind = entry[_KIND]
            name: str = entry[_NAME]
            if kind == _LEAF:
                return name
            if kind == _CLASS:
                return "type[" + _qualname_of(v) + "]"  # type: ignore[arg-type]
            if depth > MAX_DEPTH:
                return CUT
            key = id(v)
            path = self.path
            if key in path:
                return CUT
            path.append(key)
            try:
                depth += 1
                shape = entry[_BODY](self, v, depth, name, entry[_DATA])
                if type(shape) is str:
                    return shape
                template: str  # a _Positional: (template, elements)
                template, elements = shape
                shapes = []
                budget = self.budget  # a local while only scalars are met: the common case
                for x in elements:  # each as visit(x, depth) would see it
                    shape = _fixed_shape(id(type(x)))
                    if budget <= 0:
                        self.cut = True
                        shape = CUT
                    elif shape is not None:
                        budget -= 1
                    elif x is _UNREADABLE:  # a field that could not be read: no budget spent
                        shape = _failed()
                    else:
                        self.budget = budget - 1
                        shape = self.describe(x, depth)
                        budget = self.budget
                    shapes.append(shape)
                self.budget = budget
                return name + template % tuple(shapes)
            finally:
                path.pop()
        except Exception as exc:
            if type(exc) is not RecursionError and program_exception(exc):
                raise
            return _failed()

    def sample(self, elements: Any, depth: int) -> str:
        """Union of the shapes of sampled elements (a list or tuple, never the user's iterable).

        A sample that the budget cut short is dropped rather than shown half-cut, as long as a
        complete one exists: a list of rows stays ``list[dict{...}]`` instead of growing a
        second, truncated alternative. Only a first sample is ever shown cut.
        """
        alternatives: set[str] = set()
        budget = self.budget  # a local while only scalars are met, as in describe()
        for x in elements:
            shape = _fixed_shape(id(type(x)))
            if budget <= 0:
                self.cut = True
                if alternatives:
                    break
                shape = CUT
            elif shape is None:
                self.budget = budget - 1
                shape = self.describe(x, depth)
                budget = self.budget
                if self.cut and alternatives:
                    break
            else:  # a scalar with budget left: nothing was cut yet
                budget -= 1
            alternatives.add(shape)
        self.budget = budget
        return _union(alternatives)

    # Bodies of composite shapes: the finished shape, or (template, elements) for describe() to
    # finish as name + template % their shapes. ``depth`` is already the depth of the elements.
    # Elements are reached only through the base type's unbound C methods.

    def dict_(self, v: Any, depth: int, name: str, _: object) -> str | _Positional:
        n = _dict_len(v)
        if n == 0:
            return name + "{}"
        half = MAX_ITEMS // 2
        sample: Any
        if n <= MAX_FIELDS:
            keys = tuple(_dict_keys(v))
            for k in keys:
                if type(k) is not str:  # only exact str keys hash without user code
                    break
            else:
                plan = _keysets.get(keys, _MISSING)
                if plan is _MISSING:
                    plan = _key_plan(keys)
                # Keys and values are read by two C calls with no user code between them, yet
                # a thread switch may fall there: the length check catches keys added or removed
                # meanwhile; a same-size swap could at worst pair a key with a neighbour's value
                # in this one shape. Splitting a consistent list(dict.items(v)) costs twice as
                # much on every dict, and dict.copy() may call a subclass's keys().
                values = tuple(_dict_values(v))
                if plan is not None and len(values) == len(keys):
                    in_order, template = plan
                    return template, in_order(values) if in_order is not None else values
            items = list(_dict_items(v))
            sample = items if len(items) <= MAX_ITEMS else items[:half] + items[-half:]
        else:
            sample = chain(islice(_dict_items(v), half), islice(reversed(_dict_items(v)), half))
        keys_seen: set[str] = set()
        values_seen: set[str] = set()
        for k, x in sample:  # as in sample(): a pair cut short by the budget is dropped
            key_shape, value_shape = self.visit(k, depth), self.visit(x, depth)
            if self.cut and keys_seen:
                break
            keys_seen.add(key_shape)
            values_seen.add(value_shape)
        return name + "[" + _union(keys_seen) + ", " + _union(values_seen) + "]"

    def list_(self, v: Any, depth: int, name: str, _: object) -> str:
        n = _list_len(v)
        if n == 0:
            return name + "[]"
        elements = _list_copy(v) if n <= MAX_ITEMS else _list_get(v, _HEAD) + _list_get(v, _TAIL)
        return name + "[" + self.sample(elements, depth) + "]"

    def deque_(self, v: Any, depth: int, name: str, _: object) -> str:
        n = deque.__len__(v)
        if n == 0:
            return name + "[]"
        get = deque.__getitem__  # O(1) near either end, and we only sample the ends
        return name + "[" + self.sample([get(v, i) for i in _indices(n)], depth) + "]"

    def tuple_(self, v: Any, depth: int, name: str, _: object) -> str | _Positional:
        n = _tuple_len(v)
        if n <= MAX_TUPLE:
            return _TUPLE_TEMPLATES[n], _tuple_get(v, _ALL)
        elements = _tuple_get(v, _HEAD) + _tuple_get(v, _TAIL)
        return name + "[" + self.sample(elements, depth) + ", ...]"

    def set_(self, v: Any, depth: int, name: str, _: object) -> str:
        return self._unordered(set.__len__(v), set.__iter__(v), depth, name)

    def frozenset_(self, v: Any, depth: int, name: str, _: object) -> str:
        return self._unordered(frozenset.__len__(v), frozenset.__iter__(v), depth, name)

    def _unordered(self, n: int, it: Any, depth: int, name: str) -> str:
        if n == 0:
            return name + "[]"
        return name + "[" + self.sample(list(islice(it, MAX_ITEMS)), depth) + "]"

    def namedtuple_(self, v: Any, depth: int, name: str, data: tuple[tuple[str, ...], str]) -> _Positional:
        # By position rather than attribute: same values, and no descriptor is involved.
        fields, template = data
        n = min(_tuple_len(v), len(fields))
        if n != len(fields):  # a tuple.__new__-made instance shorter than its fields
            template = _template(fields[:MAX_FIELDS], "(", ",...)" if n > MAX_FIELDS else ")")
        return template, _tuple_get(v, slice(min(n, MAX_FIELDS)))

    def record_(self, v: Any, depth: int, name: str, plan: _RecordPlan) -> _Positional:
        dict_at, fields, template = plan
        mro = _mro_of(type(v))
        instance_dict = _instance_dict(v, mro, dict_at)
        values = []
        for field, how, at in fields:
            if how == _DICT and instance_dict is not None:  # the common case, inline
                values.append(dict.get(instance_dict, field, _UNREADABLE))
            else:
                values.append(_read_field(v, mro, instance_dict, field, how, at))
        return template, values


_TUPLE_TEMPLATES = ["[" + ", ".join(["%s"] * n) + "]" for n in range(MAX_TUPLE + 1)]

if TYPE_CHECKING:
    _Positional = tuple[str, Any]  # (template, elements), see _Walk.describe

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

# --------------------------------------------------------------------------------------------
# Caches (see "Caches" in the module docstring)

_MAX_KEYSET_CHARS = 512  # longer key sets are analysed afresh each time, never kept

if TYPE_CHECKING:
    # How to render a record dict: a getter putting its values in sorted key order (None if
    # they already are) and the template "{k1:%s,k2:%s}" to fill with their shapes.
    _KeyPlan = tuple[Callable[[tuple[Any, ...]], tuple[Any, ...]] | None, str]

_keysets: dict[tuple[str, ...], _KeyPlan | None] = {}  # None: the dict is a mapping

# id(class) → [kind, name, body, data, weak reference to the class, checks, last walk that
# checked it]: a list, so that the last field can be updated in place.
_KIND, _NAME, _BODY, _DATA, _REF, _CHECKS, _CHECKED = range(7)
_types: dict[int, list[Any]] = {}


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """Store in a cache that is emptied when full: bounded, and O(1) with no bookkeeping."""
    if len(cache) >= MAX_CACHED:
        cache.clear()
    cache[key] = value


def _clear_caches() -> None:
    """Forget every class and key set learned so far (the fixed shapes of builtins stay)."""
    _types.clear()
    _keysets.clear()


def _template(labels: Any, open_: str, close: str) -> str:
    """``{a:%s,b:%s}`` for labels ``a``, ``b``: one %-format fills in all the shapes at once."""
    return open_ + ",".join([label.replace("%", "%%") + ":%s" for label in labels]) + close


def _key_plan(keys: tuple[str, ...]) -> _KeyPlan | None:
    """Whether a dict with these exact-str keys is a record, and how to render it.

    Fields are sorted so that the shape, and where a budget cut falls, do not depend on the
    insertion order.
    """
    plan = None
    for k in keys:
        if not k.isidentifier() or iskeyword(k):
            break
    else:
        order = sorted(range(len(keys)), key=keys.__getitem__)
        # Only two keys or more can be out of order, and itemgetter of two or more positions
        # returns a tuple.
        in_order = None if order == list(range(len(keys))) else itemgetter(*order)
        plan = (in_order, _template([keys[i] for i in order], "{", "}"))
    if sum(map(len, keys)) <= _MAX_KEYSET_CHARS:
        _remember(_keysets, keys, plan)
    return plan


def _learn(t: type, walk: _Walk) -> list[Any]:
    """Classify ``t`` and remember it, with what to re-check if the class is mutable."""
    exact = _CONTAINERS.get(id(t))
    data: Any  # per body: None, or what the body needs (a record's fields, ...)
    if exact is not None:  # a builtin collection itself: nothing to look up
        kind, name, body, data = _COMPOSITE, exact[1], exact[0], None
    else:
        kind, name, body, data = _classify(t)
    if kind == _LEAF and not _flags_of(t) & _HEAP:
        _FIXED[id(t)] = name  # a static type cannot change and lives as long as the process
    watched = _MARKERS
    if body is _Walk.record_:  # how fields are read depends on their class attributes too
        watched = watched | {field for field, _how, _at in data[1]}
    entry = [kind, name, body, data, None, _checks(t, watched), walk]
    if _flags_of(t) & _HEAP:  # may die, and its id be reused: the entry must know it by sight
        try:
            entry[_REF] = ref(t)
        except TypeError:  # not weakly referenceable: used this once, not kept
            return entry
    _remember(_types, id(t), entry)
    return entry


def _checks(t: type, keys: frozenset[str]) -> Any:
    """What the classification of ``t`` read that could change since, or None if nothing can.

    For every mutable class of the MRO: its position and id, the size of its dict (any attribute
    added or deleted) and, for each of ``keys`` it defines (markers, fields), the id of the value
    and its size if it is a dict (a fields dict edited in place). Ids only, so that a check
    never holds a class or a value; an attribute replaced is seen (the new value exists before
    the old one goes, so their ids differ), unless it is replaced again by an object that takes
    the first one's freed address before the class is next looked at.
    """
    mro = _mro_of(t)
    classes = []
    for at, k in enumerate(mro):
        if _flags_of(k) & _IMMUTABLE:
            continue
        d = _dict_of(k)
        watched = tuple([(key, id(d[key]), _size(d[key])) for key in d.keys() & keys])
        classes.append((at, id(k), len(d), watched))
    if not classes:
        return None
    return (_qualname_of(t), len(mro), tuple(classes))


def _size(value: object) -> int | bool:
    """What _recheck compares to tell a fields dict edited in place (False if not a dict)."""
    return type(value) is dict and _dict_len(value)


def _recheck(t: type, entry: list[Any], walk: _Walk) -> list[Any]:
    """The entry of mutable class ``t``, rebuilt if the class changed since it was made."""
    qualname, mro_len, classes = entry[_CHECKS]
    mro = _mro_of(t)
    if len(mro) != mro_len or _qualname_of(t) is not qualname:
        return _learn(t, walk)
    for at, class_id, size, watched in classes:
        k = mro[at]
        if id(k) != class_id:
            return _learn(t, walk)
        d = _dict_of(k)
        if len(d) != size:
            return _learn(t, walk)
        for key, value_id, value_size in watched:
            value = d.get(key, _MISSING)
            if id(value) != value_id or (type(value) is dict and _dict_len(value)) != value_size:
                return _learn(t, walk)
    entry[_CHECKED] = walk
    return entry


# --------------------------------------------------------------------------------------------
# Classification of a class, from its metadata only

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

if TYPE_CHECKING:
    # (MRO position of the class providing __dict__ or -1, (field, how, MRO position) per
    # shown field, the template of the shape after the class name)
    _RecordPlan = tuple[int, tuple[tuple[str, int, int], ...], str]


def _classify(t: type) -> tuple[int, str, Any, Any]:
    """How to render instances of ``t``: (kind, name, body, data), from class metadata only."""
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
                template = _template(fields[:MAX_FIELDS], "(", ",...)" if len(fields) > MAX_FIELDS else ")")
                return _COMPOSITE, name, _Walk.namedtuple_, (fields, template)
        names = _record_fields(found)
        if names is not None:
            return _COMPOSITE, name, _Walk.record_, _record_plan(mro, names)
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


# --------------------------------------------------------------------------------------------
# Reading record fields without running user code


def _record_plan(mro: tuple[type, ...], names: list[str]) -> _RecordPlan:
    """Where each shown field of a record class is read from (see _field_plan)."""
    dict_at = -1
    for at, k in enumerate(mro):
        desc = _dict_of(k).get("__dict__")
        if desc is not None:
            if type(desc) is GetSetDescriptorType:  # the C getset, never a user override
                dict_at = at
            break
    shown = names[:MAX_FIELDS]
    fields = tuple([(field, *_field_plan(mro, field)) for field in shown])
    return dict_at, fields, _template(shown, "{", ",...}" if len(names) > MAX_FIELDS else "}")


def _field_plan(mro: tuple[type, ...], field: str) -> tuple[int, int]:
    """How attribute lookup would find ``field`` on an instance, where that needs no user code.

    Mirrors object.__getattribute__ for the cases records use (a slot, an instance dict entry,
    a plain class-level default) and refuses the rest: a property or other data descriptor
    would run user code, which may raise, block, or lazily load from a database.
    Returns (how, MRO position of the class attribute, or -1 if there is none).
    """
    for at, k in enumerate(mro):
        if id(k) == _OBJECT_ID:
            break
        d = _dict_of(k)
        if field in d:
            attr_type = type(d[field])
            if attr_type is MemberDescriptorType:
                return _SLOT, at
            if _defines(attr_type, "__set__", "__delete__"):
                return _REFUSED, at
            if _defines(attr_type, "__get__"):
                return _DICT, at  # a non-data descriptor: only an instance value is safe
            return _DEFAULT, at  # e.g. field(init=False, default=0.0) never set on the instance
    return _DICT, -1


def _instance_dict(v: object, mro: tuple[type, ...], dict_at: int) -> dict[str, Any] | None:
    """``v.__dict__`` through the C getset the class machinery installed, never a user override.

    The descriptor is fetched again rather than kept: it holds its class, which a cache must not.
    """
    if dict_at < 0:
        return None
    desc = _dict_of(mro[dict_at]).get("__dict__")
    if type(desc) is not GetSetDescriptorType:
        return None
    d = desc.__get__(v)
    return d if issubclass(type(d), dict) else None


def _read_field(v: object, mro: tuple[type, ...], instance_dict: Any, field: str, how: int, at: int) -> object:
    """The value of a record field planned by _field_plan, or _UNREADABLE."""
    try:
        if how == _SLOT:
            desc = _dict_of(mro[at]).get(field)
            return desc.__get__(v) if type(desc) is MemberDescriptorType else _UNREADABLE
        if how == _REFUSED or instance_dict is None:
            return _UNREADABLE  # without the instance dict, an instance value may hide a default
        value = dict.get(instance_dict, field, _MISSING)
        if value is not _MISSING:
            return value
        if how == _DEFAULT:
            return _dict_of(mro[at]).get(field, _UNREADABLE)
        return _UNREADABLE
    except Exception as exc:  # e.g. an unset slot
        if type(exc) is not RecursionError and program_exception(exc):
            raise
        return _UNREADABLE


def _defines(t: type, *names: str) -> bool:
    """Whether any class in ``t``'s MRO defines one of ``names`` (the descriptor protocol)."""
    for k in _mro_of(t):
        d = _dict_of(k)
        for name in names:
            if name in d:
                return True
    return False


# --------------------------------------------------------------------------------------------
# Structural fingerprints: describing a structure once
#
# A value's shape depends only on the types met, the key sets of record dicts and where the
# walk cuts. The C hot path (_shapekey.h) digests exactly that into a fingerprint, keeps the
# shape id of the first value with a fingerprint and reuses it for every later one, so a
# structure is walked once, not once per call. It refuses what it does not mirror exactly
# (the value is then described here, each time): a walk that would run out of budget, a
# cycle, a dict of more than MAX_FIELDS keys, a subclass of a builtin collection, a class, a
# record field that is not in the instance dict. :func:`fingerprint` is the same rule in
# Python (the twin, and what tests hold the C digest to); :func:`fingerprint_plan` is the one
# place that says what a class contributes, for both.

FINGERPRINT_LIMITS = (MAX_DEPTH, MAX_FIELDS, MAX_ITEMS, MAX_NODES, MAX_TUPLE)

_WATCHED_MARKERS = ("__dataclass_fields__", "__pydantic_fields__", "model_fields")
_BUILTIN_COLLECTIONS = frozenset(map(id, (dict, list, tuple, set, frozenset)))


def fingerprint_plan(t: type) -> object:
    """What instances of ``t`` contribute to a fingerprint, from class metadata only.

    ``0``: a leaf (the shape is the class's name); ``("record", fields, watched)``: a record
    whose shown fields are all read from the instance dict, with the marker dicts whose size
    tells an in-place edit; ``("namedtuple", n)``: a named tuple of ``n`` fields; ``None``:
    refused (described afresh each time). Called once per class state, never raises.
    """
    try:
        entry = _learn(t, _Walk())
        kind, body, data = entry[_KIND], entry[_BODY], entry[_DATA]
        if kind == _LEAF:
            return 0
        if body is _Walk.namedtuple_:
            return ("namedtuple", len(data[0]))
        if body is not _Walk.record_:
            return None  # a class object, or a subclass of a builtin collection
        dict_at, fields, _template = data
        if dict_at < 0 or any(how not in (_DICT, _DEFAULT) for _f, how, _at in fields):
            return None
        mro = _mro_of(t)
        watched: dict[str, Any] = {}
        for k in mro:
            d = _dict_of(k)
            if id(k) != _OBJECT_ID and not _flags_of(k) & _HEAP and "__dict__" in d:
                return None  # an instance dict behind a builtin base's own getter
            for marker in _WATCHED_MARKERS:
                if marker in d and marker not in watched:
                    watched[marker] = d[marker]
        return ("record", tuple([f for f, _how, _at in fields]),
                tuple([w for w in watched.values() if type(w) is dict]))
    except Exception as exc:
        if type(exc) is not RecursionError and program_exception(exc):
            raise
        return None


class _Refused(Exception):
    """Raised inside fingerprint(): the value is described afresh, not by fingerprint."""


def fingerprint(value: object) -> tuple[Any, ...] | None:
    """The structure ``shape_of(value)`` depends on, as a hashable key, or None if refused.

    The pure-Python statement of the rule the C shape cache follows: two values with equal
    fingerprints have equal shapes, and the C digest of two values is equal exactly when
    these keys are. Holds classes (not instances) while it is kept: for tests, not caches.
    """
    out: list[Any] = []
    try:
        _fp_describe(value, 1, [MAX_NODES - 1], [], out)
    except _Refused:
        return None
    except Exception as exc:
        if type(exc) is not RecursionError and program_exception(exc):
            raise
        return None
    return tuple(out)


def _fp_visit(v: object, depth: int, budget: list[int], path: list[int], out: list[Any]) -> None:
    if budget[0] <= 0:
        raise _Refused  # the walk would cut here: the shape depends on the budget
    budget[0] -= 1
    _fp_describe(v, depth, budget, path, out)


def _fp_describe(v: object, depth: int, budget: list[int], path: list[int], out: list[Any]) -> None:
    t = type(v)
    out.append(t)
    if id(t) in _SCALAR_TYPE_IDS:
        return
    plan: Any = None
    if id(t) not in _BUILTIN_COLLECTIONS:
        plan = fingerprint_plan(t)
        if plan == 0 and type(plan) is int:
            return
        if plan is None:
            raise _Refused
    if depth > MAX_DEPTH:
        out.append(CUT)
        return
    if id(v) in path:
        raise _Refused  # a cycle
    path.append(id(v))
    depth += 1
    half = MAX_ITEMS // 2
    elements: Any
    if t is dict:
        n = _dict_len(v)
        if n == 0:
            out.append("{}")
            elements = ()
        elif n > MAX_FIELDS:
            raise _Refused
        else:
            items = list(_dict_items(v))
            if all(type(k) is str and k.isidentifier() and not iskeyword(k) for k, _ in items):
                out.append(("record", tuple([k for k, _ in items])))
                elements = [x for _, x in items]
            else:
                if n > MAX_ITEMS:
                    items = items[:half] + items[-half:]
                elements = [e for pair in items for e in pair]
                out.append(("pairs", len(elements)))
    elif t is list:
        n = _list_len(v)
        elements = _list_copy(v) if n <= MAX_ITEMS else _list_get(v, _HEAD) + _list_get(v, _TAIL)
        # How many elements follow is part of the key: without it the flat key of
        # [[None, None], None] would be the one of [[None, None, None]].
        out.append(("sample", len(elements)) if n else "[]")
    elif t is tuple:
        n = _tuple_len(v)
        elements = _tuple_get(v, _ALL) if n <= MAX_TUPLE else _tuple_get(v, _HEAD) + _tuple_get(v, _TAIL)
        out.append(n if n <= MAX_TUPLE else ("sample", len(elements)))
    elif t is set or t is frozenset:
        elements = list(islice(t.__iter__(v), MAX_ITEMS))  # type: ignore[arg-type]
        out.append(("sample", len(elements)) if elements else "[]")
    elif plan[0] == "namedtuple":
        n = min(_tuple_len(v), plan[1])
        out.append(n)
        elements = _tuple_get(v, slice(min(n, MAX_FIELDS)))
    else:
        d = _instance_dict(v, _mro_of(t), _dict_at(t))
        if d is None:
            raise _Refused
        keys = [k for k, _ in _dict_items(d)]
        if (len(keys) != len(plan[1]) or any(k is not f for k, f in zip(keys, plan[1]))) \
                and any(type(k) is not str for k in keys):
            raise _Refused  # fields are looked up by name only among exact-str keys
        elements = []
        for field in plan[1]:
            x = dict.get(d, field, _MISSING)
            if x is _MISSING:
                raise _Refused  # a default on the class, or unreadable
            elements.append(x)
        out.append("record")
    for x in elements:
        _fp_visit(x, depth, budget, path, out)
    path.pop()


def _dict_at(t: type) -> int:
    """MRO position of the class whose ``__dict__`` getter gives an instance its dict."""
    for at, k in enumerate(_mro_of(t)):
        if "__dict__" in _dict_of(k):
            return at
    return -1


_SCALAR_TYPE_IDS = frozenset(map(id, (int, str, float, bool, type(None), bytes, complex)))
