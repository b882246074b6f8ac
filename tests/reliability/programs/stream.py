"""Sessions one after the other, each announced on stdout once it has returned.

argv: SESSIONS [PAUSE_S]: `done I` after session I; PAUSE_S seconds between sessions.
"""

import sys
import time


def leaf(k):
    return k


def session(i):
    for k in range(5):
        leaf(k)
    return i


n = int(sys.argv[1])
pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
for i in range(n):
    session(i)
    print("done", i, flush=True)
    if pause:
        time.sleep(pause)
