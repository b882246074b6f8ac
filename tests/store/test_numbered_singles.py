"""One-call session rows handed to the store with their session numbers and no ids (what
the sidecar's grouped path writes) store and read exactly as the same rows given whole:
in the compact form, in the table form, with a linked session among them, and with rows
that share nothing; and the frame-column gather the grouped path uses picks what a lookup
per index picks."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from flowagent.sidecar.singles import Held, _Take
from flowagent.store.api import RECENT
from flowagent.store.sqlite import SQLiteStore

RUN = "run-1"


def _rows(sid: int, first: int, n: int, names: bool) -> list[tuple[Any, ...]]:
    return [(sid + i, f"p-{first + i}", RUN, f"m:f{i}" if names else "m:f", 1, 7, "p", "Main",
             "error" if i % 3 == 0 else "success", 1, 1000 + first + i, 1010 + first + i + i,
             10 + i, 1, int(i % 3 == 0), "v", RECENT, " 1 ", None) for i in range(n)]


def _write(store: SQLiteStore, first: int, n: int, numbered: bool, names: bool) -> None:
    held = Held()
    rows = _rows(held.next_sid(store), first, n, names)
    chunk = store.add_chunk(RUN, "p", 0, n, b"")
    if numbered:
        cols: list[Any] = [list(c) for c in zip(*rows)]
        cols[1] = None  # left to the store
        held.add_columns(cols, chunk, list(range(first, first + n)))
    else:
        held.add(rows, chunk)
    with store.transaction():
        held.flush(store, 1000)


def _reads(store: SQLiteStore) -> dict[str, Any]:
    return {"list": store.sessions(RUN, limit=1000),
            "one": [store.session(f"p-{i}") for i in range(1, 60)],
            "totals": store.session_totals(RUN), "count": store.count_sessions(RUN),
            "results": store.session_results(RUN),
            "parent": store.parent_session("p-4")}


@pytest.mark.parametrize("names", [False, True])
@pytest.mark.parametrize("compact", [True, False])
def test_numbered_rows_read_as_whole_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          compact: bool, names: bool) -> None:
    out = []
    for numbered in (True, False):
        with monkeypatch.context() as m:
            if not compact:
                m.setattr(SQLiteStore, "compact_singles", False)
            store = SQLiteStore(str(tmp_path / f"{numbered}.db"))
        assert store._singles == compact
        store.create_run(RUN, 1, None, None)
        with store.transaction():  # linked before its row is written: written as a row
            store.add_session_link(RUN, "p-4", "p-2", 1, "m:f", 7)
        _write(store, 1, 30, numbered, names)
        _write(store, 31, 150 if names else 25, numbered, names)
        out.append(_reads(store))
        stored_as = store.db.execute("SELECT COUNT(*) FROM main.sessions").fetchone()[0]
        out[-1]["rows"] = stored_as
        store.close()
    assert out[0] == out[1]
    assert out[0]["parent"] == "p-2" and out[0]["count"] == (179 if names else 54)
    if compact and not names:
        assert out[0]["rows"] == 2  # the linked pair only


def test_held_rows_without_ids_need_their_numbers() -> None:
    cols: list[Any] = [list(c) for c in zip(*_rows(1, 1, 3, False))]
    cols[1] = None
    with pytest.raises(ValueError):
        Held().add_columns(cols, 1)
    with pytest.raises(ValueError):
        Held().add_columns(cols, 1, [1, None, 3])


@pytest.mark.parametrize("seed", range(6))
def test_take_picks_what_a_lookup_per_index_picks(seed: int) -> None:
    rnd = random.Random(seed)
    n = rnd.choice([1, 5, 200, 3000])
    col = [rnd.randrange(1 << 40) for _ in range(n)]
    for leave_out in (0, 1, 3, 15, 16, 40, n // 2, n):
        gone = set(rnd.sample(range(n), min(leave_out, n)))
        idx = [i for i in range(n) if i not in gone]
        got = _Take(idx, n)(col)
        assert got == [col[i] for i in idx]
        if idx and len(idx) < n:
            assert got is not col
