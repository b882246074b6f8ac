"""Mergeable log-linear histograms of durations (nanoseconds).

Buckets: exact below 8 ns, then 8 sub-buckets per power of two, so every bucket's width is at
most 1/8 of its lower bound (quantiles within ~6% of the true value). A histogram is a plain
``{bucket: count}`` dict; merging is adding counts, so merged quantiles (across sessions,
processes and runs) are as right as quantiles of one histogram over all the data.
"""

from __future__ import annotations

from typing import Iterable, Mapping

SUB = 8
_SHIFT = 3  # log2(SUB)


def bucket(ns: int) -> int:
    if ns < SUB:
        return max(ns, 0)
    e = ns.bit_length() - 1
    return (e - _SHIFT + 1) * SUB + ((ns >> (e - _SHIFT)) & (SUB - 1))


def lower(b: int) -> int:
    """Smallest value that falls in bucket ``b``."""
    if b < SUB:
        return b
    e = b // SUB - 1 + _SHIFT
    return (SUB + b % SUB) << (e - _SHIFT)


def upper(b: int) -> int:
    """Smallest value of the next bucket."""
    return lower(b + 1)


def add(h: dict[int, int], ns: int) -> None:
    b = bucket(ns)
    h[b] = h.get(b, 0) + 1


def merge(a: Mapping[int, int], b: Mapping[int, int]) -> dict[int, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def merge_into(into: dict[int, int], b: Mapping[int, int]) -> None:
    """``merge`` in place: the running totals of a run take every session's histogram, and
    copying them each time would cost as much as the rest of the session."""
    for k, v in b.items():
        into[k] = into.get(k, 0) + v


def merge_all(hs: Iterable[Mapping[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for h in hs:
        for k, v in h.items():
            out[k] = out.get(k, 0) + v
    return out


def count(h: Mapping[int, int]) -> int:
    return sum(h.values())


def quantile(h: Mapping[int, int], q: float) -> int | None:
    """The ``q`` quantile (0..1), as the midpoint of the bucket it falls in."""
    n = count(h)
    if n == 0:
        return None
    rank = q * (n - 1)
    seen = 0
    for b in sorted(h):
        seen += h[b]
        if seen > rank:
            lo, hi = lower(b), upper(b)
            return lo if hi - lo <= 1 else (lo + hi) // 2
    b = max(h)
    return lower(b)


def summary(h: Mapping[int, int]) -> dict[str, int | None]:
    return {"p50": quantile(h, 0.5), "p95": quantile(h, 0.95), "p99": quantile(h, 0.99)}


def encode(h: Mapping[int, int]) -> str:
    """Compact text for the store: ``"b:c b:c"``."""
    return " ".join(f"{b}:{c}" for b, c in sorted(h.items()))


def decode(text: str | None) -> dict[int, int]:
    out: dict[int, int] = {}
    for part in (text or "").split():
        b, _, c = part.partition(":")
        out[int(b)] = out.get(int(b), 0) + int(c)
    return out
