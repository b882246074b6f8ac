"""Runs a script as ``__main__`` exactly as ``python script.py`` would, but instrumented.

``python script.py`` compiles the script without going through the import system, so no
import hook can instrument it. The launcher therefore starts ``python -m
flowagent.agent.runmain script.py ARGS`` when the ``wrap`` backend is active, and this module
rebuilds what the interpreter would have set up: a fresh ``__main__`` module with the same
attributes, ``sys.argv``, ``sys.path[0]`` (the script's real directory), and, for an exception
escaping the script, the same traceback (without our frames), exit status 1, or the SIGINT
death that CPython uses for an unhandled ``KeyboardInterrupt``.
"""

from __future__ import annotations

import os
import sys
import types
from importlib.machinery import SourceFileLoader

from . import runstate


def compile_main(source: bytes, path: str, run_name: str) -> types.CodeType:
    """Code for a main script: instrumented if ``__main__`` is selected, else plain."""
    selector = runstate.selector
    if selector is not None and runstate.backend_name == "wrap" \
            and selector.wants("__main__", path):
        # loaded already when recording with wrap; not imported by an unrecorded run
        from . import recorder
        from .codecache import instrumented_code

        try:
            code, _ = instrumented_code(source, path, run_name, runstate.nested, main=True)
            return code
        except SyntaxError:
            raise
        except Exception:
            recorder.S.agent_errors += 1
    return compile(source, path, "exec", dont_inherit=True)


def build_main_code(path: str, run_name: str = "__main__") -> types.CodeType:
    """Compile ``path`` for running as a main module, instrumented when it is selected."""
    with open(path, "rb") as f:
        source = f.read()
    return compile_main(source, os.path.abspath(path), run_name)


def _trim_traceback(tb: types.TracebackType | None) -> types.TracebackType | None:
    here = os.path.abspath(__file__)
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) == here:
        tb = tb.tb_next
    return tb


def run(script: str, args: list[str]) -> None:
    path = os.path.abspath(script)
    sys.argv[:] = [script, *args]
    sys.path[0] = os.path.dirname(os.path.realpath(path))
    main = types.ModuleType("__main__")
    main.__dict__.update({
        "__file__": path, "__cached__": None, "__package__": None, "__spec__": None,
        "__loader__": SourceFileLoader("__main__", path), "__builtins__": __builtins__,
        "__annotations__": {},
    })
    try:
        code = build_main_code(path)
    except OSError as exc:
        sys.stderr.write(f"{sys.executable}: can't open file {script!r}: [Errno {exc.errno}] "
                         f"{exc.strerror}\n")
        raise SystemExit(2)
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:
        tb = _trim_traceback(exc.__traceback__)
        exc.__traceback__ = tb
        sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, tb
        sys.excepthook(type(exc), exc, tb)
        if isinstance(exc, KeyboardInterrupt):
            _die_by_sigint()
        raise SystemExit(1)


def _die_by_sigint() -> None:
    """What CPython does after an unhandled KeyboardInterrupt: exit *by* SIGINT (status 130)."""
    import atexit
    import signal

    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    os._exit(130)


def main() -> None:
    if len(sys.argv) < 2:
        sys.stderr.write("usage: python -m flowagent.agent.runmain SCRIPT [ARGS...]\n")
        raise SystemExit(2)
    run(sys.argv[1], sys.argv[2:])


if __name__ == "__main__":
    main()
