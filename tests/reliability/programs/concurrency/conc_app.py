"""The recorded code: one request = one session of 4 calls (or 6 for asyncio: 2 child tasks).

A request's argument is an int or a str, and every call of the request receives the same
value, so a session whose calls show both `x: int` and `x: str` mixed two requests.
"""

import asyncio


def step(x):
    return x


def leaf(x):
    return x


def handle(x):
    a = step(x)
    leaf(x)
    step(x)
    return a


async def child(x):
    await asyncio.sleep(0)
    return step(x)


async def ahandle(x):
    await asyncio.sleep(0)
    a = step(x)
    await asyncio.sleep(0)
    await asyncio.gather(child(x), child(x))  # tasks created inside the session belong to it
    leaf(x)
    return a


def ghandle(x):
    import gevent

    a = step(x)
    gevent.sleep(0)
    leaf(x)
    gevent.sleep(0)
    step(x)
    return a
