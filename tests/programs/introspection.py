"""Fixture: prints what introspection and pickling see; must print the same under the agent."""

import asyncio
import functools
import inspect
import pickle


def plain(a, /, b=2, *rest, key: int = 0, **kw) -> int:
    """doc of plain"""
    return a


async def coro(x):
    return x


def gen(n):
    yield n


async def agen(n):
    yield n


def deco(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


@deco
@deco
def wrapped(x, y=1):
    """doc of wrapped"""
    return x + y


@deco
async def wrapped_coro(x):
    return x


class Point:
    """A recorded class whose instances are pickled."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def norm(self):
        return abs(self.x) + abs(self.y)

    @property
    def pair(self):
        return (self.x, self.y)

    @classmethod
    def origin(cls):
        return cls(0, 0)

    @staticmethod
    def unit():
        return Point(1, 0)

    def __eq__(self, other):
        return isinstance(other, Point) and self.pair == other.pair

    def __repr__(self):
        return f"Point({self.x}, {self.y})"


def describe(f):
    return (f.__name__, f.__qualname__, f.__module__, str(inspect.signature(f)), f.__doc__,
            inspect.iscoroutinefunction(f), inspect.isgeneratorfunction(f),
            inspect.isasyncgenfunction(f), inspect.isfunction(f), inspect.ismethod(f),
            f.__code__.co_argcount if hasattr(f, "__code__") else None,
            getattr(f, "__defaults__", None), getattr(f, "__kwdefaults__", None),
            f.__annotations__ if hasattr(f, "__annotations__") else None)


def main():
    for f in (plain, coro, gen, agen, wrapped, wrapped_coro, Point.norm, Point.origin,
              Point.unit, Point.__init__, Point.pair.fget):
        print(describe(f))
    print(inspect.unwrap(wrapped).__qualname__, wrapped.__wrapped__.__wrapped__.__name__,
          str(inspect.signature(inspect.unwrap(wrapped))), inspect.iscoroutinefunction(wrapped_coro))
    print(wrapped(3), wrapped(3, y=4), asyncio.run(wrapped_coro(5)), asyncio.run(coro(6)))
    print([type(Point.__dict__[k]).__name__ for k in ("pair", "origin", "unit", "norm")])
    print(inspect.isgenerator(gen(1)), inspect.iscoroutine(c := coro(1)), inspect.isasyncgen(agen(1)))
    c.close()
    print(inspect.getsource(Point.unit))
    print(inspect.getsourcelines(plain)[1], plain.__code__.co_firstlineno, plain.__code__.co_filename == __file__)
    for obj in (plain, gen, coro, Point, Point.norm, Point.unit, wrapped, describe):
        data = pickle.dumps(obj)
        print(pickle.loads(data) is obj, len(pickle.dumps(obj, protocol=0)))
    p = Point(3, -4)
    q = pickle.loads(pickle.dumps(p))
    print(q, q == p, q.norm(), q.pair, type(q) is Point, pickle.dumps(p) == pickle.dumps(q))
    print(pickle.loads(pickle.dumps(Point.origin)).__self__ is Point)
    bound = functools.partial(plain, 1, key=3)
    print(pickle.loads(pickle.dumps(bound))(), inspect.signature(bound))


if __name__ == "__main__":
    main()
