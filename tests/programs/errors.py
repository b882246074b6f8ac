"""Fixture: exceptions that propagate, and exceptions a caller handles."""


class AppError(Exception):
    pass


def fail(x):
    raise ValueError("boom")


def middle(x):
    return fail(x) + 1


def ok(x):
    return x


def handler():
    ok(1)
    try:
        middle(2)
    except ValueError:
        pass
    ok(3)
    return "handled"


def top():
    ok(0)
    return handler()


def deep_fail():
    return middle(1)


def propagate():
    ok(0)
    deep_fail()


def custom():
    raise AppError("custom")


def gen_fail():
    yield ok(1)
    fail(2)


def drain():
    seen = []
    try:
        for v in gen_fail():
            seen.append(ok(v))
    except ValueError:
        pass
    return seen


def numbers(n):
    for i in range(n):
        ok(i)
        yield i


def thrower():
    gen = numbers(5)
    next(gen)
    try:
        gen.throw(KeyError("thrown in"))
    except KeyError:
        pass
    return "survived"


print(top())
try:
    propagate()
except ValueError:
    print("propagate raised")
try:
    custom()
except AppError:
    print("custom raised")
print(drain())
print(thrower())
