"""The row mappings readers get (``runs()``, ``sessions()``, ``functions()``,
``processes()``) hold exactly the columns their TypedDicts in :mod:`flowagent.store.api` name,
each value of the annotated type, on every store (recording and finished runs, open and
finished sessions)."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from flowagent.store import api
from flowagent.store.api import (
    RECENT, FunctionDef, RunEnd, SessionEnd, Store, open_store)

RUN = "run-1"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()


def _fits(value: object, hint: Any) -> bool:
    if isinstance(hint, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return type(value) is list and all(_fits(v, item) for v in value)
    return type(value) is hint


def _mismatches(row: Mapping[str, Any], cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    wrong: dict[str, Any] = {k: "missing" for k in hints if k not in row}
    wrong.update({k: "extra" for k in row if k not in hints})
    wrong.update({k: (row[k], hints[k]) for k in hints if k in row and not _fits(row[k], hints[k])})
    return wrong


def test_typed_dicts_name_the_documented_fields() -> None:
    for cls, fields in ((api.RunDict, api.RUN_FIELDS), (api.SessionDict, api.SESSION_FIELDS),
                        (api.FunctionDict, api.FUNCTION_FIELDS),
                        (api.ProcessDict, api.PROCESS_FIELDS)):
        assert tuple(typing.get_type_hints(cls)) == fields, cls.__name__


def test_rows_match_their_typed_dicts(store: Store) -> None:
    store.create_run(RUN, 100, None, "h")
    store.create_run("run-2", 200, "checkout", "web-1")
    store.add_function(RUN, FunctionDef(1, "app:main", "app", "main", "app.py", 10, "function",
                                        ("a",)))
    with store.transaction():
        store.add_process(RUN, "p1", 42, 1, {"argv": ["app.py"]}, 5)
    rowid = store.open_session("p1-1", RUN, 1, 42, "p1", "1", 1_000)
    store.finish_session(rowid, SessionEnd(
        name="app:main", root_fid=1, thread="MainThread", result="success", complete=True,
        started_ns=1_000, ended_ns=1_010, calls=1, errors=0, variant="v1", tree_kept=RECENT,
        fids=(1,), raised=()))
    store.open_session("p1-2", RUN, 1, 42, "p1", "1", 2_000)  # still open
    store.finish_run("run-2", RunEnd(("app.py",), "/work", "wrap", 900, 0, "finished"))

    runs = store.runs()
    assert len(runs) == 2  # one recording, one finished
    for run in runs:
        assert _mismatches(run, api.RunDict) == {}, (run["run_id"], _mismatches(run, api.RunDict))
    sessions = store.sessions(RUN)
    assert [s["session_id"] for s in sessions] == ["p1-1", "p1-2"]
    for session in sessions:
        assert _mismatches(session, api.SessionDict) == {}, session["session_id"]
    one = store.session("p1-2")
    assert one is not None and _mismatches(one, api.SessionDict) == {}
    functions = store.functions(RUN)
    assert _mismatches(functions[1], api.FunctionDict) == {}
    (process,) = store.processes(RUN)
    assert _mismatches(process, api.ProcessDict) == {}
