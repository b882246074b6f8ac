"""Hostile values passed to, returned from and raised by recorded functions.

Every hostile method notes that it ran in TOUCHED (and most then raise or never end); the
program prints what was touched at the end. Run plainly, nothing touches them, so under the
agent the output must be the same: the agent neither ran them nor changed anything the
program can see. "Never ends" is bounded (SPIN_S seconds), so a test fails instead of hanging.

argv: GROUP (default ``values``): ``values`` (everything below that the agent leaves alone),
``metaclass-hash``, ``thread-name``, ``exception-metaclass`` (one hostile thing each).
"""

import array
import collections
import dataclasses
import decimal
import enum
import fractions
import gc
import itertools
import re
import sqlite3
import sys
import threading
import time
import weakref
from unittest import mock

SPIN_S = 5.0
TOUCHED = collections.Counter()


class Boom(Exception):
    pass


def touched(what):
    TOUCHED[what] += 1


def spin(what):
    touched(what)
    deadline = time.monotonic() + SPIN_S
    while time.monotonic() < deadline:
        pass
    raise Boom(what)


# -- objects whose special methods raise or never end -------------------------------------

class ClassRaises:
    @property
    def __class__(self):
        touched("__class__")
        raise Boom("__class__")


class LenRaises:
    def __len__(self):
        touched("__len__")
        raise Boom("__len__")


class LenNeverEnds:
    def __len__(self):  # noqa: PLE0303 (hostile on purpose)
        spin("__len__ (endless)")


class IterNeverEnds:
    def __iter__(self):
        touched("__iter__")
        return itertools.count()


class IterRaises:
    def __iter__(self):
        touched("__iter__ (raises)")
        raise Boom("__iter__")


class GetattrRaises:
    def __getattr__(self, name):
        touched("__getattr__")
        raise Boom(name)


class GetattrEndless:
    """Every attribute is another one of itself: a walker following attributes never ends."""

    def __getattr__(self, name):
        touched("__getattr__ (endless)")
        return GetattrEndless()


class GetattributeRaises:
    def __getattribute__(self, name):
        touched("__getattribute__")
        raise Boom(name)


class DictRaises:
    @property
    def __dict__(self):
        touched("__dict__")
        raise Boom("__dict__")


class EqRaises:
    def __eq__(self, other):
        touched("__eq__")
        raise Boom("__eq__")

    __hash__ = object.__hash__


class HashRaises:
    def __hash__(self):
        touched("__hash__")
        raise Boom("__hash__")


class HashNeverEnds:
    def __hash__(self):  # noqa: PLE0309 (hostile on purpose)
        spin("__hash__ (endless)")


class ReprRaises:
    def __repr__(self):
        touched("__repr__")
        raise Boom("__repr__")

    def __str__(self):
        touched("__str__")
        raise Boom("__str__")


class BoolRaises:
    def __bool__(self):
        touched("__bool__")
        raise Boom("__bool__")


class DelLogs:
    def __del__(self):
        pass


class Meta(type):
    def __getattribute__(cls, name):
        if not name.startswith("__") or name in ("__name__", "__qualname__", "__module__",
                                                 "__dict__", "__mro__", "__slots__"):
            touched(f"metaclass __getattribute__({name})")
        return super().__getattribute__(name)

    def __hash__(cls):
        touched("metaclass __hash__")
        return 1

    def __eq__(cls, other):
        touched("metaclass __eq__")
        return cls is other


class WithHostileMeta(metaclass=Meta):
    pass


class HostileDict(dict):
    def keys(self):
        touched("dict.keys")
        raise Boom

    def items(self):
        touched("dict.items")
        raise Boom

    def __iter__(self):
        touched("dict.__iter__")
        raise Boom

    def __len__(self):
        touched("dict.__len__")
        raise Boom

    def __getitem__(self, key):
        touched("dict.__getitem__")
        raise Boom


class HostileList(list):
    def __iter__(self):
        touched("list.__iter__")
        raise Boom

    def __len__(self):
        touched("list.__len__")
        raise Boom

    def __getitem__(self, i):
        touched("list.__getitem__")
        raise Boom


class Slotted:
    __slots__ = ("set_one", "unset_one")

    def __init__(self):
        self.set_one = 1


@dataclasses.dataclass
class Record:
    name: str
    other: object = None

    @property
    def computed(self):
        touched("dataclass property")
        return 1


@dataclasses.dataclass
class LazyField:
    value: int = 0


def _lazy_get(self):
    touched("dataclass field behind a property")
    raise Boom


LazyField.value = property(_lazy_get, lambda self, v: None)


class FakeDataclass:
    __dataclass_fields__ = "not a dict"


class FakeNamedTuple(tuple):
    _fields = ("a", None, 3)


class FakeAttrs:
    __attrs_attrs__ = 5


Point = collections.namedtuple("Point", "x y")


class Color(enum.Enum):
    RED = 1


class NosyThread(threading.Thread):
    """A thread whose ``name`` is a property with a side effect."""

    @property
    def name(self):
        touched("Thread.name")
        return self._name

    @name.setter
    def name(self, value):
        self._name = value


# -- exceptions with hostile types --------------------------------------------------------

class ExcMeta(type):
    def __getattribute__(cls, name):
        if name in ("__name__", "__qualname__", "__module__"):
            touched(f"exception metaclass __getattribute__({name})")
        return super().__getattribute__(name)


class NosyError(Exception, metaclass=ExcMeta):
    pass


class UnprintableError(Exception):
    def __str__(self):
        touched("exception __str__")
        raise Boom


# -- the recorded functions ---------------------------------------------------------------

def take(value, *rest, **options):
    return value


def give(value):
    return value


def fail(exc):
    raise exc


def in_thread(value):
    return take(value)


def values():
    dead = DelLogs()
    dead_proxy = weakref.proxy(dead)
    del dead
    gc.collect()
    live = Record("live")
    self_list = []
    self_list.append(self_list)
    self_dict = {}
    self_dict["me"] = self_dict
    cyclic = Record("cyclic")
    cyclic.other = cyclic
    deep = []
    node = deep
    for _ in range(100_000):
        node.append([])
        node = node[0]
    conn = sqlite3.connect(":memory:")
    magic = mock.MagicMock()
    hostile = [
        ClassRaises(), LenRaises(), LenNeverEnds(), IterNeverEnds(), IterRaises(),
        GetattrRaises(), GetattrEndless(), GetattributeRaises(), DictRaises(), EqRaises(),
        HashRaises(), HashNeverEnds(), ReprRaises(), BoolRaises(),
        WithHostileMeta, HostileDict(a=1), HostileList([1, 2]), Slotted(),
        Record("x", ClassRaises()), LazyField(), FakeDataclass(), FakeNamedTuple((1, 2, 3)),
        FakeAttrs(), Point(1, ReprRaises()), Color.RED,
        # huge, self-referencing, deep
        list(range(1_000_000)), dict.fromkeys(range(200_000)), "x" * 50_000_000,
        set(range(100_000)), self_list, self_dict, cyclic, deep, (self_list,) * 1000,
        # from C extensions
        array.array("d", range(100)), memoryview(b"abc"), memoryview(bytearray(10)).cast("B"),
        decimal.Decimal("1.10"), fractions.Fraction(1, 3), conn, re.compile(r"\d+"),
        re.match(r"\d", "1"), iter([1]), sys.stdout, sys, threading.Lock(),
        # proxies
        weakref.proxy(live), dead_proxy, magic, mock.NonCallableMagicMock(spec=Record),
        mock.sentinel.token,
    ]
    for value in hostile:
        take(value)
        take(value, value, key=value)
        give(value)
    for exc in (UnprintableError(), Boom(ClassRaises())):
        try:
            fail(exc)
        except Exception:  # noqa: BLE001, S110 (the program handles its own errors)
            pass
    t = threading.Thread(target=in_thread, args=(LenRaises(),))
    t.start()
    t.join()
    conn.close()
    print("values:", len(hostile))
    print("magic mock children:", sorted(magic._mock_children), "calls:", magic.mock_calls)


def metaclass_hash():
    value = WithHostileMeta()
    take(value)
    give(value)


def thread_name():
    t = NosyThread(target=in_thread, args=(1,))
    t.start()
    t.join()


def exception_metaclass():
    try:
        fail(NosyError("n"))
    except NosyError:
        pass


GROUPS = {"values": values, "metaclass-hash": metaclass_hash, "thread-name": thread_name,
          "exception-metaclass": exception_metaclass}
take(None)  # a first session before anything hostile
GROUPS[sys.argv[1] if len(sys.argv) > 1 else "values"]()
print("touched:", sorted(TOUCHED.items()))
print("done")
