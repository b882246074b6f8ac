"""Duration distributions: exact quantiles while small, interpolated bucket quantiles after,
merging associative and commutative across the exact-to-bucket hand-over."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flowagent.model import histogram as H

durations = st.integers(0, 10**10)


def build(values: list[int]) -> dict[int, int]:
    h: dict[int, int] = {}
    for v in values:
        H.add(h, v)
    return h


def true_quantile(values: list[int], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default, R type 7)."""
    s = sorted(values)
    rank = q * (len(s) - 1)
    i = int(rank)
    return s[i] + (s[min(i + 1, len(s) - 1)] - s[i]) * (rank - i)


@settings(max_examples=200, deadline=None)
@given(st.lists(durations, min_size=1, max_size=H.EXACT))
def test_small_samples_give_exact_quantiles(values):
    h = build(values)
    assert H.is_exact(h) and H.count(h) == len(values)
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        assert H.quantile(h, q) == round(true_quantile(values, q))
    assert H.quantile(h, 0.0) == min(values) and H.quantile(h, 1.0) == max(values)


def test_a_handful_of_calls_reports_what_was_measured():
    # two calls of 100 us and 300 us: no bucket edge, no invented value
    h = build([100_000, 300_000])
    assert H.summary(h) == {"p50": 200_000, "p95": 290_000, "p99": 298_000}
    assert H.summary(build([311_000])) == {"p50": 311_000, "p95": 311_000, "p99": 311_000}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(8, 10**10), min_size=H.EXACT + 1, max_size=600))
def test_large_samples_are_within_the_documented_bound(values):
    h = build(values)
    if len(set(values)) > H.EXACT:
        assert not H.is_exact(h)
    s = sorted(values)
    for q in (0.5, 0.9, 0.95, 0.99):
        rank = q * (len(s) - 1)
        lo, hi = s[int(rank)], s[min(int(rank) + 1, len(s) - 1)]
        est = H.quantile(h, q)
        # the estimate lies in the bucket of an order statistic around the rank: within
        # one bucket width (at most 1/8 of the value) of the interval between them
        assert lo * (1 - 1 / 8) <= est <= hi * (1 + 1 / 8), (q, lo, hi, est)


def test_interpolation_spreads_a_bucket_instead_of_repeating_its_edge():
    # 1000 distinct values inside one power of two: quantiles differ as the data does
    values = list(range(300_000, 330_000, 30))
    h = build(values)
    assert not H.is_exact(h)
    p50, p95, p99 = (H.quantile(h, q) for q in (0.5, 0.95, 0.99))
    assert p50 < p95 < p99
    for q, est in ((0.5, p50), (0.95, p95), (0.99, p99)):
        assert abs(est - true_quantile(values, q)) <= true_quantile(values, q) / 8


splits = st.lists(st.lists(durations, max_size=50), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(splits, st.randoms())
def test_merge_is_associative_commutative_and_equals_one_pass(parts, rnd):
    whole = build([v for p in parts for v in p])
    hs = [build(p) for p in parts]
    left = H.merge_all(hs)
    rnd.shuffle(hs)
    shuffled = H.merge_all(hs)
    right: dict[int, int] = {}
    for h in reversed(hs):  # a different grouping: ((c + b) + a)
        right = H.merge(h, right)
    assert left == shuffled == right == whole
    assert H.is_exact(whole) == (len({v for p in parts for v in p}) <= H.EXACT)
    for q in (0.5, 0.95, 0.99):
        assert H.quantile(left, q) == H.quantile(whole, q)


@settings(max_examples=100, deadline=None)
@given(st.lists(durations, max_size=200), st.lists(durations, max_size=200))
def test_hand_over_exact_plus_buckets_in_either_order(a, b):
    ha, hb = build(a), build(b)
    assert H.merge(ha, hb) == H.merge(hb, ha) == build(a + b)
    before_a, before_b = dict(ha), dict(hb)
    H.merge(ha, hb)
    assert ha == before_a and hb == before_b  # merge is pure


@settings(max_examples=100, deadline=None)
@given(st.lists(durations, max_size=200))
def test_store_text_round_trips(values):
    h = build(values)
    assert H.decode(H.encode(h)) == h
    assert H.is_exact(H.decode(H.encode(h))) == H.is_exact(h)


def test_mixed_text_from_a_store_is_read_as_buckets():
    h = H.decode("-101:2 40:1")
    assert not H.is_exact(h) and H.count(h) == 3
    assert H.decode("") == {} and H.quantile({}, 0.5) is None


def test_old_bucket_text_still_reads():
    # a store written before exact values: bucket keys only
    h = H.decode(f"{H.bucket(1000)}:3")
    assert not H.is_exact(h) and H.lower(H.bucket(1000)) <= H.quantile(h, 0.5) < H.upper(
        H.bucket(1000))
