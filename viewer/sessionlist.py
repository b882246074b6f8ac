"""The sessions list: filters from a query string, one page of rows, and how many match.

Paging is server-side (LIMIT/OFFSET over the ``sessions_run`` index), fetching one row more
than shown to know whether a next page exists; the match count is capped so that a broad
filter over 100 000 sessions costs one bounded query. A function-name search has no count at
all (it looks inside call trees), only "next page".
"""

from __future__ import annotations

from typing import Any, Mapping

from flowagent.store import queries
from flowagent.store.api import RESULTS, Store

ORDERS = {"-started": "newest first", "started": "oldest first", "duration": "slowest first",
          "calls": "most calls first"}
PAGE_SIZES = (25, 50, 100, 200)
COUNT_CAP = 1_000_000
MAX_OFFSET = 10_000_000


def _int(args: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    try:
        value = int(args.get(key, default))
    except (TypeError, ValueError):
        return default
    return min(max(value, lo), hi)


def parse_filters(args: Mapping[str, str]) -> dict[str, Any]:
    """Normalized filters; anything unknown or malformed falls back to its default."""
    result = args.get("result") or ""
    order = args.get("order") or "-started"
    try:
        min_ms = max(float(args.get("min_ms") or 0), 0.0)
    except ValueError:
        min_ms = 0.0
    if min_ms != min_ms or min_ms > 1e12:  # NaN, absurd
        min_ms = 0.0
    per_page = _int(args, "per_page", 50, 1, max(PAGE_SIZES))
    return {
        "result": result if result in RESULTS else "",
        "root": (args.get("root") or "").strip()[:200],
        "q": (args.get("q") or "").strip()[:200],
        "min_ms": min_ms,
        "order": order if order in ORDERS else "-started",
        "per_page": per_page,
        "page": _int(args, "page", 1, 1, MAX_OFFSET // per_page),
    }


def list_sessions(store: Store, run_id: str, f: dict[str, Any]) -> dict[str, Any]:
    """One page of sessions and the figures the pager shows."""
    per_page, page = f["per_page"], f["page"]
    min_ns = int(f["min_ms"] * 1e6) or None
    rows = store.sessions(run_id, result=f["result"] or None, root=f["root"] or None,
                          min_duration_ns=min_ns, search=f["q"] or None, order=f["order"],
                          limit=per_page + 1, offset=(page - 1) * per_page)
    has_more = len(rows) > per_page
    rows = rows[:per_page]
    filtered = bool(f["result"] or f["root"] or min_ns or f["q"])
    total = store.count_sessions(run_id)
    if f["q"]:
        matched, capped = None, False
    elif not filtered:
        matched, capped = total, False
    else:
        matched, capped = queries.count_sessions(store, run_id, result=f["result"] or None,
                                                 root=f["root"] or None,
                                                 min_duration_ns=min_ns, cap=COUNT_CAP)
    first = (page - 1) * per_page + 1 if rows else 0
    return {
        "run_id": run_id, "filters": f, "items": rows, "total": total, "matched": matched,
        "matched_capped": capped, "has_more": has_more, "page": page, "per_page": per_page,
        "first": first, "last": first + len(rows) - 1 if rows else 0,
        "pages": (-(-matched // per_page) if matched is not None else None),
    }
