"""A request loop that measures itself: per-request latency and the process's peak RSS.

argv: REQUESTS CALLS_PER_REQUEST REPORT_JSON [GO_FILE]. Each `handle(i)` (a session) makes
CALLS_PER_REQUEST recorded calls. With GO_FILE, waits for it after saying `ready` (the test
stops the sidecar meanwhile). The report goes to a file, so stdout is the program's own.
"""

import json
import os
import sys
import time


def leaf(k, i):
    return k + i


def handle(i, calls):
    total = 0
    for k in range(calls):
        total += leaf(k, i)
    return {"id": i, "total": total}


requests, calls, report = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
go = sys.argv[4] if len(sys.argv) > 4 else None
print("ready", flush=True)
deadline = time.monotonic() + 60
while go and not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.01)
clock = time.perf_counter_ns
latencies = []
started = clock()
for i in range(requests):
    t0 = clock()
    handle(i, calls)
    latencies.append(clock() - t0)
elapsed = clock() - started
# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec, so it would include
# the memory of the process that forked us (pytest, the launcher).
with open("/proc/self/status") as f:
    peak_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
latencies.sort()
with open(report, "w") as f:
    json.dump({"p50_us": latencies[len(latencies) // 2] / 1e3,
               "p99_us": latencies[len(latencies) * 99 // 100] / 1e3,
               "max_us": latencies[-1] / 1e3, "elapsed_s": elapsed / 1e9,
               "maxrss_kib": peak_kib}, f)
print("served", requests)
