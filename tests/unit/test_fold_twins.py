"""The C tree pass (``flowagent.sidecar._fold``) and its Python twin
(``SessionTree._fold_tree_py``) fold the same records into the same state: random sessions
with errors caught and not, placeholders, calls ending after a later-started sibling or after
their caller, callers with more distinct children than ``MAX_KIDS`` and memos cleared on the
way, fed in batches of random sizes; then the sessions of a real recorded ring."""

from __future__ import annotations

import random
from typing import Any

import pytest

from flowagent.protocol.wire import CALL_FIELDS, ERROR, INCOMPLETE, PARTIAL, SUCCESS
from flowagent.sidecar import sessiontree as st
from flowagent.sidecar.sessiontree import Namer, SessionTree

fold_c = st._c_fold()
count_c = st._c_count()
pytestmark = pytest.mark.skipif(fold_c is None, reason="the C extension was not built")


def test_the_tree_pass_in_use_is_the_c_one_when_built():
    assert st._fold_c is not None and st.FOLD_CORE == "c"


def _session(rng: random.Random, ses: int, t: int) -> list[tuple[int, ...]]:
    """One session's records in the order its calls ended (children first)."""
    out: list[tuple[int, ...]] = []
    next_id = [ses]

    def call(par: int, pfid: int, depth: int, t0: int) -> tuple[int, int]:
        cid = next_id[0]
        next_id[0] += 1
        fid = rng.choice((1, 2, 3, 4, 5, 6)) if depth else rng.choice((7, 8))
        n_kids = 0 if depth > 4 or next_id[0] - ses > 2000 else rng.choice((0, 0, 1, 2, 3, 5))
        if depth == 2 and rng.random() < 0.05:
            n_kids = st.MAX_KIDS + rng.randrange(300)  # folds its oldest kids
        now = t0 + rng.randrange(3)
        child_err = False
        for _ in range(n_kids):
            if depth > 1 and n_kids > 50:
                kid = next_id[0]
                next_id[0] += 1
                kfid = 10 + rng.randrange(2000)  # many distinct leaves
                dur = rng.randrange(50)
                kres = ERROR if rng.random() < 0.002 else SUCCESS
                out.append((kid, cid, ses, kfid, fid, 0, 0, kres, 9 if kres else 0, now,
                            now + dur, 1, 0))
                child_err |= kres == ERROR
                now += dur + 1
            else:
                now, err = call(cid, fid, depth + 1, now)
                child_err |= err
        r = rng.random()
        res = (ERROR if r < 0.15 or (child_err and r < 0.5) else PARTIAL if r < 0.2
               else INCOMPLETE if r < 0.22 else SUCCESS)
        end = now + rng.randrange(100)
        out.append((cid, par, ses, fid, pfid, rng.choice((0, 3, 4)), rng.choice((0, 5)),
                    res, rng.choice((9, 11)) if res == ERROR else 0,
                    t0 if rng.random() < 0.97 else t0 + 10_000, end, 1, rng.randrange(5)))
        return end + 1, res == ERROR

    call(0, 0, 0, t)
    if rng.random() < 0.2 and len(out) > 3:  # a call ending after a later-started sibling
        i = rng.randrange(len(out) - 2)
        out[i], out[i + 1] = out[i + 1], out[i]
    if rng.random() < 0.1:  # a late call: made by work the session started, after its root
        out.append((next_id[0], ses, ses, 3, out[-1][3], 0, 0, SUCCESS, 0, t + 5, t + 6, 1, 0))
    return out


def _state(tree: SessionTree) -> Any:
    return (tree.sigs, tree.errors, tree.paths, tree.digest, tree.root, tree.end,
            {k: list(v) for k, v in tree._open.items()})


def _fold_both(records: list[tuple[int, ...]], ses: int, cut: list[int],
               monkeypatch: pytest.MonkeyPatch) -> None:
    names = {f: f"m:f{f}" if f != 8 else "<request>:root" for f in range(3000)}
    trees = []
    for impl in (None, fold_c):
        monkeypatch.setattr(st, "_fold_c", impl)
        monkeypatch.setattr(st, "_count_c", impl and count_c)
        monkeypatch.setattr(st, "_MEMO_CAP", 64)  # memos cleared while folding
        tree = SessionTree(ses, Namer(names.get), 7, records[0][9] if records else 0, 1)
        lo = 0
        for hi in [*cut, len(records)]:
            tree.feed(records[lo:hi])
            lo = hi
        snapshot = _state(tree)
        tree.finish()
        trees.append((snapshot, _state(tree), tree.contribution(lambda f: f, lambda s: s)))
    assert trees[0] == trees[1]


@pytest.mark.parametrize("seed", range(40))
def test_c_and_python_fold_random_sessions_alike(seed, monkeypatch):
    rng = random.Random(seed)
    ses = 1000 * (seed + 1)
    records = _session(rng, ses, 10_000)
    cut = sorted(rng.sample(range(1, len(records)), min(len(records) - 1, rng.randrange(4))))
    _fold_both(records, ses, cut, monkeypatch)


def test_more_distinct_subtrees_in_a_batch_than_the_c_memo_holds(monkeypatch):
    """The C pass keeps a memo per batch in front of the namer's (leaf, inner digest, paths
    prefixed, unions), emptied when half of its 1024 slots are taken: 1,200 distinct
    two-leaf subtrees, each node with one to four children (and again, the memo's hits),
    fold as the Python pass folds them."""
    ses, cid, t, records = 1, 2, 0, []
    for _rep in range(2):
        for i in range(1200):
            node, kids = cid, 1 + i % 4
            cid += 1 + kids
            for k in range(kids):
                records.append((node + 1 + k, node, ses, 100 + (i + k) % 1300, 1 + i % 7, 0, 0,
                                SUCCESS, 0, t + k, t + k + 1, 1, 0))
            records.append((node, ses, ses, 1 + i % 7, 7, 0, 0, SUCCESS, 0, t, t + 9, 1, 0))
            t += 10
    records.append((ses, 0, ses, 7, 0, 0, 0, SUCCESS, 0, 0, t, 1, 0))
    _fold_both(records, ses, [len(records) // 3], monkeypatch)


def test_an_open_call_state_held_elsewhere_is_left_as_it_was():
    """The C pass reuses the state lists of the calls it closes, but only those nothing
    else holds: a state, or a state's list of children, still referenced outside the tree
    keeps what it held."""
    assert fold_c is not None
    for hold in ("state", "kids"):
        tree = SessionTree(1, Namer(str), 7, 0, 1)
        tree.feed([(3, 2, 1, 3, 2, 0, 0, SUCCESS, 0, 1, 2, 1, 0),
                   (4, 2, 1, 4, 2, 0, 0, SUCCESS, 0, 3, 4, 1, 0)])
        state = tree._open[2]
        held = state if hold == "state" else state[st.O_KIDS]
        before = list(held) if hold == "kids" else [
            list(v) if isinstance(v, list) else v for v in held]
        del state
        for _ in range(3):  # closes 2, then opens and closes more states (reusing any)
            tree.feed([(2, 1, 1, 2, 7, 0, 0, SUCCESS, 0, 1, 5, 1, 0)])
            tree.feed([(5, 1, 1, 5, 7, 0, 0, SUCCESS, 0, 6, 7, 1, 0)])
            tree.feed([(9, 8, 1, 3, 2, 0, 0, SUCCESS, 0, 8, 9, 1, 0),
                       (8, 1, 1, 2, 7, 0, 0, SUCCESS, 0, 8, 10, 1, 0)])
        after = list(held) if hold == "kids" else [
            list(v) if isinstance(v, list) else v for v in held]
        assert after == before, hold


def test_c_and_python_fold_the_placeholders_of_an_open_session_alike(monkeypatch):
    rng = random.Random(7)
    records = [r for r in _session(rng, 5, 100) if r[0] != 5]  # the root never ended
    for impl in (None, fold_c):
        monkeypatch.setattr(st, "_fold_c", impl)
        monkeypatch.setattr(st, "_count_c", impl and count_c)
        tree = SessionTree(5, Namer(str), 7, 100, 1)
        tree.feed(records)
        tree.feed(tree.placeholders())
        tree.finish()
        if impl is None:
            expected = _state(tree), tree.contribution(int, int)
        else:
            assert (_state(tree), tree.contribution(int, int)) == expected


def test_values_out_of_int64_are_folded_by_python_alike(monkeypatch):
    """The C passes decline a batch holding an int they cannot hold in C (changing nothing)
    and the Python ones fold it."""
    records = _session(random.Random(3), 10, 2**64)  # starts and ends past int64
    assert fold_c is not None and count_c is not None
    assert count_c({}, *([[2**64]] * 8), INCOMPLETE) is False
    tree = SessionTree(10, Namer(str), 7, 2**64, 1)
    cols = list(zip(*records))
    assert fold_c(tree, *[list(cols[k]) for k in (0, 1, 3, 4, 5, 6, 7, 8, 9)],
                  [r[10] - r[9] for r in records]) is None
    assert tree._open == {} and tree.sigs == {}
    _fold_both(records, 10, [len(records) // 2], monkeypatch)


def test_callee_time_summed_past_int64_is_exact(monkeypatch):
    """Two calls of one signature, each with ~2**62 ns in its callee: their sum leaves
    int64 inside the C pass and goes on as a Python int."""
    big = 2**62
    records = [(3, 2, 1, 5, 4, 0, 0, 0, 0, 1, 1 + big, 1, 0),
               (2, 1, 1, 4, 7, 0, 0, 0, 0, 0, big + 10, 1, 0),
               (6, 5, 1, 5, 4, 0, 0, 0, 0, big + 21, 2 * big + 21, 1, 0),
               (5, 1, 1, 4, 7, 0, 0, 0, 0, big + 20, 2 * big + 30, 1, 0),
               (1, 0, 1, 7, 0, 0, 0, 0, 0, 0, 2 * big + 40, 1, 0)]  # its duration: Python's
    tree = SessionTree(1, Namer(str), 7, 0, 1)
    cols = list(zip(*records[:4]))
    minus = fold_c(tree, *[list(cols[k]) for k in (0, 1, 3, 4, 5, 6, 7, 8, 9)],
                   [r[10] - r[9] for r in records[:4]])
    assert minus == {(4, 7, 0, 0, 0, 0): 2 * big}
    _fold_both(records, 1, [4], monkeypatch)


def _fed_a_bad_state(monkeypatch, first: tuple[int, ...]) -> SessionTree:
    """A tree whose open call 2 is not a call's state, fed ``first`` and then call 2's
    end: the C pass raises TypeError."""
    monkeypatch.setattr(st, "_fold_c", fold_c)
    tree = SessionTree(1, Namer(str))
    tree._open[2] = "not a list"
    with pytest.raises(TypeError):
        tree.feed([first, (2, 1, 1, 1, 1, 0, 0, 0, 0, 0, 3, 1, 0)])
    return tree


def test_bad_state_is_an_error_not_a_crash(monkeypatch):
    _fed_a_bad_state(monkeypatch, (3, 2, 1, 1, 1, 0, 0, 0, 0, 1, 2, 1, 0))
    assert len(CALL_FIELDS) == 13


def test_calls_left_open_join_the_tree_in_the_order_they_opened(monkeypatch):
    """The C pass keeps the calls a batch opens in a table of its own and hands the ones
    still open to the tree's dict at the end: the dict holds what the Python pass's does,
    in the same order (placeholders of calls started at the same time come out in it),
    with calls opened in one batch and closed in a later one, a call closed and opened
    again in one batch (a reused id), and one left open by an earlier batch reopened."""
    def rec(cid, par, fid, t0, t1):
        return (cid, par, 1, fid, 2, 0, 0, SUCCESS, 0, t0, t1, 1, 0)

    batches = [
        [rec(51, 50, 3, 5, 6), rec(41, 40, 4, 5, 6), rec(61, 60, 5, 5, 6),
         rec(71, 70, 3, 5, 6), rec(70, 1, 2, 5, 7), rec(72, 70, 4, 5, 6)],
        [rec(42, 40, 3, 5, 6), rec(40, 1, 2, 5, 8), rec(43, 40, 5, 5, 6),
         rec(81, 80, 3, 5, 6), rec(52, 50, 4, 5, 6)],
        [rec(50, 1, 2, 5, 9), rec(44, 40, 3, 5, 6), rec(91, 90, 3, 5, 6)],
    ]
    seen = []
    for impl in (None, fold_c):
        monkeypatch.setattr(st, "_fold_c", impl)
        monkeypatch.setattr(st, "_count_c", impl and count_c)
        tree = SessionTree(1, Namer(str), 7, 5, 1)
        states = []
        for batch in batches:
            tree.feed(batch)
            states.append(([(k, list(v)) for k, v in tree._open.items()],
                           tree.placeholders()))
        seen.append(states)
    assert [k for k, _ in seen[1][0][0]] == [50, 40, 60, 1, 70]
    assert [k for k, _ in seen[1][-1][0]] == [60, 1, 70, 40, 80, 90]
    assert seen[0] == seen[1]


def test_calls_opened_before_an_error_stay_open_in_the_tree(monkeypatch):
    """A batch the C pass stops on an error leaves the calls it had opened in the tree's
    dict, as the Python pass leaves them."""
    tree = _fed_a_bad_state(monkeypatch, (6, 5, 1, 1, 1, 0, 0, 0, 0, 1, 2, 1, 0))
    assert list(tree._open) == [5] and tree._open[5][st.O_FID] == 1
