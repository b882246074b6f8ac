"""The counters a run's totals are made of, one home for their names: the ingestor sums them
over the run's processes, and a run none of whose processes made a ring has them all zero
(the sidecar then never loads the ingestion machinery)."""

from __future__ import annotations

# In the order the summary line lists them.
COUNTERS = ("processes", "produced_events", "dropped_events", "dropped_batches",
            "corrupt_frames", "duplicate_frames", "agent_errors", "stored_events",
            "sampled_out", "foreign_rings", "profile_displacements", "profile_displaced_ns")


def zero_totals() -> dict[str, int]:
    """Every counter at zero: the totals of a run that recorded nothing."""
    return dict.fromkeys(COUNTERS, 0)
