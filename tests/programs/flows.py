"""Fixture: generators, delegation, async functions, async generators and asyncio tasks.

Each top-level flow is its own session; a thread started inside one joins it.
"""

import asyncio
import threading


def leaf(x):
    return x


def consumer_work(x):
    return x


def numbers(n):
    for i in range(n):
        leaf(i)
        yield i
    leaf(-1)


def consume():
    total = 0
    for x in numbers(3):
        total += consumer_work(x)
    return total


def inner_gen():
    yield leaf("a")
    yield leaf("b")
    return 7


def outer_gen():
    result = yield from inner_gen()
    yield result


def delegate():
    return list(outer_gen())


def close_early():
    it = numbers(10)
    next(it)
    consumer_work("between")
    next(it)
    it.close()
    for x in numbers(10):
        if x == 1:
            break
    return x


async def anumbers(n):
    for i in range(n):
        leaf(i)
        await asyncio.sleep(0)
        yield str(i)


async def fetch(x):
    await asyncio.sleep(0)
    return leaf(x) * 2


async def spawner():
    task = asyncio.create_task(fetch(3))
    return await task


async def amain():
    got = []
    async for v in anumbers(2):
        got.append(consumer_work(v))
    pair = await asyncio.gather(fetch(1), fetch(2))
    last = await spawner()
    return got, pair, last


def worker(n):
    return leaf(n)


def threaded():
    thread = threading.Thread(target=worker, args=(5,), name="flows-worker")
    thread.start()
    thread.join()
    return leaf(0)


print(consume())
print(delegate())
print(close_early())
print(asyncio.run(amain()))
print(threaded())
