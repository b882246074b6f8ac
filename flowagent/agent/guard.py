"""Which exceptions caught inside agent code are the agent's, and which the program's.

The agent never raises into the program: its own failures (bugs meeting odd values) are
counted and swallowed. But code that is not the agent's can run inside agent code and raise
there: a signal handler (CPython runs it at the next bytecode boundary, which may be in the
agent), another thread's ``PyThreadState_SetAsyncExc``, ``KeyboardInterrupt``. Those belong
to the program and must reach it exactly as without the agent (a loop guarded by a
``setitimer`` timeout must time out). One rule, used by both recorder twins, the shape
walker and the backends.
"""

from __future__ import annotations

import os

# The agent's own failures: these exact types, raised by agent code. A subclass of one of
# them is a program's class, and any other type was raised by the program.
_AGENT_ERRORS = frozenset((TypeError, ValueError, AttributeError, KeyError, IndexError,
                           LookupError, RecursionError, RuntimeError, MemoryError,
                           OverflowError, ZeroDivisionError, UnicodeEncodeError,
                           UnicodeDecodeError, AssertionError, NameError, SystemError,
                           BufferError))
_AGENT_DIR = os.path.dirname(os.path.abspath(__file__))


def program_exception(exc: BaseException) -> bool:
    """Did the program raise ``exc`` into agent code (so it must propagate)?"""
    if type(exc) not in _AGENT_ERRORS:
        return True
    tb = exc.__traceback__
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_AGENT_DIR):
            return True  # a frame of the program: its signal handler ran inside the agent
        tb = tb.tb_next
    return False
