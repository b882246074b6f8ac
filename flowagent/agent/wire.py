"""Batch wire format: what one process sends to the sidecar in one ring frame.

A batch is a msgpack map, compressed with zstd. Call records travel *columnar*: one list per
field, with the call id and start time delta-encoded and the end time sent as a duration, so
a batch of similar calls is mostly runs of small integers that zstd squeezes to a few bytes
per call. Strings (function names, shapes, exception types, thread names) are interned: each
is sent once per process in ``defs``/``shapes``/``threads`` and then referred to by id.

This module is imported in the host process; it uses only msgpack and zstandard, both
imported lazily by :class:`Encoder` so a disabled or idle agent pays nothing for them.
"""

from __future__ import annotations

from typing import Any

VERSION = 1

# Result codes on the wire. INCOMPLETE never travels: the sidecar assigns it to calls that
# were still open when their process died.
SUCCESS, ERROR, PARTIAL, INCOMPLETE = 0, 1, 2, 3
RESULT_NAMES = ("success", "error", "partial", "incomplete")

# One call record as the recorder appends it (a plain tuple: the cheapest thing to build).
CALL_FIELDS = ("cid", "par", "ses", "fid", "pfid", "ins", "out", "res", "exc", "t0", "t1", "thr",
               "cpu")
N_FIELDS = len(CALL_FIELDS)
# Fields delta-encoded against the previous record in the batch.
_DELTA = ("cid", "t0")


def _columns(records: list[tuple]) -> dict[str, list[int]]:
    cols = dict(zip(CALL_FIELDS, (list(c) for c in zip(*records)))) if records else {
        f: [] for f in CALL_FIELDS
    }
    t0 = cols["t0"]
    # Duration instead of end time: small numbers, and t1 >= t0 always.
    cols["t1"] = [b - a for a, b in zip(t0, cols["t1"])]
    for name in _DELTA:
        col = cols[name]
        if col:
            cols[name] = [col[0]] + [b - a for a, b in zip(col, col[1:])]
    return cols


def _records(cols: dict[str, list[int]]) -> list[tuple]:
    for name in _DELTA:
        col = cols[name]
        acc = 0
        out = []
        for d in col:
            acc += d
            out.append(acc)
        cols[name] = out
    cols["t1"] = [a + d for a, d in zip(cols["t0"], cols["t1"])]
    return list(zip(*(cols[f] for f in CALL_FIELDS)))


class Encoder:
    """Turns a batch dict into compressed bytes. One per process (not shared across forks)."""

    def __init__(self, level: int = 3) -> None:
        import msgpack
        import zstandard

        self._packer = msgpack.Packer(use_bin_type=True)
        self._zc = zstandard.ZstdCompressor(level=level)

    def encode(self, batch: dict[str, Any], calls: list[tuple]) -> bytes:
        batch["calls"] = _columns(calls)
        return self._zc.compress(self._packer.pack(batch))


class Decoder:
    """Sidecar side of :class:`Encoder`. Raises ``ValueError`` on anything malformed."""

    def __init__(self) -> None:
        import zstandard

        self._zd = zstandard.ZstdDecompressor()

    def decode(self, payload: bytes) -> dict[str, Any]:
        import msgpack

        try:
            raw = self._zd.decompress(payload, max_output_size=256 * 1024 * 1024)
            batch = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        except Exception as exc:  # zstd and msgpack raise several unrelated types
            raise ValueError(f"undecodable batch: {exc}") from None
        if not isinstance(batch, dict) or batch.get("v") != VERSION:
            raise ValueError("batch has a wrong or missing version")
        cols = batch.get("calls")
        if not isinstance(cols, dict) or any(not isinstance(cols.get(f), list) for f in CALL_FIELDS):
            raise ValueError("batch has malformed call columns")
        lengths = {len(cols[f]) for f in CALL_FIELDS}
        if len(lengths) != 1:
            raise ValueError("batch call columns differ in length")
        if any(type(x) is not int for f in CALL_FIELDS for x in cols[f]):
            raise ValueError("batch call columns hold something other than integers")
        _check_entries(batch)
        batch["calls"] = _records(cols)
        return batch


# Shape of every other batch entry: (key, number of fields, per-field type checks). A frame
# whose checksum is right but whose content is not what a producer writes must be refused
# here, before the sidecar applies any of it.
_ENTRIES: dict[str, tuple[tuple[type | tuple[type, ...], ...], ...]] = {
    "defs": ((int, str, str, str, int, list, str),),
    "strings": ((int, (str, list)),),
    "starts": ((int, int, int, int), (int, int, int, int, str)),
    "names": ((int, str),),
    "threads": ((int, str),),
}


def _check_entries(batch: dict[str, Any]) -> None:
    for key, layouts in _ENTRIES.items():
        entries = batch.get(key, [])
        if not isinstance(entries, list):
            raise ValueError(f"batch {key} is not a list")
        for entry in entries:
            if not isinstance(entry, list) or not any(
                    len(entry) == len(layout)
                    and all(isinstance(v, t) and not isinstance(v, bool) or t is int and
                            type(v) is int for v, t in zip(entry, layout))
                    for layout in layouts):
                raise ValueError(f"batch {key} has a malformed entry")
    anchor = batch.get("anchor")
    if anchor is not None and (not isinstance(anchor, list) or len(anchor) != 2
                               or any(type(a) is not int for a in anchor)):
        raise ValueError("batch anchor is malformed")
    for key in ("pk", "pid", "seq", "agent_errors", "sampled_out"):
        if key in batch and type(batch[key]) is not int:
            raise ValueError(f"batch {key} is not an integer")
