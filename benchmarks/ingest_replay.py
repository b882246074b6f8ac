"""Sidecar ingest rate, measured in-process: ``python ingest_replay.py DATA_DIR [REPEATS]``.

The live sidecar's busy time cannot be seen from outside (it polls, sleeps and shares the
CPU with the program), so the rate is measured by replaying a finished run: its ring files
are copied into a fresh run directory with the consumer tail reset to 0, and
``flowagent.sidecar.ingest.Ingestor`` drains them into a fresh SQLite store, exactly as the
sidecar does, with its garbage-collector setting (decode, session trees, aggregates, stored
chunks, retention, final ``finish_all``; ``replay.py``). A second figure, decode only (zstd + msgpack + column
decoding as the sidecar does it, ``Decoder.decode_columns``; no trees or SQLite), shows how
much of that is the wire format.

Times are the process's CPU time (``time.process_time``): on a shared, loaded machine the
wall time says more about the neighbours than about the sidecar.

Prints one JSON line: events, seconds and events/s for each (median of REPEATS), the ingest
time as a ratio of the decode time (the share of the sidecar's work that is not the wire
format's), and the ingest's peak anonymous memory above what the process held before it
(``RssAnon`` of ``/proc/self/status``, sampled every 10 ms: the ring mapping and SQLite's
file pages are not the sidecar's own; null where /proc is missing).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from flowagent.protocol.ring import RingReader  # noqa: E402
from flowagent.protocol.wire import Decoder  # noqa: E402
from flowagent.sidecar.__main__ import tune_gc  # noqa: E402

import wire  # noqa: E402
from replay import drain, fresh_run  # noqa: E402


def _rss_anon_kib() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak ``RssAnon`` above the level at start, sampled by a thread while in the block."""

    def __init__(self) -> None:
        self.base = _rss_anon_kib()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            now = _rss_anon_kib()
            if now is not None and self.peak is not None:
                self.peak = max(self.peak, now)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float | None:
        if self.base is None or self.peak is None:
            return None
        return (self.peak - self.base) / 1024


def replay_once(rings: list[str]) -> tuple[int, float]:
    with fresh_run(rings) as run:
        with PeakMemory() as mem:
            t0 = time.process_time()
            events = drain(run.ingestor())
            seconds = time.process_time() - t0
        replay_once.peak_mib = max(getattr(replay_once, "peak_mib", 0.0), mem.mib or 0.0)
        return events, seconds


def decode_once(rings: list[str]) -> tuple[int, float]:
    payloads = []
    for path in rings:
        reader = RingReader(path)
        reader.tail = 0
        payloads += [p for _s, p, _e in reader.read(1 << 62)]
        reader.close()
    dec = Decoder()
    t0 = time.process_time()
    events = sum(len(dec.decode_columns(p)["calls"]) for p in payloads)
    return events, time.process_time() - t0


def main() -> None:
    data_dir = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    rings = wire.ring_files(data_dir)
    if not rings:
        print(json.dumps({"error": f"no ring files under {data_dir}"}))
        return
    tune_gc()  # as the sidecar process does
    out: dict = {"rings": len(rings)}
    for name, fn in (("ingest", replay_once), ("decode_only", decode_once)):
        runs = [fn(rings) for _ in range(repeats)]
        secs = statistics.median(s for _e, s in runs)
        events = runs[0][0]
        out[name] = {"events": events, "seconds": secs,
                     "events_per_s": events / secs if secs else None,
                     "all_seconds": [s for _e, s in runs]}
    out["ingest_over_decode"] = out["ingest"]["seconds"] / out["decode_only"]["seconds"]
    out["ingest_peak_anon_mib"] = getattr(replay_once, "peak_mib", None)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
