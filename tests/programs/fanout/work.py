import time

def crunch(x):
    return helper(x) * 2

def helper(x):
    return x + 1

def later(x):
    time.sleep(0.2)
    return helper(x)
