"""Reads what a recorded run put on the wire: its ring files (``DATA/runs/RUN/rings``).

Used by ``run.py`` after each flowagent run, in the orchestrator process (the ring files are
plain files; nothing here touches the recorded program).
"""

from __future__ import annotations

import glob
import os
import struct
from typing import Any

from flowagent.protocol import ring as ringmod
from flowagent.protocol.ring import RingReader


def ring_files(data_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(data_dir, "runs", "*", "rings", "*.ring")))


def wire_stats(data_dir: str) -> dict[str, Any]:
    """Payload and frame bytes of every ring of the run, and the events they carried.

    Payload bytes are summed frame by frame when the ring never wrapped (head <= capacity);
    otherwise the early frames are gone and the payload is estimated from the header counters
    (head minus one 16-byte frame header and ~4 bytes of padding per batch)."""
    out = {"rings": 0, "payload_bytes": 0, "frame_bytes": 0, "batches": 0, "events": 0,
           "exact": True}
    for path in ring_files(data_dir):
        try:
            reader = RingReader(path)
        except (OSError, ValueError):
            continue
        try:
            c = reader.counters()
            out["rings"] += 1
            out["frame_bytes"] += c["head"]
            out["batches"] += c["produced_batches"]
            out["events"] += c["produced_events"]
            if c["head"] <= reader.capacity:
                reader.tail = 0
                reader._suspect = None
                out["payload_bytes"] += sum(len(p) for _s, p, _e in reader.read(1 << 62))
            else:
                out["exact"] = False
                out["payload_bytes"] += c["head"] - (ringmod.FRAME_HEADER + 4) * c[
                    "produced_batches"]
        finally:
            reader.close()
    ev = out["events"]
    out["payload_bytes_per_event"] = out["payload_bytes"] / ev if ev else None
    out["frame_bytes_per_event"] = out["frame_bytes"] / ev if ev else None
    return out


def reset_tail(path: str) -> None:
    """Make a copied ring look undrained (consumer tail 0), for a replay."""
    with open(path, "r+b") as f:
        f.seek(ringmod.OFF_TAIL)
        f.write(struct.pack("<Q", 0))
        f.seek(ringmod.OFF_CONSUMER)
        f.write(struct.pack("<Q", 0))
