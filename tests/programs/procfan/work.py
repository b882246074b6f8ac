def crunch(n):
    return helper(n) + 1


def helper(n):
    return n * 2
