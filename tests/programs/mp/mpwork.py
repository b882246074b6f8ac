"""Work a spawned multiprocessing pool runs."""


def helper(x):
    return x


def square(x):
    return helper(x) * x
