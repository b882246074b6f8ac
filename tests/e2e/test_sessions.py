"""Concurrent sessions never mix: 8 threads and 120 concurrent asyncio tasks, each session's
tree exactly as its own flow made it."""

from __future__ import annotations

import pytest

from helpers import outline, record

pytestmark = pytest.mark.e2e

FLOWS = {"flows.py": """
    import asyncio, time

    def handle(kind, n):
        if kind == "deep":
            return step(n, 3)
        total = 0
        for i in range(n):
            total += leaf(i)
        return total

    def step(n, depth):
        if depth == 0:
            return leaf(n)
        return step(n, depth - 1)

    def leaf(i):
        time.sleep(0)  # give other threads a chance to interleave
        return i

    async def ahandle(kind, n):
        await asyncio.sleep(0)
        if kind == "fanout":
            results = await asyncio.gather(*(achild(i) for i in range(n)))
            return sum(results)
        total = 0
        for i in range(n):
            total += await achild(i)
        return total

    async def achild(i):
        await asyncio.sleep(0)
        return leaf(i)
"""}

THREADS = """
import threading
import flows

def worker(k):
    for j in range(5):
        flows.handle("deep" if (k + j) % 2 else "wide", k % 3 + 1)

threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("ok")
"""


def test_eight_threads_sessions_do_not_mix(tmp_path, backend):
    # The script's own worker() is excluded, so each handle() call is a top-level flow.
    rec = record(THREADS, tmp_path, backend=backend, extra_files=FLOWS,
                 options=["--exclude", "__main__"])
    sessions = [s for s in rec.sessions() if s["name"] == "flows:handle"]
    assert len(sessions) == 40
    seen = {"deep": 0, "wide": 0}
    for s in sessions:
        g = rec.tree(s["session_id"])
        assert len({n["thread"] for n in g["nodes"]}) == 1
        tree = outline(g)
        if tree == [["handle", ["step", ["step", ["step", ["step", "leaf"]]]]]]:
            seen["deep"] += 1
        else:
            n = len(g["nodes"]) - 1
            assert tree == [["handle", *["leaf"] * n]] and 1 <= n <= 3, tree
            seen["wide"] += 1
    assert seen == {"deep": 20, "wide": 20}


ASYNC = """
import asyncio
import flows

async def main():
    kinds = ["fanout" if i % 2 else "serial" for i in range(120)]
    await asyncio.gather(*(flows.ahandle(k, i % 4 + 1) for i, k in enumerate(kinds)))

asyncio.run(main())
print("ok")
"""


def test_hundred_twenty_concurrent_tasks(tmp_path, backend):
    rec = record(ASYNC, tmp_path, backend=backend, extra_files=FLOWS)
    # main is not recorded (it lives in the script, which is recorded too): the gather's
    # coroutines are awaited by main's task, so they are children of __main__:main.
    mains = [s for s in rec.sessions() if s["name"] == "__main__:main"]
    assert len(mains) == 1
    g = rec.tree(mains[0]["session_id"])
    tops = [n for n in g["nodes"] if n["function_name"] == "flows:ahandle"]
    assert len(tops) == 120
    by_parent: dict = {}
    for n in g["nodes"]:
        by_parent.setdefault(n["parent_id"], []).append(n)
    for i, top in enumerate(sorted(tops, key=lambda n: n["id"])):
        kids = by_parent.get(top["id"], [])
        assert all(k["function_name"] == "flows:achild" for k in kids)
        for k in kids:
            leaves = by_parent.get(k["id"], [])
            assert [l["function_name"] for l in leaves] == ["flows:leaf"]
    counts = sorted(len(by_parent.get(t["id"], [])) for t in tops)
    assert counts == sorted((i % 4 + 1) for i in range(120))


TASKS = """
import asyncio
import flows

async def entry(i):
    return await flows.ahandle("fanout", 3)

async def main():
    loop_tasks = [asyncio.ensure_future(entry(i)) for i in range(100)]
    await asyncio.gather(*loop_tasks)

def run():
    asyncio.run(main())

run()
"""


def test_tasks_created_inside_a_session_belong_to_it(tmp_path, backend):
    rec = record(TASKS, tmp_path, backend=backend, extra_files=FLOWS)
    sessions = rec.sessions()
    assert [s["name"] for s in sessions] == ["__main__:run"]
    g = rec.tree(sessions[0]["session_id"])
    names = [n["function_name"] for n in g["nodes"]]
    assert names.count("__main__:entry") == 100
    assert names.count("flows:achild") == 300 and names.count("flows:leaf") == 300
