"""A dispatch table filled while the module is imported."""


def handle_a(x):
    return x + 1


def handle_b(x):
    return str(x)


HANDLERS = {"a": handle_a, "b": handle_b}


def size(s):
    return len(s)
