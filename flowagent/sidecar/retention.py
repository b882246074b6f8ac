"""Which full session trees the sidecar keeps (a module of its own so the sidecar's command
line can name the defaults without importing the ingestion machinery)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Retention:
    """Which full session trees are kept (aggregates are always kept for every session).

    Every session that showed a new flow variant or a new error cluster is kept as an
    exemplar; sessions that failed are kept up to ``error_cap``; of the rest, the most recent
    ``recent`` are kept and older ones are pruned to their summary row.
    """

    recent: int = 10_000
    error_cap: int = 1_000


# sessions.tree_kept values
PRUNED, RECENT, FAILED, EXEMPLAR = 0, 1, 2, 3
