"""Typed named tuples for the start-up path, without ``typing``.

``class Config(NamedTuple): ...`` is the clearest way to declare a record with typed fields,
but importing ``typing`` (and building the class through it) is a measurable part of what
``flowagent run`` does before it can start the sidecar. Type checkers see the real
``typing.NamedTuple``; at run time :class:`NamedTuple` here makes the same class with
``collections.namedtuple``: the same fields, defaults, ``_field_defaults``, ``_replace`` and
``_asdict``, docstring and annotations. Fields only: a record declared this way holds no
methods.
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
            return record

    class NamedTuple(metaclass=_NamedTupleMeta):
        """Base of a typed named tuple (see the module docstring)."""
