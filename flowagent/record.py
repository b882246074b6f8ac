"""Typed named tuples for the start-up path, without ``typing``.

``class Config(NamedTuple): ...`` is the clearest way to declare a record with typed fields,
but importing ``typing`` (and building the class through it) is a measurable part of what
``flowagent run`` does before it can start the sidecar. Type checkers see the real
``typing.NamedTuple``; at run time :class:`NamedTuple` here makes the same class with
``collections.namedtuple``: the same fields, defaults, ``_field_defaults``, ``_replace`` and
``_asdict``, docstring and annotations, and its methods (set on the class as typing does;
the names namedtuple itself defines cannot be redefined).
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple as NamedTuple
else:
    class _NamedTupleMeta(type):
        def __new__(mcs, name, bases, namespace):
            if not bases:
                return super().__new__(mcs, name, bases, namespace)
            annotations = namespace.get("__annotations__", {})
            fields = list(annotations)
            defaults = [namespace[f] for f in fields if f in namespace]
            record = namedtuple(name, fields, defaults=defaults,
                                module=namespace.get("__module__"))
            record.__doc__ = namespace.get("__doc__") or record.__doc__
            record.__annotations__ = dict(annotations)
            record.__qualname__ = namespace.get("__qualname__", name)
            for key, value in namespace.items():
                if key in _PROHIBITED:
                    raise AttributeError(f"Cannot overwrite NamedTuple attribute {key}")
                if key not in _SET and key not in annotations:
                    setattr(record, key, value)
            return record

    # As typing.NamedTuple: what namedtuple makes stays its own; what was set above is kept.
    _PROHIBITED = frozenset(("__new__", "__init__", "__slots__", "__getnewargs__", "_fields",
                             "_field_defaults", "_make", "_replace", "_asdict", "_source"))
    _SET = frozenset(("__module__", "__name__", "__annotations__", "__doc__", "__qualname__"))

    class NamedTuple(metaclass=_NamedTupleMeta):
        """Base of a typed named tuple (see the module docstring)."""
