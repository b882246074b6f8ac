"""Fixture: every kind of callable a module defines, called once each from main()."""


def add(a, b):
    return a + b


class Counter:
    def __init__(self, start):
        self._value = start

    def bump(self, step):
        self._value = add(self._value, step)
        return self

    @classmethod
    def starting_at(cls, start):
        return cls(start)

    @staticmethod
    def double(x):
        return x * 2

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, new):
        self._value = new

    @value.deleter
    def value(self):
        self._value = 0


def outer(k):
    def inner(y):
        return y + k

    return inner(1) + inner(2)


def countdown(n):
    if n <= 1:
        return 1
    return countdown(n - 1) + 1


def main():
    print(add(1, 2))
    counter = Counter.starting_at(10)
    counter.bump(5)
    print(Counter.double(4), counter.value)
    counter.value = 7
    print(counter.value)
    del counter.value
    print(outer(10))
    print(countdown(5))


main()
