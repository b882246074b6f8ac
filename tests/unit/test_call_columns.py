"""Call records column by column, as the sidecar decodes and folds them: the same values as
the record tuples, and a frame's calls split into runs of one session each."""

from __future__ import annotations

from flowagent.protocol.wire import VERSION, CallColumns, Decoder, Encoder
from flowagent.sidecar.ingest import _session_runs


def rec(i: int, ses: int, t0: int, dur: int) -> tuple[int, ...]:
    return (i, i - 1, ses, 3, 2, 4, 5, i % 3, 0, t0, t0 + dur, 77, i % 2)


def test_columns_hold_the_records_and_their_durations():
    calls = [rec(i, 1 + i // 7, 10**15 + i * 5000, 1000 - 3 * i) for i in range(1, 500)]
    calls.reverse()  # post-order emission is not monotonic
    payload = Encoder().encode({"v": VERSION, "seq": 1}, list(calls))
    cols = Decoder().decode_columns(payload)["calls"]
    assert len(cols) == len(calls) and cols.rows() == calls
    assert cols.dur == [r[10] - r[9] for r in calls]  # negative ones too: the fold clamps
    assert cols.row(3) == calls[3]
    again = CallColumns.from_rows(calls)
    assert again.cols == cols.cols and again.dur == cols.dur
    part = cols.slice(10, 20)
    assert part.rows() == calls[10:20] and part.dur == cols.dur[10:20]


def test_no_records_make_empty_columns():
    empty = CallColumns.from_rows([])
    assert len(empty) == 0 and empty.rows() == [] and len(empty.cols) == 13


def test_a_frame_splits_into_runs_of_one_session():
    assert _session_runs([4, 4, 4]) == [(4, 0, 3)]
    # interleaved flows: each run fed on its own, in order, a session may come back
    assert _session_runs([4, 4, 5, 4, 6, 6]) == [(4, 0, 2), (5, 2, 3), (4, 3, 4), (6, 4, 6)]
