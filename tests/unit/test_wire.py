"""Batch encoding: columnar + delta round trip, and rejection of malformed batches."""

from __future__ import annotations

import msgpack
import pytest
import zstandard

from flowagent.protocol.wire import CALL_FIELDS, VERSION, Decoder, Encoder


def rec(i, t0):
    return (i, i - 1, 1, 3, 2, 4, 5, i % 3, 0, t0, t0 + 1000 + i, 77, 0)


def test_round_trip_preserves_records_exactly():
    calls = [rec(i, 10**15 + i * 5000) for i in range(1, 500)]
    calls.reverse()  # post-order emission is not monotonic
    payload = Encoder().encode({"v": VERSION, "seq": 1}, list(calls))
    batch = Decoder().decode(payload)
    assert batch["calls"] == calls
    assert len(CALL_FIELDS) == len(calls[0])


def test_compact_on_the_wire():
    calls = [rec(i, 10**15 + i * 5000) for i in range(1, 10001)]
    payload = Encoder().encode({"v": VERSION, "seq": 1}, calls)
    assert len(payload) / len(calls) < 8  # bytes per call after compression


@pytest.mark.parametrize("blob", [
    b"", b"garbage", zstandard.ZstdCompressor().compress(b"\x93\x01\x02"),
    zstandard.ZstdCompressor().compress(msgpack.packb({"v": 99, "calls": {}})),
    zstandard.ZstdCompressor().compress(msgpack.packb({"v": VERSION, "calls": {"cid": [1]}})),
])
def test_malformed_batches_raise_value_error(blob):
    with pytest.raises(ValueError):
        Decoder().decode(blob)
