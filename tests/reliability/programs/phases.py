"""Two phases of sessions with a pause between them, for killing or stopping the sidecar.

argv: BEFORE AFTER GO_FILE [EXIT]. Runs BEFORE sessions, says `phase 1 done`, waits until
GO_FILE exists (the test acts on the sidecar meanwhile), runs AFTER sessions, prints a
checksum of what they returned and exits with EXIT (default 3).
"""

import os
import sys
import time


def leaf(k):
    return k


def session(i):
    total = 0
    for k in range(5):
        total += leaf(k)
    return i + total


before, after, go = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
code = int(sys.argv[4]) if len(sys.argv) > 4 else 3
checksum = 0
for i in range(before):
    checksum += session(i)
print("phase 1 done", checksum, flush=True)
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.01)
for i in range(after):
    checksum += session(i)
print("phase 2 done", checksum)
sys.exit(code)
