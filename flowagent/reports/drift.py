"""Shape drift: how the shapes a function received or returned changed over a recording.

The input is one function's variants (distinct shape texts) in order of first appearance, each
with the session and time it was first seen. Every variant is flattened into *positions*: the
value itself (path ``""``, or the parameter name for inputs), each record field
(``payload.user.id``), container elements (``items[]``: list, set, deque and iterator items,
long tuples' elements and mapping values) and positional tuple elements (``pair[0]``).

A position's *type set* is the set of its alternatives' heads: ``int``, ``Cart``, a record
``dict{}``, a container ``list[]``, a mapping with its key shape; a head ignores what sits
deeper, which has positions of its own. Events, for variant ``k`` (the first variant is the
baseline and reports nothing):

* **appeared**: the position is in ``k`` and in no earlier variant.
* **disappeared**: the position is absent from ``k`` and was present in every variant from
  the one where it first appeared up to ``k - 1``. A field that comes and goes (an optional
  key) is therefore reported once, when it first goes.
* **changed**: the position is in ``k`` with a type set never seen there before; ``before``
  is its shape in the latest earlier variant that had it. Flipping back to a type already
  seen there is not a change.

Appearing and disappearing are reported only where the parent position is there before and
after with the same type set as in the latest earlier variant that had it: a new field
``user`` is one event, not one per subfield, and a record that became a list (or became a
record again) says the rest in its texts.

Cuts are not evidence: a position whose shape is only ``...`` or ``?`` has no type set (no
``changed``), and nothing under it, or under a union holding a cut or a record cut after
``MAX_FIELDS`` fields, is reported as disappeared.

Events come ordered by variant, then parameter, then path (parents before children, siblings
by name).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from flowagent.reports.shapetree import (
    Container, MappingShape, Record, Shape, TupleShape, Union, Unknown, merge_trees, parse,
    render, split_inputs,
)

__all__ = ["DriftEvent", "Variant", "drift", "input_drift"]

Path = tuple[str, ...]  # segments: field names, "[]" and "[0]"
Kind = Literal["appeared", "disappeared", "changed"]
_Found = tuple[int, Path, Kind, str | None, str | None]  # variant index, path, kind, texts


@dataclass(frozen=True, slots=True)
class Variant:
    """One distinct shape text of a function's input or output, and when it was first seen."""

    shape: str
    count: int
    first_session: str
    first_seen: int  # ns


@dataclass(frozen=True, slots=True)
class DriftEvent:
    """A position that appeared, disappeared or changed type in the variant first seen in
    ``session`` at ``seen`` (ns)."""

    kind: Kind
    path: str
    before: str | None
    after: str | None
    session: str
    seen: int


def drift(variants: Sequence[Variant]) -> list[DriftEvent]:
    """Drift events of one function's output (or any single shape) across ``variants``.

    Variants are taken in order of ``first_seen`` (a stable sort: ties keep their order).
    Raises ValueError for a malformed shape text.
    """
    ordered = sorted(variants, key=lambda v: v.first_seen)
    snapshots = [_snapshot(parse(v.shape), ()) for v in ordered]
    found = _track(snapshots, ())
    return [_event(ordered[k], kind, path, before, after)
            for k, path, kind, before, after in sorted(found, key=lambda e: (e[0], e[1]))]


def input_drift(params: Sequence[str], variants: Sequence[Variant]) -> list[DriftEvent]:
    """Drift events of one function's inputs: each variant's ``shape`` is the stored JSON list
    of per-parameter shapes aligned with ``params``; paths start with the parameter name
    (``payload.user.id``). A parameter missing from a variant's list counts as absent."""
    ordered = sorted(variants, key=lambda v: v.first_seen)
    per_variant = [split_inputs(v.shape) for v in ordered]
    found: list[tuple[int, int, Path, Kind, str | None, str | None]] = []
    for i, param in enumerate(params):
        root = (param,)
        snapshots = [_snapshot(parse(shapes[i]), root) if i < len(shapes) else None
                     for shapes in per_variant]
        found.extend((k, i, path, kind, before, after)
                     for k, path, kind, before, after in _track(snapshots, root))
    found.sort(key=lambda e: (e[0], e[1], e[2]))
    return [_event(ordered[k], kind, path, before, after)
            for k, _, path, kind, before, after in found]


def _event(v: Variant, kind: Kind, path: Path, before: str | None,
           after: str | None) -> DriftEvent:
    text = "".join(s if s.startswith("[") or not i else "." + s for i, s in enumerate(path))
    return DriftEvent(kind, text, before, after, v.first_session, v.first_seen)


@dataclass(slots=True)
class _Snapshot:
    """One variant flattened: position → (type set or None if only cut/unreadable, text)."""

    present: dict[Path, tuple[frozenset[str] | None, str]] = field(default_factory=dict)
    unsure: set[Path] = field(default_factory=set)  # absence below these is no evidence


def _snapshot(shape: Shape, root: Path) -> _Snapshot:
    snap = _Snapshot()
    _flatten(merge_trees([shape]), root, snap)  # merging folds sibling records into one
    return snap


def _flatten(shape: Shape, path: Path, snap: _Snapshot) -> None:
    options = shape.options if isinstance(shape, Union) else (shape,)
    known = [o for o in options if not isinstance(o, Unknown)]
    heads = frozenset(_head(o) for o in known) if known else None
    snap.present[path] = (heads, render(shape))
    if len(known) < len(options):
        snap.unsure.add(path)
    children: dict[str, list[Shape]] = {}
    for o in known:
        for segment, child in _children(o):
            children.setdefault(segment, []).append(child)
        if isinstance(o, Record) and o.truncated:
            snap.unsure.add(path)
    for segment, shapes in children.items():
        _flatten(merge_trees(shapes), path + (segment,), snap)


def _head(s: Shape) -> str:
    if isinstance(s, Record):
        return s.name + s.style
    if isinstance(s, Container):
        return s.name + "[]"
    if isinstance(s, TupleShape):
        return s.name + ("[...]" if s.variadic else "()")
    if isinstance(s, MappingShape):
        return s.name + "[" + render(s.key) + ", ]"
    return render(s)


def _children(s: Shape) -> list[tuple[str, Shape]]:
    if isinstance(s, Record):
        return [(f.name, f.shape) for f in s.fields]
    if isinstance(s, Container):
        return [] if s.item is None else [("[]", s.item)]
    if isinstance(s, TupleShape):
        if s.variadic:
            return [("[]", s.items[0])]
        return [(f"[{i}]", item) for i, item in enumerate(s.items)]
    if isinstance(s, MappingShape):
        return [("[]", s.value)]
    return []


def _track(snapshots: Sequence[_Snapshot | None], root: Path) -> list[_Found]:
    """Events as (variant index, path, kind, before, after); ``None`` = root absent."""
    seen_types: dict[Path, set[frozenset[str]]] = {}
    latest: dict[Path, str] = {}  # text in the latest variant with a known type there
    unbroken: dict[Path, bool] = {}  # present in every variant since it first appeared
    last_heads: dict[Path, frozenset[str]] = {}  # type set in the latest variant with one
    events: list[_Found] = []
    for k, snap in enumerate(snapshots):
        present = snap.present if snap is not None else {}
        known_before = set(seen_types)
        reshaped: set[Path] = set()  # their children's comings and goings are in their text
        for path, (heads, text) in present.items():  # parents come before their children
            if path not in known_before:
                if k and (path == root or path[:-1] in known_before and path[:-1] not in reshaped):
                    events.append((k, path, "appeared", None, text))
                seen_types[path] = set()
                unbroken[path] = True
            elif heads is not None and heads not in seen_types[path] and seen_types[path]:
                events.append((k, path, "changed", latest.get(path), text))
            if heads is not None:
                if last_heads.get(path, heads) != heads:
                    reshaped.add(path)
                last_heads[path] = heads
                seen_types[path].add(heads)
            if heads is not None or path not in latest:
                latest[path] = text
        for path in [p for p, ok in unbroken.items() if ok and p not in present]:
            if snap is not None and any(path[:i] in snap.unsure for i in range(len(path))):
                continue  # under a cut: the position may well still be there
            unbroken[path] = False
            if path == root or path[:-1] in present and path[:-1] not in reshaped:
                events.append((k, path, "disappeared", latest.get(path), None))
    return events
