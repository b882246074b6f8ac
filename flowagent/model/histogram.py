"""Mergeable duration distributions (nanoseconds): exact while small, log-linear buckets after.

A distribution is a plain ``{key: count}`` dict in one of two forms:

* **exact**: every distinct duration ``ns`` is kept as the key ``~ns`` (a negative number, so
  the two forms never share a key), as long as there are at most ``EXACT`` distinct values.
  Quantiles of an exact distribution are the true quantiles of the recorded durations
  (linear interpolation between the two nearest order statistics).
* **buckets**: once a distribution holds more distinct values, every value moves to its
  log-linear bucket: exact below 8 ns, then 8 sub-buckets per power of two, so a bucket is at
  most 1/8 as wide as its lower bound. A quantile is interpolated inside the bucket it falls
  in (its calls taken as spread evenly across the bucket), so it lies in the same bucket as
  the true quantile: **relative error below 1/8 (12.5%)**, and in practice far less; equal
  figures in unrelated rows no longer come from shared bucket edges.

Merging adds counts; two exact distributions stay exact while their union has at most
``EXACT`` distinct values, and otherwise both are bucketed first. Bucketing commutes with
adding, so merging is associative and commutative and a merged result is the same as the
distribution of all the data built in one go, whatever the order (tested as such).
"""

from __future__ import annotations

from typing import Iterable, Mapping

SUB = 8
_SHIFT = 3  # log2(SUB)
EXACT = 64  # distinct durations kept exactly; ~1.5 KB of text per stored distribution at most


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


def is_exact(h: Mapping[int, int]) -> bool:
    """True for an exact distribution (an empty one is exact). The two forms never mix, so the
    first key tells."""
    for k in h:
        return k < 0
    return True


def to_buckets(h: dict[int, int]) -> None:
    """Turn an exact distribution into buckets, in place (no-op on a bucketed one)."""
    if not is_exact(h) or not h:
        return
    items = list(h.items())
    h.clear()
    for k, c in items:
        b = bucket(~k)
        h[b] = h.get(b, 0) + c


def add(h: dict[int, int], ns: int, n: int = 1) -> None:
    """Count ``n`` calls of ``ns`` nanoseconds."""
    if ns < 0:
        ns = 0
    k = ~ns
    if k in h:
        h[k] += n
    elif is_exact(h) and len(h) < EXACT:
        h[k] = n
    else:
        to_buckets(h)
        b = bucket(ns)
        h[b] = h.get(b, 0) + n


def merge_into(into: dict[int, int], b: Mapping[int, int]) -> None:
    """Add ``b`` to ``into`` in place: the running totals of a run take every session's
    distribution, and copying them each time would cost as much as the rest of the session."""
    if not b:
        return
    if is_exact(into) and is_exact(b):
        new = sum(1 for k in b if k not in into)
        if len(into) + new <= EXACT:
            for k, v in b.items():
                into[k] = into.get(k, 0) + v
            return
    to_buckets(into)
    if is_exact(b):
        for k, v in b.items():
            kb = bucket(~k)
            into[kb] = into.get(kb, 0) + v
    else:
        for k, v in b.items():
            into[k] = into.get(k, 0) + v


def merge(a: Mapping[int, int], b: Mapping[int, int]) -> dict[int, int]:
    out = dict(a)
    merge_into(out, b)
    return out


def merge_all(hs: Iterable[Mapping[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for h in hs:
        merge_into(out, h)
    return out


def count(h: Mapping[int, int]) -> int:
    return sum(h.values())


def _exact_stat(items: list[tuple[int, int]], i: int) -> int:
    """The ``i``-th smallest recorded duration (0-based) of ``(ns, count)`` pairs in order."""
    seen = 0
    for ns, c in items:
        seen += c
        if seen > i:
            return ns
    return items[-1][0]


def _bucket_position(h: Mapping[int, int], keys: list[int], i: int) -> float:
    """Estimated value of the ``i``-th smallest call (0-based) of a bucketed distribution:
    a bucket's calls spread evenly over it, each at the middle of its share."""
    seen = 0
    for b in keys:
        c = h[b]
        if seen + c > i:
            lo, hi = lower(b), upper(b)
            if hi - lo <= 1:
                return float(lo)
            return lo + (hi - lo) * (i - seen + 0.5) / c
        seen += c
    return float(lower(keys[-1]))


def quantile(h: Mapping[int, int], q: float) -> int | None:
    """The ``q`` quantile (0..1) in nanoseconds: exact for an exact distribution, interpolated
    inside the bucket for a bucketed one (relative error below 1/8)."""
    n = count(h)
    if n == 0:
        return None
    rank = min(max(q, 0.0), 1.0) * (n - 1)
    i = int(rank)
    frac = rank - i
    if is_exact(h):
        items = sorted((~k, c) for k, c in h.items())
        lo_v = _exact_stat(items, i)
        if frac == 0:
            return lo_v
        return round(lo_v + (_exact_stat(items, i + 1) - lo_v) * frac)
    keys = sorted(h)
    lo = _bucket_position(h, keys, i)
    if frac == 0:
        return round(lo)
    hi = _bucket_position(h, keys, i + 1)
    return round(lo + (hi - lo) * frac)


def summary(h: Mapping[int, int]) -> dict[str, int | None]:
    return {"p50": quantile(h, 0.5), "p95": quantile(h, 0.95), "p99": quantile(h, 0.99)}


def encode(h: Mapping[int, int]) -> str:
    """Compact text for the store: ``"k:c k:c"`` (negative keys are exact values)."""
    return " ".join(f"{b}:{c}" for b, c in sorted(h.items()))


def decode(text: str | None) -> dict[int, int]:
    """The distribution ``encode`` wrote. Text that mixes both forms (never written, but a
    store is input) comes back bucketed, so the forms never mix in memory."""
    exact: dict[int, int] = {}
    buckets: dict[int, int] = {}
    for part in (text or "").split():
        b, _, c = part.partition(":")
        k = int(b)
        into = exact if k < 0 else buckets
        into[k] = into.get(k, 0) + int(c)
    if not buckets:
        if len(exact) > EXACT:
            to_buckets(exact)
        return exact
    merge_into(buckets, exact)
    return buckets
