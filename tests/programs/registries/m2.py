"""Calls m1's functions through references captured at import time."""

from m1 import HANDLERS, size


def dispatch(kind, x):
    return HANDLERS[kind](x)


def measure():
    return size("abc")
