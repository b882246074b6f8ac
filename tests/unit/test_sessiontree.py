"""Session trees folded as their records stream in: the same statistics as the whole tree,
whatever the batch boundaries, in state bounded by the tree's depth."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from flowagent.protocol.wire import ERROR, INCOMPLETE, PARTIAL, SUCCESS
from flowagent.model import histogram as H
from flowagent.sidecar.sessiontree import (
    MAX_KIDS,
    Namer,
    SessionTree,
    session_contributions,
)

NAMES = {1: "app:handle", 2: "app:load", 3: "app:save", 4: "app:check", 5: "app:fail",
         6: "<request>:GET /x"}


def _same(a, b):
    def plain(c):
        return {k: sorted(v.items()) if isinstance(v, dict) else v for k, v in vars(c).items()}
    return plain(a) == plain(b)


def _calls(tree: list) -> list[tuple]:
    """Store-layout rows of a nested ``(fid, result, [children])`` tree, ids in start order,
    each child starting 10 ns after its previous sibling ended."""
    rows: list[tuple] = []
    clock = [0]

    def walk(node, parent: int, caller: int) -> None:
        fid, res, kids = node
        cid = len(rows) + 1
        rows.append(None)  # type: ignore[arg-type]
        t0 = clock[0]
        for k in kids:
            clock[0] += 10
            walk(k, cid, fid)
        clock[0] += 10
        rows[cid - 1] = (cid, parent, fid, caller, 0, 0, res, 9 if res == ERROR else 0, t0,
                         clock[0], 7, 0)

    walk(tree, 0, 0)
    return rows


def _feed_in_batches(rows: list[tuple], cuts: list[int]) -> SessionTree:
    """The sidecar's way: records in end order (children first), split at ``cuts``."""
    wire = sorted(((c[0], c[1], 1, *c[2:12]) for c in rows), key=lambda r: (r[10], -r[0]))
    tree = SessionTree(1, Namer(lambda f: NAMES.get(f, "?")), wire[-1][3])
    start = 0
    for cut in sorted(set(cuts)) + [len(wire)]:
        tree.feed(wire[start:cut])
        start = cut
    tree.finish()
    return tree


def _identity(x: int) -> int:
    return x


trees = st.recursive(
    st.tuples(st.integers(2, 5), st.sampled_from([SUCCESS, ERROR]), st.just([])),
    lambda kids: st.tuples(st.integers(2, 5), st.sampled_from([SUCCESS, ERROR, PARTIAL]),
                           st.lists(kids, max_size=4)),
    max_leaves=30)


@settings(max_examples=80, deadline=None)
@given(trees, st.lists(st.integers(0, 60), max_size=6))
def test_batch_boundaries_do_not_change_what_a_session_contributes(kids, cuts):
    rows = _calls((1, SUCCESS, [kids]))
    whole = session_contributions(rows, 1, NAMES)
    split = _feed_in_batches(rows, cuts).contribution(_identity, _identity)
    assert _same(whole, split)


def test_statistics_of_a_known_tree():
    # handle -> load -> check ; handle -> save (fails) ; handle -> fail (fails, handled by
    # handle: handle returns normally = partial)
    rows = _calls((1, PARTIAL, [(2, SUCCESS, [(4, SUCCESS, [])]), (3, ERROR, []),
                                (5, ERROR, [])]))
    c = session_contributions(rows, 1, NAMES)
    by_id = {r[0]: r for r in rows}
    handle = by_id[1]
    assert c.nodes[1][:3] == [1, 0, 1] and c.nodes[1][7] == 1   # calls, errors, partials, roots
    children = sum(by_id[i][9] - by_id[i][8] for i in (2, 4, 5))
    assert c.nodes[1][4] == (handle[9] - handle[8]) - children   # self time
    assert c.nodes[3][1] == 1 and c.nodes[5][1] == 1
    assert c.edges[(1, 2, SUCCESS)][0] == 1 and c.edges[(2, 4, SUCCESS)][0] == 1
    assert c.edges[(1, 3, ERROR)][0] == 1
    assert sorted(json.loads(p) for p in c.paths) == [
        ["app:handle", "app:fail"], ["app:handle", "app:load", "app:check"],
        ["app:handle", "app:save"]]
    assert c.errors == {(9, 3, json.dumps(["app:handle", "app:save"]), 1): 1,
                        (9, 5, json.dumps(["app:handle", "app:fail"]), 1): 1}
    assert H.count(c.hists[1]) == 1 and c.variant and c.root_fid == 1


def test_an_error_a_request_root_turns_into_a_500_is_unhandled():
    rows = _calls((6, SUCCESS, [(2, ERROR, [(5, ERROR, [])])]))
    c = session_contributions(rows, 1, NAMES)
    # raised in fail, passed through load, answered by the framework's request root
    assert c.errors == {(9, 5, json.dumps(["<request>:GET /x", "app:load", "app:fail"]), 0): 1}


def test_flow_variants_collapse_repeats_and_tell_shapes_apart():
    loop3 = session_contributions(_calls((1, SUCCESS, [(2, SUCCESS, [])] * 3)), 1, NAMES)
    loop7 = session_contributions(_calls((1, SUCCESS, [(2, SUCCESS, [])] * 7)), 1, NAMES)
    other = session_contributions(_calls((1, SUCCESS, [(2, SUCCESS, []), (3, SUCCESS, [])])),
                                  1, NAMES)
    swapped = session_contributions(_calls((1, SUCCESS, [(3, SUCCESS, []), (2, SUCCESS, [])])),
                                    1, NAMES)
    assert loop3.variant == loop7.variant
    assert len({loop3.variant, other.variant, swapped.variant}) == 3


def test_a_long_session_keeps_bounded_state():
    # A root calling 200 000 times, alternating two callees that each call a leaf: no two
    # neighbours repeat, so nothing collapses; the open state must still stay small.
    namer = Namer(lambda f: NAMES.get(f, "?"))
    tree = SessionTree(1, namer, 1)
    cid, t = 2, 0
    for _ in range(100):
        batch = []
        for i in range(1000):
            mid, leaf = cid, cid + 1
            cid += 2
            batch.append((leaf, mid, 1, 4, 2 + i % 2, 0, 0, SUCCESS, 0, t + 1, t + 2, 7, 0))
            batch.append((mid, 1, 1, 2 + i % 2, 1, 0, 0, SUCCESS, 0, t, t + 3, 7, 0))
            t += 4
        tree.feed(batch)
        assert len(tree._open) == 1 and len(tree._open[1][5]) <= MAX_KIDS
    tree.feed([(1, 0, 1, 1, 0, 0, 0, SUCCESS, 0, 0, t, 7, 0)])
    tree.finish()
    c = tree.contribution(_identity, _identity)
    assert tree.calls() == 200_001 and c.nodes[4][0] == 100_000 and c.variant
    assert sorted(json.loads(p) for p in c.paths) == [
        ["app:handle", "app:load", "app:check"], ["app:handle", "app:save", "app:check"]]


def test_a_session_cut_short_gets_placeholders_for_its_open_calls():
    # handle (5) -> load (6) -> check (7) ended; load and handle never did.
    tree = SessionTree(5, Namer(lambda f: NAMES.get(f, "?")), 1, t0=100, thread=7)
    tree.feed([(7, 6, 5, 4, 2, 0, 0, SUCCESS, 0, 120, 130, 7, 0)])
    ph = tree.placeholders()
    assert [(r[0], r[1], r[3], r[7]) for r in ph] == [(6, 5, 2, INCOMPLETE),
                                                     (5, 0, 1, INCOMPLETE)]
    tree.feed(ph)
    tree.finish()
    c = tree.contribution(_identity, _identity)
    assert tree.calls() == 1 and list(c.nodes) == [4]  # placeholders are not calls
    assert list(c.paths) == [json.dumps(["app:handle", "app:load", "app:check"])]


records = st.lists(st.tuples(
    st.integers(1, 4),                                     # fid
    st.sampled_from([SUCCESS, ERROR, PARTIAL, INCOMPLETE]),
    st.integers(-5, 40) | st.integers(1 << 16, 1 << 40),    # duration: clock steps, long calls
    st.sampled_from([0, 0, 3, 1 << 33])), max_size=60)      # cpu


@settings(max_examples=80, deadline=None)
@given(records, st.lists(st.integers(0, 60), max_size=4))
def test_signature_statistics_match_a_call_by_call_count(recs, cuts):
    # Leaves of one root: each call's self time is its duration; durations repeat, go
    # negative (counted as 0) and grow past any table; placeholders count in no statistic.
    rows = [(i + 2, 1, 1, fid, 1, 0, 0, res, 9 if res == ERROR else 0, 10 * i, 10 * i + d, 7,
             cpu) for i, (fid, res, d, cpu) in enumerate(recs)]
    tree = SessionTree(1, Namer(lambda f: NAMES.get(f, "?")), 1)
    start = 0
    for cut in sorted(set(cuts)) + [len(rows)]:
        tree.feed(rows[start:cut])
        start = cut
    expected: dict[tuple, list] = {}
    for r in rows:
        if r[7] == INCOMPLETE:
            continue
        d = max(r[10] - r[9], 0)
        acc = expected.setdefault(r[3:9], [0, 0, 0, d, d, 0, {}])
        acc[0] += 1
        acc[1] += d
        acc[2] += d
        acc[3], acc[4] = min(acc[3], d), max(acc[4], d)
        acc[5] += r[12]
        H.add(acc[6], d)
    assert tree.sigs == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 10**7), min_size=1, max_size=3 * H.EXACT),
       st.lists(st.integers(0, 200), max_size=5))
def test_duration_distributions_match_one_pass_over_the_durations(durations, cuts):
    # handle calls load once per duration: exact while few distinct, bucketed past the bound,
    # the same whatever the batch boundaries
    rows, t = [], 0
    for i, d in enumerate(durations):
        rows.append((i + 2, 1, 2, 1, 0, 0, SUCCESS, 0, t, t + d, 7, 0))
        t += d + 1
    rows.insert(0, (1, 0, 1, 0, 0, 0, SUCCESS, 0, 0, t, 7, 0))
    c = _feed_in_batches(rows, cuts).contribution(_identity, _identity)
    expected: dict[int, int] = {}
    for d in durations:
        H.add(expected, d)
    assert c.hists[2] == expected
    assert H.is_exact(c.hists[2]) == (len(set(durations)) <= H.EXACT)
    assert H.quantile(c.hists[2], 1.0) == (max(durations) if H.is_exact(expected)
                                           else H.quantile(expected, 1.0))
