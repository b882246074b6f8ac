"""Plain-versus-agent scenarios for what happens inside the recorded process: re-entrancy
(finalizers, signal handlers, thread switches), asynchronous exceptions, code that leaves
the process, transparency to the program's own introspection and tools, and names or
process events that could silently end recording. Run by ``test_plain_vs_agent.py``."""

from __future__ import annotations

import re
from collections.abc import Callable

from harness import AgentRun, Scenario

SCENARIOS: list[Scenario] = []


def scenario(name: str, prog: str, **kw: object) -> Scenario:
    klass = name.split("/", 1)[0]
    files = dict(kw.pop("files", {}))  # type: ignore[arg-type]
    files["prog.py"] = prog
    s = Scenario(name=name, klass=klass, files=files, **kw)  # type: ignore[arg-type]
    SCENARIOS.append(s)
    return s


# -- checks on what was recorded -------------------------------------------------------------

def recorded(**at_least: int) -> Callable[[AgentRun], None]:
    """At least this many calls of each named function were stored, and nothing was
    lost without being counted."""

    def check(run: AgentRun) -> None:
        calls = run.function_calls()
        for fn, n in at_least.items():
            assert calls.get(fn, 0) >= n, (f"{fn}: {calls.get(fn, 0)} calls recorded, "
                                           f"expected >= {n}; recorded {calls}")
        acc = run.accounting()
        assert acc is not None, "nothing stored"
        assert acc["produced"] == acc["stored"] + acc["dropped"], acc

    return check


def no_addresses(data: bytes) -> bytes:
    return re.sub(rb"0x[0-9a-f]+", b"0x?", data)


# == crash: re-entrancy from finalizers, signal handlers, thread switches ===================

scenario("crash/del-cycle", """
    class Node:
        def __init__(self): self.me = self
        def __del__(self): pass
    def work(d): Node(); return {"x": d["x"] + 1}
    def session(n):
        d = {"x": 0}
        for _ in range(n): d = work(d)
        return d["x"]
    print("ok", sum(session(200) for _ in range(400)))
""", check=recorded(session=400, work=1000))
