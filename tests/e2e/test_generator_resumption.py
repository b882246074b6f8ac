"""End-to-end: a generator resumed by ``throw()`` or ``close()`` is the current call again.

A generator that handles the exception thrown into it (or the ``GeneratorExit`` of
``close()``) runs code before it yields or returns: those calls are its children, not the
caller's of ``throw()``, and the generator stays one successful call.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import one, outline, record

pytestmark = pytest.mark.e2e

PROGRAM = """
    def leaf(x):
        return x


    def resilient():
        while True:
            try:
                yield 1
            except KeyError:
                leaf("recovering")
            except GeneratorExit:
                leaf("closing")
                return


    def driver():
        g = resilient()
        next(g)
        g.throw(KeyError("handled inside"))
        leaf("between")
        g.close()
        return "done"


    driver()
"""


def test_throw_and_close_resume_the_generator(tmp_path: Path, backend: str) -> None:
    rec = record(PROGRAM, tmp_path, backend=backend)
    [g] = rec.trees()
    assert outline(g) == [["driver", ["resilient", "leaf", "leaf"], "leaf"]]
    gen = one(g, ":resilient")
    assert gen["result_type"] == "success"
    assert [n["input_shape"] for n in g["nodes"] if n["function_name"].endswith(":leaf")] \
        == [{"x": "str"}] * 3


# Every way an exception reaches a suspended generator: each driver is one session.
CASES = """
    import asyncio


    def leaf(x):
        return x


    def counting():
        n = 0
        while True:
            try:
                n = yield n
            except KeyError:
                leaf("handled")


    def handled_then_yields():
        g = counting()
        next(g)
        first = g.throw(KeyError("a"))
        second = g.throw(KeyError("b"))
        leaf("after")
        return first, second, g.send(3)


    def cleaning():
        try:
            yield 1
            yield 2
        finally:
            leaf("cleanup")


    def propagates():
        g = cleaning()
        next(g)
        try:
            g.throw(ValueError("out"))
        except ValueError:
            leaf("caught")
        return "ok"


    def closes_with_finally():
        g = cleaning()
        next(g)
        g.close()
        return g.gi_frame is None


    def returning():
        try:
            yield 1
        except GeneratorExit:
            leaf("exit")
            return


    def closes_caught():
        g = returning()
        next(g)
        g.close()
        return "closed"


    def inner():
        while True:
            try:
                yield 1
            except KeyError:
                leaf("inner")


    def outer():
        try:
            yield from inner()
        except ValueError:
            leaf("outer")
            yield 2


    def delegates():
        g = outer()
        next(g)
        g.throw(KeyError("to inner"))
        v = g.throw(ValueError("through inner"))
        g.close()
        return v


    async def agen():
        try:
            while True:
                try:
                    yield 1
                except KeyError:
                    leaf("athrow")
        finally:
            leaf("aclose")


    async def adriver():
        g = agen()
        await g.__anext__()
        await g.athrow(KeyError("k"))
        await g.aclose()
        return "done"


    def async_generators():
        return asyncio.run(adriver())


    print(handled_then_yields(), propagates(), closes_with_finally(), closes_caught(),
          delegates(), async_generators())
"""


EXPECTED = {
    # handled twice, yields again each time; the calls while handling are the generator's
    "handled_then_yields": ["handled_then_yields:success",
                            ["counting:success", "leaf:success", "leaf:success"],
                            "leaf:success"],
    # the exception leaves the generator after its finally ran: it failed, its catcher goes on
    "propagates": ["propagates:partial", ["cleaning:error", "leaf:success"], "leaf:success"],
    # close(): the finally's calls are the generator's, closing early is no failure
    "closes_with_finally": ["closes_with_finally:success", ["cleaning:success", "leaf:success"]],
    "closes_caught": ["closes_caught:success", ["returning:success", "leaf:success"]],
    # throw() into a `yield from` chain reaches the innermost generator first: the first
    # exception it handles, the second leaves it (it failed) and the outer one handles it
    "delegates": ["delegates:partial",
                  ["outer:partial", ["inner:error", "leaf:success"], "leaf:success"]],
    # athrow() handled, then aclose() runs the finally
    "async_generators": ["async_generators:success",
                         ["adriver:success", ["agen:success", "leaf:success", "leaf:success"]]],
}


def test_every_way_an_exception_reaches_a_suspended_generator(tmp_path: Path,
                                                              backend: str) -> None:
    rec = record(CASES, tmp_path, backend=backend)
    assert rec.stdout.strip() == "(0, 0, 3) ok True closed 2 done"
    got = {}
    for g in rec.trees():
        for tree in outline(g, result=True):
            name = (tree[0] if isinstance(tree, list) else tree).split(":")[0]
            got[name] = tree
    assert {k: got.get(k) for k in EXPECTED} == EXPECTED
