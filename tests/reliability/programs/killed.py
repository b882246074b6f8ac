"""Completes COMPLETE sessions, then opens one more that finishes OPEN_CALLS calls and hangs.

argv: TOTAL COMPLETE OPEN_CALLS. The sessions after the hanging one never run: the test
kills the program with SIGKILL while it hangs. The loops are at module level, so each
``session(i)`` (and the hanging ``hang``) is a session of its own.
"""

import sys
import time


def leaf(k):
    return k


def session(i):
    for k in range(5):
        leaf(k)
    return i


def hang(open_calls):
    for k in range(open_calls):
        leaf(k)
    print("hanging", flush=True)
    time.sleep(120)


total, complete, open_calls = map(int, sys.argv[1:4])
for i in range(complete):
    session(i)
print("completed", complete, flush=True)
hang(open_calls)
for i in range(complete + 1, total):
    session(i)
