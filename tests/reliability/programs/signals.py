"""Waits inside a recorded function for signals; what happens next depends on MODE (argv[1]).

* ``term-handler``: a SIGTERM handler prints and exits 7.
* ``default``: no handler: SIGTERM kills, SIGINT raises KeyboardInterrupt (traceback).
* ``ignore-int``: SIGINT ignored; the program finishes normally after WAIT_S.
* ``count``: counts SIGINT deliveries at the C level (one wakeup-fd byte per delivery) and
  prints the count once EXPECTED (argv[2]) arrived and nothing more came for a while.
"""

import os
import signal
import sys
import time

MODE = sys.argv[1]
WAIT_S = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
EXPECTED = int(WAIT_S) if MODE == "count" else 0


def on_term(signum, frame):
    print("got SIGTERM", flush=True)
    sys.exit(7)


def wait_for_signals(seconds):
    time.sleep(seconds)  # one line: a KeyboardInterrupt's traceback always points here
    return "waited"


def count_deliveries(read_end):
    seen = 0
    last_change = time.monotonic()
    deadline = last_change + 20
    while time.monotonic() < deadline:
        try:
            got = os.read(read_end, 64)
        except BlockingIOError:
            got = b""
        if got:
            seen += len(got)
            last_change = time.monotonic()
        elif seen >= EXPECTED and time.monotonic() - last_change > 0.6:
            break
        time.sleep(0.005)
    return seen


if MODE == "term-handler":
    signal.signal(signal.SIGTERM, on_term)
elif MODE == "ignore-int":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
elif MODE == "count":
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
print("ready", flush=True)
if MODE == "count":
    print("SIGINT deliveries:", count_deliveries(r))
else:
    print(wait_for_signals(WAIT_S))
