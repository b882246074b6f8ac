"""Batch wire format: what one process sends to the sidecar in one ring frame.

A batch is a msgpack map, compressed with zstd. Strings (function names, shapes, exception
types, thread names) are interned: each is sent once per process in
``defs``/``strings``/``threads`` and then referred to by id.

Call records travel as one binary block, ``calls = {"n": count, "data": bytes}``: the 13
fields (:data:`CALL_FIELDS`) column by column, the call id and start time as deltas to the
previous record and the end time as a duration, every value a little-endian int64, and then
the bytes regrouped by significance (all lowest bytes first, then all second bytes, ...).
Most values are small, so the upper byte planes are long runs of zeros and zstd brings a
call down to a few bytes. Producing the block takes slicing and one pass in C (the
recorder's accelerator writes it straight from its packed buffer); reading it back is a few
array operations, with no per-value type checks: the block is integers by construction.

This module is imported in the host process; it uses only msgpack and zstandard, both
imported lazily by :class:`Encoder` so a disabled or idle agent pays nothing for them, and
:class:`PlainEncoder` writes the same format with neither.
"""

from __future__ import annotations

import os
import sys
from array import array
from itertools import accumulate, chain
from operator import add, sub

from .env import is_true

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Sequence

VERSION = 2

# Result codes on the wire. INCOMPLETE never travels: the sidecar assigns it to calls that
# were still open when their process died.
SUCCESS, ERROR, PARTIAL, INCOMPLETE = 0, 1, 2, 3
RESULT_NAMES = ("success", "error", "partial", "incomplete")

# One call record, in the order the recorder packs it and Decoder returns it.
CALL_FIELDS = ("cid", "par", "ses", "fid", "pfid", "ins", "out", "res", "exc", "t0", "t1", "thr",
               "cpu")
N_FIELDS = len(CALL_FIELDS)
_CID, _T0, _T1, THR = (CALL_FIELDS.index(f) for f in ("cid", "t0", "t1", "thr"))
_WIDTH = 8  # bytes per value
_BIG_ENDIAN = sys.byteorder == "big"


def pack_records(records: Iterable[Sequence[int]]) -> array[int]:
    """13-tuples as one flat int64 array, the layout the recorder buffers calls in."""
    return array("q", chain.from_iterable(records))


def columns(flat: array[int]) -> bytes:
    """The call block of a flat int64 array of records (pure twin of the accelerator's)."""
    n = len(flat) // N_FIELDS
    cols = [flat[f::N_FIELDS] for f in range(N_FIELDS)]
    cols[_T1] = array("q", map(sub, cols[_T1], cols[_T0]))
    for f in (_CID, _T0):
        col = cols[f]
        if n > 1:
            cols[f] = col[:1] + array("q", map(sub, col[1:], col[:-1]))
    block = array("q")
    for col in cols:
        block.extend(col)
    if _BIG_ENDIAN:
        block.byteswap()
    raw = block.tobytes()
    return b"".join(raw[b::_WIDTH] for b in range(_WIDTH))


class CallColumns:
    """Call records column by column: ``cols`` holds one list per field of
    :data:`CALL_FIELDS` (the values :meth:`Decoder.decode` puts in its tuples), ``dur`` each
    call's duration (``t1 - t0``, what the wire carries in place of ``t1``). The sidecar folds
    whole columns with C-level builtins (``zip``, ``Counter``, ``max``); building a tuple per
    call only to take it apart again would cost more than the rest of the decoding.
    ``bounds``, where the decoder computed it on the way: (shortest duration, latest end).
    ``raw``, where the C decoder made the columns: the int64 block they were made from
    (``_fold.decode_columns``), which the C fold reads instead of converting the lists' ints
    back; a slice has none, and the lists must not be changed while it is kept. The C
    decoder leaves the lists of the end times, parents, ins, outs and CPU times to be made
    from it when first read (``cols``, :meth:`col`): the sidecar's fold of a session's calls
    reads those in the block (:meth:`made`)."""

    __slots__ = ("_cols", "dur", "bounds", "raw")

    def __init__(self, cols: list[list[int]], dur: list[int],
                 bounds: tuple[int, int] | None = None, raw: bytes | None = None) -> None:
        self._cols = cols
        self.dur = dur
        self.bounds = bounds
        self.raw = raw

    @property
    def cols(self) -> list[list[int]]:
        cols = self._cols
        for field, col in enumerate(cols):
            if col is None:  # left out by the C decoder (see decode_columns)
                self.col(field)
        return cols

    def col(self, field: int) -> list[int]:
        """The column of field ``field`` (an index of :data:`CALL_FIELDS`)."""
        col = self._cols[field]
        if col is None:
            col = self._cols[field] = _raw_column(
                self.raw, len(self.dur), _RAW_END if field == _T1 else field)
        return col

    def made(self, field: int) -> list[int] | None:
        """The column of field ``field``, or None while it is left in ``raw`` (unmade)."""
        return self._cols[field]

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[int]]) -> "CallColumns":
        cols = [list(col) for col in zip(*rows)] or [[] for _ in CALL_FIELDS]
        return cls(cols, list(map(sub, cols[_T1], cols[_T0])))

    def __len__(self) -> int:
        return len(self.dur)

    def rows(self) -> list[tuple[int, ...]]:
        """The records as 13-tuples in :data:`CALL_FIELDS` order."""
        return list(zip(*self.cols))

    def row(self, i: int) -> tuple[int, ...]:
        return tuple(col[i] for col in self.cols)

    def slice(self, lo: int, hi: int) -> "CallColumns":
        return CallColumns([col[lo:hi] for col in self.cols], self.dur[lo:hi])


_RAW_END = N_FIELDS  # the end times' column of a raw block (see CallColumns)


def _raw_column(raw: bytes | None, n: int, field: int) -> list[int]:
    if raw is None:  # never: only the C decoder leaves a column out, with its block
        raise ValueError("a column left out without the block to make it from")
    from ..sidecar import _fold  # type: ignore[attr-defined]  # it made the block

    return _fold.column(raw, n, field)  # type: ignore[no-any-return]


def _columns(n: int, data: bytes) -> CallColumns:
    total = n * N_FIELDS
    raw = bytearray(total * _WIDTH)
    for b in range(_WIDTH):
        raw[b::_WIDTH] = data[b * total:(b + 1) * total]
    block = array("q")
    block.frombytes(raw)
    if _BIG_ENDIAN:
        block.byteswap()
    cols = [block[f * n:(f + 1) * n].tolist() for f in range(N_FIELDS)]
    cols[_CID] = list(accumulate(cols[_CID]))
    cols[_T0] = t0 = list(accumulate(cols[_T0]))
    dur = cols[_T1]
    cols[_T1] = list(map(add, t0, dur))
    return CallColumns(cols, dur)


def _records(n: int, data: bytes) -> list[tuple[int, ...]]:
    return _columns(n, data).rows()


class Encoder:
    """Turns a batch dict into compressed bytes. One per process (not shared across forks)."""

    def __init__(self, level: int = 3) -> None:
        import msgpack
        import zstandard

        # A name that is not valid UTF-8 (a file name or thread name carrying a lone surrogate
        # from undecodable bytes) is sent escaped ("\\udcff"): failing on it would lose the
        # whole batch, and every later one that carries the same definition.
        self._packer = msgpack.Packer(use_bin_type=True, unicode_errors="backslashreplace")
        self._zc = zstandard.ZstdCompressor(level=level)

    def encode(self, batch: dict[str, Any], calls: Sequence[Sequence[int]]) -> bytes:
        """``batch`` with ``calls`` (13-tuples in :data:`CALL_FIELDS` order)."""
        return self.encode_columns(batch, len(calls), columns(pack_records(calls)))

    def encode_columns(self, batch: dict[str, Any], n: int, data: bytes) -> bytes:
        """``batch`` with ``n`` calls already in their wire block (see :func:`columns`).

        The block goes to zstd from its own buffer, after the rest of the batch packed with
        an empty block last: msgpack would copy the block (megabytes) holding the GIL,
        while zstd releases it."""
        batch.pop("calls", None)
        batch["calls"] = {"n": n, "data": b""}
        head = self._packer.pack(batch)
        if not head.endswith(b"\xc4\x00"):  # not where it should be: pack it the plain way
            batch["calls"]["data"] = data
            return self._zc.compress(self._packer.pack(batch))
        head = head[:-2] + _bin_header(len(data))
        c = self._zc.compressobj(size=len(head) + len(data))
        return c.compress(head) + c.compress(data) + c.flush()


class PlainEncoder:
    """:class:`Encoder`'s stand-in that imports nothing: the same batch as standard msgpack
    (packed here, the types a batch holds) in a standard zstd frame of stored blocks, which
    the sidecar's :class:`Decoder` reads as any other frame.

    The agent sends with it until the program has reached a point where importing msgpack
    and zstandard is safe (see ``Transport.prepare_encoder`` in ``flowagent.agent``): a
    process that records nothing never loads them, and the batches of a process ending
    before such a point (its last one at exit) are sent without an import at exit, which would change
    how the program ends (CPython forgets that an unhandled KeyboardInterrupt must end the
    process by SIGINT when a string is ``eval``-ed after it, as the named tuples of both
    packages' imports do, from any thread). Not compressed: it carries what a short
    program records, and it is not the agent's steady state."""

    def encode_columns(self, batch: dict[str, Any], n: int, data: bytes) -> bytes:
        """As :meth:`Encoder.encode_columns`."""
        batch.pop("calls", None)
        batch["calls"] = {"n": n, "data": b""}
        out = bytearray()
        _pack(batch, out)
        if out.endswith(b"\xc4\x00"):  # the empty block, last: the real one in its place
            del out[-2:]
            out += _bin_header(len(data))
            out += data
        else:  # (a dict keeps its order: never reached)
            batch["calls"]["data"] = data
            out.clear()
            _pack(batch, out)
        return _stored_zstd_frame(bytes(out))


def _pack(value: Any, out: bytearray) -> None:
    """msgpack of ``value`` appended to ``out``, as ``msgpack.Packer(use_bin_type=True,
    unicode_errors="backslashreplace")`` packs it (bytes for bytes)."""
    t = type(value)
    if t is int:
        _pack_int(value, out)
    elif t is str:
        raw = value.encode("utf-8", "backslashreplace")
        size = len(raw)
        if size < 32:
            out.append(0xA0 | size)
        elif size < 1 << 8:
            out += bytes((0xD9, size))
        elif size < 1 << 16:
            out += b"\xda" + size.to_bytes(2, "big")
        else:
            out += b"\xdb" + size.to_bytes(4, "big")
        out += raw
    elif t is list or t is tuple:
        _container_header(len(value), 0x90, b"\xdc", b"\xdd", out)
        for item in value:
            _pack(item, out)
    elif t is dict:
        _container_header(len(value), 0x80, b"\xde", b"\xdf", out)
        for key, item in value.items():
            _pack(key, out)
            _pack(item, out)
    elif value is None:
        out.append(0xC0)
    elif value is True or value is False:
        out.append(0xC3 if value else 0xC2)
    elif t is bytes or t is bytearray or t is memoryview:
        raw = bytes(value)
        out += _bin_header(len(raw))
        out += raw
    elif t is float:
        from struct import pack  # (a C module; no float travels in a batch today)

        out += b"\xcb" + pack(">d", value)
    elif isinstance(value, int):  # an int subclass (an IntEnum) travels as its value
        _pack_int(int(value), out)
    else:
        raise TypeError(f"can not serialize {t.__name__!r} object")


def _container_header(size: int, fix: int, tag16: bytes, tag32: bytes, out: bytearray) -> None:
    """An array's or a map's header: its fix form below 16 items, else a 16- or 32-bit size."""
    if size < 16:
        out.append(fix | size)
    elif size < 1 << 16:
        out += tag16 + size.to_bytes(2, "big")
    else:
        out += tag32 + size.to_bytes(4, "big")


def _pack_int(value: int, out: bytearray) -> None:
    if value >= 0:
        if value < 0x80:
            out.append(value)
        elif value < 1 << 8:
            out += bytes((0xCC, value))
        elif value < 1 << 16:
            out += b"\xcd" + value.to_bytes(2, "big")
        elif value < 1 << 32:
            out += b"\xce" + value.to_bytes(4, "big")
        else:
            out += b"\xcf" + value.to_bytes(8, "big")  # OverflowError past 64 bits
    elif value >= -32:
        out.append(value & 0xFF)
    elif value >= -(1 << 7):
        out += b"\xd0" + value.to_bytes(1, "big", signed=True)
    elif value >= -(1 << 15):
        out += b"\xd1" + value.to_bytes(2, "big", signed=True)
    elif value >= -(1 << 31):
        out += b"\xd2" + value.to_bytes(4, "big", signed=True)
    else:
        out += b"\xd3" + value.to_bytes(8, "big", signed=True)


# zstd's frame format (RFC 8878): magic number; a header saying "single segment, 8-byte
# content size, no checksum, no dictionary"; then blocks of at most 128 KiB, each with a
# 3-byte header (last-block bit, block type 0 = stored as is, size).
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_SINGLE_SEGMENT_8_BYTE_SIZE = b"\xe0"
_ZSTD_BLOCK = 128 * 1024


def _stored_zstd_frame(raw: bytes) -> bytes:
    """``raw`` as a zstd frame that any zstd decoder reads back, uncompressed."""
    parts = [_ZSTD_MAGIC, _ZSTD_SINGLE_SEGMENT_8_BYTE_SIZE, len(raw).to_bytes(8, "little")]
    view = memoryview(raw)
    start = 0
    while True:
        block = view[start:start + _ZSTD_BLOCK]
        start += len(block)
        last = start >= len(raw)
        parts.append(((len(block) << 3) | last).to_bytes(3, "little"))
        parts.append(block.tobytes())
        if last:
            return b"".join(parts)


def _bin_header(size: int) -> bytes:
    """msgpack's header of a ``bin`` of ``size`` bytes."""
    if size < 1 << 8:
        return bytes((0xC4, size))
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def fold_extension() -> Any | None:
    """The sidecar's C extension ``_fold`` (decoding, the tree pass, signature statistics),
    or None where it is missing or ``FLOWAGENT_PURE`` asks for the Python twins, as the
    recorder reads it."""
    if is_true(os.environ.get("FLOWAGENT_PURE")):
        return None
    try:
        from ..sidecar import _fold  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _fold


def _c_columns() -> Callable[..., Any] | None:
    """The C twin of :func:`_columns`, or None (see :func:`fold_extension`)."""
    ext = fold_extension()
    return None if ext is None else ext.decode_columns


class Decoder:
    """Sidecar side of :class:`Encoder`. Raises ``ValueError`` on anything malformed."""

    def __init__(self) -> None:
        import zstandard

        self._zd = zstandard.ZstdDecompressor()
        self._c_columns = _c_columns()
        ext = fold_extension()
        self._entries_ok = None if ext is None else ext.entries_ok

    def _call_columns(self, n: int, data: bytes) -> CallColumns:
        if self._c_columns is not None:
            got = self._c_columns(n, data, False)  # the end times made when read
            if got is not None:  # None: a sum out of int64, decoded with Python's ints
                return CallColumns(*got)
        return _columns(n, data)

    def decode(self, payload: bytes) -> dict[str, Any]:
        """The batch, with ``calls`` as a list of 13-tuples in :data:`CALL_FIELDS` order."""
        batch = self.decode_columns(payload)
        batch["calls"] = batch["calls"].rows()
        return batch

    def decode_columns(self, payload: bytes) -> dict[str, Any]:
        """The batch, with ``calls`` as :class:`CallColumns` (same checks as :meth:`decode`)."""
        import msgpack

        try:
            raw = self._zd.decompress(payload, max_output_size=256 * 1024 * 1024)
            batch = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        except Exception as exc:  # zstd and msgpack raise several unrelated types
            raise ValueError(f"undecodable batch: {exc}") from None
        if not isinstance(batch, dict) or batch.get("v") != VERSION:
            raise ValueError("batch has a wrong or missing version")
        calls = batch.get("calls")
        if not isinstance(calls, dict) or type(calls.get("n")) is not int \
                or not isinstance(calls.get("data"), bytes):
            raise ValueError("batch has malformed call columns")
        n, data = calls["n"], calls["data"]
        if n < 0 or len(data) != n * N_FIELDS * _WIDTH:
            raise ValueError("batch call columns do not hold the announced number of calls")
        _check_entries(batch, self._entries_ok)
        batch["calls"] = self._call_columns(n, data)
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
    # W3C trace context (flowagent.agent.tracecontext): session, kind, trace id, span id, call
    "traces": ((int, int, str, str, int),),
    # a session started under a call of another process (flowagent.agent.lineage):
    # session, parent session id, parent call id, parent function, parent pid
    "links": ((int, str, int, str, int),),
}


# The exact types a field of each kind may hold (msgpack makes no subclasses; bool is not
# an int here).
_TYPES: dict[Any, frozenset[type]] = {int: frozenset((int,)), str: frozenset((str,)),
                                      list: frozenset((list,)),
                                      (str, list): frozenset((str, list))}
_BY_LENGTH = {key: {len(layout): tuple(_TYPES[t] for t in layout) for layout in layouts}
              for key, layouts in _ENTRIES.items()}


def _check_entries(batch: dict[str, Any],
                   entries_ok: Callable[[list[Any], dict[int, Any]], bool] | None = None
                   ) -> None:
    # Column by column: a frame carries an entry per session started, and checking each
    # value in a Python loop cost more than decoding the frame. ``entries_ok``: the C twin
    # of the shape check of one key (see fold_extension); where it says no, the check
    # below names what is wrong.
    for key, by_length in _BY_LENGTH.items():
        entries = batch.get(key, [])
        if type(entries) is not list:
            raise ValueError(f"batch {key} is not a list")
        if not entries or (entries_ok is not None and entries_ok(entries, by_length)):
            continue
        if any(type(e) is not list for e in entries):
            raise ValueError(f"batch {key} has a malformed entry")
        lengths = set(map(len, entries))
        for length in lengths:
            layout = by_length.get(length)
            if layout is None:
                raise ValueError(f"batch {key} has a malformed entry")
            rows = entries if len(lengths) == 1 else [e for e in entries if len(e) == length]
            for column, allowed in zip(zip(*rows), layout):
                if not allowed.issuperset(map(type, column)):
                    raise ValueError(f"batch {key} has a malformed entry")
    anchor = batch.get("anchor")
    if anchor is not None and (not isinstance(anchor, list) or len(anchor) != 2
                               or any(type(a) is not int for a in anchor)):
        raise ValueError("batch anchor is malformed")
    for key in ("pk", "pid", "seq", "agent_errors", "sampled_out"):
        if key in batch and type(batch[key]) is not int:
            raise ValueError(f"batch {key} is not an integer")
