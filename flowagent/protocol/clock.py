"""Call times: the agent's monotonic clock, and the wall clock readers show.

A process records call times on its monotonic clock (cheap, never steps back) and sends one
anchor with its batches: ``(wall ns, monotonic ns)`` read together at start-up. A reader turns
a monotonic time into unix nanoseconds by the anchor's offset, and back.
"""

from __future__ import annotations

from collections.abc import Sequence


def wall_offset(anchor: Sequence[int]) -> int:
    """Add to a monotonic time of the anchor's process to get unix nanoseconds."""
    return anchor[0] - anchor[1]


def to_wall(mono_ns: int, anchor: Sequence[int]) -> int:
    return mono_ns + wall_offset(anchor)


def to_mono(wall_ns: int, anchor: Sequence[int]) -> int:
    return wall_ns - wall_offset(anchor)
