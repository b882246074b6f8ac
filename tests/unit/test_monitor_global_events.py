"""The ``monitor`` backend's global events (``PY_UNWIND``, ``PY_THROW``) for code it has not
classified yet, in this process, on the C callbacks and on the Python ones.

Both events fire for every code object an exception leaves or is thrown into. The C core
remembers a code object it found in no info (so that its next events cost a slot read); a
remembered miss must never hide a function recorded later: a frame that was already running
when the backend installed unwinds before its code was ever classified, and the same
function's later calls are recorded like any other, their exceptions and throws included.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import pytest

from flowagent.agent import backends, recorder
from flowagent.agent.select import Selector
from helpers import import_source

pytestmark = pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring: 3.12+")

SOURCE = textwrap.dedent('''\
    def outer(install):
        install()
        raise ValueError("out")

    def plain(x):
        return x + 1

    def boom(x):
        raise KeyError(x)

    def catcher(install):
        try:
            install()
            yield 1
        except LookupError:
            yield 2
        yield 3

    def unselected_raiser(n):
        for i in range(n):
            try:
                raise IndexError(i)
            except IndexError:
                pass
''')


def load(tmp_path: Path, name: str) -> ModuleType:
    return import_source(tmp_path, name, SOURCE)


@pytest.fixture(params=["c", "python"])
def setup(request: pytest.FixtureRequest, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Callable[[], None], list, Any,
                                                             ModuleType, ModuleType]]:
    """An install function (not yet called), the calls it closes as (parameters, return
    value or exception type), and the selected and unselected modules."""
    chosen = load(tmp_path, "fa_global_events_selected")
    other = load(tmp_path, "fa_global_events_other")
    backend, _ = backends.choose("monitor")
    assert backend.name == "monitor"
    if request.param == "python":
        backend.cores = None
    elif backend.cores is None:
        pytest.skip(f"no C core here: {backend.core}")
    closed: list[tuple[Any, Any]] = []
    real_close = recorder.close_call

    def close(rec: list, exc_type: Any) -> None:
        closed.append((recorder.function_params(rec[recorder.FID]),
                       exc_type if exc_type is not None else rec[recorder.RV]))
        real_close(rec, exc_type)

    monkeypatch.setattr(recorder, "close_call", close)
    monkeypatch.setattr(recorder.S, "on", True)

    def install() -> None:
        backend.install(Selector(("fa_global_events_selected",), (), ()), True)

    try:
        yield install, closed, backend, chosen, other
    finally:
        backend.uninstall()


def test_a_frame_running_at_install_unwinds_and_its_later_calls_are_recorded(
        setup: Any) -> None:
    install, closed, backend, chosen, other = setup
    with pytest.raises(ValueError):
        chosen.outer(install)  # its frame began before the backend: never opened
    assert closed == []
    other.unselected_raiser(5)  # unrecorded code unwinding, before and after a new record
    assert chosen.plain(1) == 2
    other.unselected_raiser(5)
    with pytest.raises(ValueError):
        chosen.outer(lambda: None)
    with pytest.raises(ValueError):
        chosen.outer(lambda: None)
    assert closed == [(("x",), 2), (("install",), ValueError), (("install",), ValueError)]
    assert not backend._live


def test_an_exception_of_code_first_seen_unwinding_closes_its_call(setup: Any) -> None:
    """Unrecorded code unwinds many times (the C core remembers the misses), then recorded
    code raises for the first time and again: each call is closed with its exception."""
    install, closed, backend, chosen, other = setup
    install()
    other.unselected_raiser(50)
    for x in range(3):
        with pytest.raises(KeyError):
            chosen.boom(x)
        other.unselected_raiser(3)
    assert closed == [(("x",), KeyError)] * 3
    assert not backend._live


def test_a_generator_thrown_into_before_its_code_was_classified(setup: Any) -> None:
    """A generator suspended when the backend installed is thrown into (PY_THROW for code
    never classified): it is not recorded; a later generator of the same function is, and a
    throw into it resumes its call, which ends when it is exhausted."""
    install, closed, backend, chosen, other = setup
    early = chosen.catcher(install)
    assert next(early) == 1  # installs while the generator runs
    assert early.throw(LookupError) == 2
    assert list(early) == [3]
    assert closed == []
    late = chosen.catcher(lambda: None)
    assert next(late) == 1
    assert late.throw(LookupError) == 2
    assert list(late) == [3]
    assert [params for params, _ in closed] == [("install",)]
    assert closed[0][1] is None  # a generator's result: what its final return gave
    assert not backend._live
