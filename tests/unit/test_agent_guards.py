"""Unit tests of the agent's guards: which exceptions belong to the program
(:mod:`flowagent.agent.guard`), the constant that lets instrumented functions run where
nothing records them (:mod:`flowagent.agent.portable`), and the main script's in-place swap
(:mod:`flowagent.agent.mainhook`)."""

from __future__ import annotations

import builtins
import pickle
import subprocess
import sys
import types

import pytest

from flowagent.agent import mainhook, portable
from flowagent.agent.guard import program_exception
from flowagent.agent.instrument import HELPERS, instrument_source


def _raised(fn):
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - what the agent's handlers see
        return exc
    raise AssertionError("did not raise")


def test_agent_errors_are_the_agents() -> None:
    from flowagent.agent import recorder

    exc = _raised(lambda: recorder.function_params(10 ** 9))  # IndexError in recorder.py
    assert type(exc) is IndexError
    full = tb = exc.__traceback__
    while tb is not None and "flowagent" not in tb.tb_frame.f_code.co_filename:
        tb = tb.tb_next
    # As an agent handler sees it: caught in agent code, raised in agent code.
    assert not program_exception(exc.with_traceback(tb))
    # The same, caught where a program frame is on the way: the program's.
    assert program_exception(exc.with_traceback(full))


def test_program_types_and_program_frames_belong_to_the_program() -> None:
    class Timeout(Exception):
        pass

    assert program_exception(Timeout())                 # the program's own type
    assert program_exception(KeyboardInterrupt())      # not an Exception at all
    assert program_exception(TimeoutError())           # a builtin no agent code raises
    # A builtin agent-error type raised from a frame outside the agent (a signal handler):
    assert program_exception(_raised(lambda: [][1]))
    exc = ValueError("bare")  # no traceback at all: raised by the agent's own C code
    assert not program_exception(exc)


def test_marker_unpickles_into_missing_helpers_only() -> None:
    code = instrument_source("def f(x):\n    return x + 1\n", "m.py", "m",
                             lambda *a: 7)[0]
    marked = portable.mark(code)  # type: ignore[arg-type]
    fn_code = next(c for c in marked.co_consts if isinstance(c, types.CodeType))
    assert fn_code.co_consts[-1] is portable.MARKER
    assert "__fa_call__" in fn_code.co_names
    # In a process without the helpers, unpickling the marker installs do-nothing ones.
    script = ("import builtins, pickle, sys; assert not hasattr(builtins, '__fa_call__'); "
              "pickle.loads(sys.stdin.buffer.read()); "
              "f = lambda: None\n"
              "with builtins.__fa_call__(1, 2): pass\n"
              "print(builtins.__fa_ret__(1, 5), builtins.__fa_delegate__(1, [3]))")
    out = subprocess.run([sys.executable, "-I", "-c", script],
                         input=pickle.dumps(portable.MARKER), capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().split() == ["5", "[3]"]
    # Where the helpers exist (a recorded process), they are kept; nothing else changes
    # in this process's builtins once the test is over.
    missing = object()
    saved = {name: builtins.__dict__.get(name, missing) for name in HELPERS}
    sentinel = object()
    builtins.__dict__["__fa_own__"] = sentinel
    try:
        pickle.loads(pickle.dumps(portable.MARKER))
        assert builtins.__dict__["__fa_own__"] is sentinel
    finally:
        for name, value in saved.items():
            if value is missing:
                builtins.__dict__.pop(name, None)
            else:
                builtins.__dict__[name] = value


def test_swap_keeps_lambdas_sharing_a_line_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    source = "a, b = (lambda: 1), (lambda: 2)\ndef f():\n    return 3\n"
    plain = compile(source, "prog.py", "exec", dont_inherit=True)
    twin = instrument_source(source, "prog.py", "__main__", lambda *a: 9)[0]
    setter = mainhook._const_setter()
    assert setter is not None
    monkeypatch.setattr(mainhook, "_set_const", setter)
    lambdas = [c for c in plain.co_consts if isinstance(c, types.CodeType)
               and c.co_name == "<lambda>"]
    mainhook._swap(plain, twin)  # type: ignore[arg-type]
    after = [c for c in plain.co_consts if isinstance(c, types.CodeType)]
    swapped = [c for c in after if c.co_name == "<lambda>"]
    # each lambda replaced by its own instrumented twin, in order
    assert [c for c in swapped if c in lambdas] == []
    assert ["__fa_lcall__" in c.co_names for c in swapped] == [True, True]
    assert [[k for k in c.co_consts if k in (1, 2)] for c in swapped] == [[1], [2]]
    f_code = next(c for c in after if c.co_name == "f")
    assert "__fa_call__" in f_code.co_names
