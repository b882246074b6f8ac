"""The live settings a recording follows (pause, sample rate, module globs), and how a change
applies to them: the run's control file and a service's row in a shared store hold the same
state, changed by the same rule."""

from __future__ import annotations


TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any, Sequence


def apply_change(state: dict[str, Any], paused: bool | None = None,
                 sample_rate: float | None = None, include: Sequence[str] | None = None,
                 exclude: Sequence[str] | None = None) -> dict[str, Any]:
    """``state`` with the given settings replacing its own (``None``: keep); changed in place."""
    if paused is not None:
        state["paused"] = bool(paused)
    if sample_rate is not None:
        state["sample_rate"] = float(sample_rate)
    if include is not None:
        state["include"] = list(include)
    if exclude is not None:
        state["exclude"] = list(exclude)
    return state
