"""The viewer's bounded read questions, as the mappings its pages and JSON API hand on.

Each answers through one :class:`~flowagent.store.api.Store` method that stays fast on a run
with 100 000 sessions: counts are capped (a pager needs "more than N", not the exact figure
of a filter that matches everything), and per-call scans are limited to the sessions that can
contribute (for example, exception types only look at sessions with errors). Nothing here
writes.
"""

from __future__ import annotations

from typing import Any

from .api import RESULTS, SessionFilter, Store

ERROR = RESULTS.index("error")


def count_sessions(store: Store, run_id: str | None, *, result: str | None = None,
                   root: str | None = None, min_duration_ns: int | None = None,
                   cap: int = 10_000) -> tuple[int, bool]:
    """How many sessions match, counted up to ``cap``: ``(count, capped)``.

    The function-name search of ``Store.sessions`` is not supported here: it scans every
    call of the run, which a pager cannot afford on each page; callers page with "has more".
    """
    return store.count_matching(SessionFilter(run_id, result, root, min_duration_ns), cap)


def session_roots(store: Store, run_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """Root functions and request routes of a run's sessions, most frequent first."""
    return [r._asdict() for r in store.session_roots(run_id, limit)]


def live_totals(store: Store, run_id: str) -> dict[str, int]:
    """Totals of a run computed from its sessions, for a run still being recorded.

    The ``runs`` row only gets its totals when the run ends; while it is going, the sessions
    are the truth. ``open_sessions`` counts sessions that started but have not finished yet.
    """
    return store.session_totals(run_id)._asdict()


def exception_types(store: Store, run_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """Which exception types each function raised, over the kept session trees of a run."""
    return [r._asdict() for r in store.exception_types(run_id, limit)]


def function_sessions(store: Store, run_id: str, function_name: str,
                      limit: int = 20) -> list[dict[str, Any]]:
    """Recent kept sessions whose tree contains a call of ``function_name`` (newest first)."""
    return store.function_sessions(run_id, function_name, limit)


__all__ = ["count_sessions", "session_roots", "live_totals", "exception_types",
           "function_sessions"]
