"""The batch entries' shape check (``wire._check_entries``) with its C twin
(``_fold.entries_ok``) and without: the same batches pass and the same ones are refused
with the same message, on random well-formed and broken entries of every kind."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from flowagent.protocol import wire

_fold = pytest.importorskip("flowagent.sidecar._fold")

_VALUES: dict[Any, list[Any]] = {int: [0, 7, -3, 1 << 40], str: ["", "MainThread", "m:f"],
                                  list: [[], [1, "x"]], (str, list): ["s", ["a", 1]]}
_WRONG = [True, 1.5, None, b"x", ("t",), {"k": 1}]


def _entry(rnd: random.Random, layout: tuple[Any, ...]) -> list[Any]:
    return [rnd.choice(_VALUES[t]) for t in layout]


def _batch(rnd: random.Random) -> dict[str, Any]:
    batch: dict[str, Any] = {}
    for key, layouts in wire._ENTRIES.items():
        if rnd.random() < 0.8:
            batch[key] = [_entry(rnd, rnd.choice(layouts)) for _ in range(rnd.randrange(40))]
    return batch


def _break(rnd: random.Random, batch: dict[str, Any]) -> None:
    keys = [k for k, v in batch.items() if v]
    if not keys:
        return
    entries = batch[rnd.choice(keys)]
    i = rnd.randrange(len(entries))
    how = rnd.randrange(5)
    if how == 0 and entries[i]:
        entries[i][rnd.randrange(len(entries[i]))] = rnd.choice(_WRONG)
    elif how == 1:
        entries[i] = tuple(entries[i])
    elif how == 2:
        entries[i].append(3)
    elif how == 3 and entries[i]:
        entries[i].pop()
    else:
        entries[i] = rnd.choice(_WRONG)


def _outcome(batch: dict[str, Any], twin: Any) -> str | None:
    try:
        wire._check_entries(copy.deepcopy(batch), twin)
    except ValueError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("seed", range(8))
def test_c_and_python_checks_agree(seed: int) -> None:
    rnd = random.Random(seed)
    refused = 0
    for _ in range(300):
        batch = _batch(rnd)
        if rnd.random() < 0.6:
            _break(rnd, batch)
        pure = _outcome(batch, None)
        assert _outcome(batch, _fold.entries_ok) == pure
        refused += pure is not None
    assert 0 < refused < 300


def test_the_decoder_uses_the_twin_unless_asked_not_to(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert wire.Decoder()._entries_ok is _fold.entries_ok
    monkeypatch.setenv("FLOWAGENT_PURE", "1")
    assert wire.Decoder()._entries_ok is None
