"""Merging is pure, associative and commutative: graphs of runs (and the sessions inside a
run) combine in any order to the same result."""

from __future__ import annotations

import json

from hypothesis import given, settings, strategies as st

from flowagent.model import histogram as H
from flowagent.sidecar.aggregate import Aggregates
from flowagent.sidecar.sessiontree import session_contributions
from flowagent.model.graph import from_aggregates, merge, to_contract

NAMES = ["m:a", "m:b", "m:c", "n:d"]


@st.composite
def run_aggregates(draw, run_id=st.sampled_from(["r1", "r2", "r3", "r4"])):
    fids = draw(st.lists(st.sampled_from([1, 2, 3, 4]), min_size=1, max_size=4, unique=True))
    fns = {f: {"name": NAMES[f - 1], "module": NAMES[f - 1].split(":")[0],
               "qualname": NAMES[f - 1].split(":")[1], "kind": "function", "params": ["x"]}
           for f in fids}
    nodes = []
    for f in fids:
        calls = draw(st.integers(1, 50))
        lo = draw(st.integers(1, 10_000))
        hi = lo + draw(st.integers(0, 10_000))
        hist = {H.bucket(lo): calls - 1, H.bucket(hi): 1} if calls > 1 else {H.bucket(lo): 1}
        nodes.append({"fid": f, "calls": calls, "errors": draw(st.integers(0, calls)),
                      "partials": 0, "total_ns": lo * calls, "self_ns": lo, "min_ns": lo,
                      "max_ns": hi, "roots": draw(st.integers(0, calls)),
                      "hist": H.encode(hist)})
    edges = [{"caller_fid": a, "callee_fid": b, "result": draw(st.integers(0, 2)),
              "count": draw(st.integers(1, 9)), "total_ns": 5}
             for a in fids for b in fids if a < b and draw(st.booleans())]
    shapes = [{"fid": f, "io": io, "shape_sid": 0,
               "shape": '["int"]' if io == "in" else draw(st.sampled_from(["int", "str"])),
               "count": draw(st.integers(1, 5))} for f in fids for io in ("in", "out")]
    paths = [{"path": json.dumps(NAMES[:k]), "count": draw(st.integers(1, 5))}
             for k in draw(st.lists(st.integers(1, 4), max_size=3, unique=True))]
    return {"run_id": draw(run_id), "functions": fns, "nodes": nodes, "edges": edges,
            "shapes": shapes, "paths": paths, "total_sessions": draw(st.integers(0, 20))}


def canon(g):
    return json.dumps(to_contract(g), sort_keys=True)


@settings(max_examples=60, deadline=None)
@given(run_aggregates(), run_aggregates(), run_aggregates())
def test_merge_is_commutative_and_associative(a, b, c):
    ga, gb, gc = from_aggregates(a), from_aggregates(b), from_aggregates(c)
    assert canon(merge(ga, gb)) == canon(merge(gb, ga))
    assert canon(merge(merge(ga, gb), gc)) == canon(merge(ga, merge(gb, gc)))
    before = canon(ga)
    merge(ga, gb)
    assert canon(ga) == before  # pure: inputs unchanged


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=200), st.randoms())
def test_histogram_merge_gives_the_same_quantiles_in_any_split(values, rnd):
    whole: dict[int, int] = {}
    for v in values:
        H.add(whole, v)
    cut = rnd.randint(0, len(values))
    left: dict[int, int] = {}
    right: dict[int, int] = {}
    for v in values[:cut]:
        H.add(left, v)
    for v in values[cut:]:
        H.add(right, v)
    assert H.merge(left, right) == whole == H.merge(right, left)
    ordered = sorted(values)
    for q in (0.5, 0.95, 0.99):
        rank = q * (len(values) - 1)
        lo, hi = ordered[int(rank)], ordered[min(int(rank) + 1, len(values) - 1)]
        est = H.quantile(whole, q)
        # between the two order statistics around the rank, give or take a bucket (1/8)
        assert lo - max(lo / 8, 1) <= est <= hi + max(hi / 8, 1)


def _session(ses, kinds):
    """Call rows of a small session: root `ses` calling one child per kind."""
    rows = [(ses, 0, 1, 0, 11, 12, 0, 0, 0, 1000, 7)]
    for i, k in enumerate(kinds):
        rows.append((ses + 1 + i, ses, 2 + k, 1, 11, 12, k, 13 if k == 1 else 0,
                     10 * i, 10 * i + 5, 7))
    return rows


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2), max_size=4), min_size=1, max_size=8), st.randoms())
def test_sessions_add_up_the_same_in_any_order(session_kinds, rnd):
    names = {1: "m:root", 2: "m:ok", 3: "m:bad", 4: "m:handled"}
    contribs = [session_contributions(_session(100 * (i + 1), k), 100 * (i + 1), names)
                for i, k in enumerate(session_kinds)]

    def total(order):
        agg = Aggregates()
        for i in order:
            agg.add(contribs[i], f"s{i}")
        return (agg.nodes, agg.edges, {k: v[0] for k, v in agg.shapes.items()}, agg.paths,
                {k: v[:4] for k, v in agg.variants.items()},
                {k: v[:3] for k, v in agg.clusters.items()})

    order = list(range(len(contribs)))
    shuffled = order[:]
    rnd.shuffle(shuffled)
    assert total(order) == total(shuffled)


def test_damaged_parent_links_never_loop():
    # 5 -> 6 -> 5 is a cycle, 7 is its own parent: the sidecar must terminate on such data.
    rows = [(5, 6, 1, 1, 0, 0, 1, 9, 0, 10, 1), (6, 5, 2, 1, 0, 0, 0, 0, 1, 9, 1),
            (7, 7, 3, 3, 0, 0, 1, 9, 2, 3, 1)]
    c = session_contributions(rows, 5, {1: "a", 2: "b", 3: "c"})
    assert c.nodes[1][0] == 1 and c.variant
