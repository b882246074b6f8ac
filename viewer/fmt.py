"""Formatting of durations, times, counts and shapes for the pages (registered as Jinja filters).

Every function returns plain text; escaping is left to Jinja's autoescape, so a function name or
a shape holding ``<script>`` is shown as text wherever these are used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from flask import Flask

MARKS = {"success": "✓", "error": "✗", "partial": "~", "incomplete": "…"}


def duration(ns: int | float | None) -> str:
    """``1234`` → ``"1.2 µs"``; picks the unit that keeps 2–4 significant digits."""
    if ns is None:
        return "–"
    ns = float(ns)
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def timestamp(ns: int | None) -> str:
    """Unix nanoseconds → ``"2026-11-22 15:00:56.123 UTC"``."""
    if not ns:
        return "–"
    dt = datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d} UTC"


def number(n: int | float | None) -> str:
    """``100000`` → ``"100 000"`` (a thin space groups digits without suggesting a locale)."""
    if n is None:
        return "–"
    if isinstance(n, float) and not n.is_integer():
        return f"{n:,.2f}".replace(",", "\u202f")
    return f"{int(n):,}".replace(",", "\u202f")


def size(n: int | float | None) -> str:
    """``37273600`` → ``"35.5 MiB"``."""
    if n is None:
        return "–"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # unreachable; keeps type checkers content


def percent(part: int | float, whole: int | float) -> str:
    return "–" if not whole else f"{100.0 * part / whole:.1f} %"


def input_shape(shape: Any) -> str:
    """``{"sku": "str", "qty": "int"}`` → ``"(sku: str, qty: int)"``; None (shapes not
    sampled for this call) → ``"(…)"``."""
    if isinstance(shape, Mapping):
        return "(" + ", ".join(f"{k}: {v}" for k, v in shape.items()) + ")"
    return "(…)" if shape is None else str(shape)


def argv(text: str | None) -> str:
    """The run's command line, stored as a JSON list."""
    try:
        items = json.loads(text or "[]")
    except ValueError:
        return str(text)
    return " ".join(str(a) for a in items) if isinstance(items, list) else str(items)


def mark(result: str | None) -> str:
    return MARKS.get(result or "", "○")


def init_app(app: Flask) -> None:
    app.add_template_filter(duration, "duration")
    app.add_template_filter(timestamp, "timestamp")
    app.add_template_filter(number, "number")
    app.add_template_filter(input_shape, "input_shape")
    app.add_template_filter(mark, "mark")
    app.add_template_filter(argv, "argv")
    app.add_template_filter(size, "bytes")
    app.add_template_global(percent, "percent")
