"""Call records at rest: compressed columnar chunks instead of one SQLite row per call.

A chunk is a wire batch (:mod:`flowagent.protocol.wire`: msgpack columns, delta-coded, zstd), so
the sidecar stores each ring frame's payload *as it arrived*: no per-call row building, no
per-call INSERT, ~5 bytes a call. ``session_chunks`` says which sessions have calls in which
chunk, so reading one session decodes only its chunks and keeps the records of that session.

Two kinds of chunk, told apart by ``chunks.ids``:

* ``WIRE``: a frame as a process sent it: function, shape and exception ids are the process's
  own and times are its monotonic clock; ``processes.info`` holds the id maps and the frame
  its clock anchor. Translated on read.
* ``STORE``: rows already in store ids and unix-ns times (placeholders for calls a dead
  process left open, rows written through :meth:`SQLiteStore.add_calls`).

A store written by one wire version is read by the same version only: the schema version
check of :class:`SQLiteStore` covers the wire version too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from ..protocol.clock import wall_offset
from ..protocol.rundir import session_number as session_number  # the store's readers use C.
from ..protocol.wire import CALL_FIELDS, ERROR

TYPE_CHECKING = False  # typing is not imported at run time (the sidecar's start)
if TYPE_CHECKING:
    from typing import Any

WIRE, STORE = 0, 1

# Store layout of one call, as readers get it (the order of the former ``calls`` table).
STORE_FIELDS = ("call_id", "parent_id", "fid", "caller_fid", "in_sid", "out_sid", "result",
                "exc_sid", "t0", "t1", "thread", "cpu_ns")
# Positions read by name below (rows stay plain tuples: they are built and sorted by the
# million, and a field index costs nothing where an attribute lookup would).
_CALL_ID, _FID, _RESULT, _EXC_SID, _T0 = (
    STORE_FIELDS.index(f) for f in ("call_id", "fid", "result", "exc_sid", "t0"))
_SES = CALL_FIELDS.index("ses")  # wire layout


# An encoder and a decoder per thread, made on first use: zstandard's compressor and
# decompressor objects must never be used by two threads at once (the viewer serves requests
# in threads; a shared decompressor handed one of them garbage: "undecodable batch").
_codec = threading.local()


def encode(rows: list[tuple], anchor: tuple[int, int] = (0, 0)) -> bytes:
    """Rows in wire layout (:data:`flowagent.protocol.wire.CALL_FIELDS`) → a chunk."""
    from ..protocol.wire import VERSION, Encoder

    enc = getattr(_codec, "enc", None)
    if enc is None:
        enc = _codec.enc = Encoder()
    return enc.encode({"v": VERSION, "anchor": list(anchor)}, rows)


def decode(data: bytes) -> tuple[list[tuple], tuple[int, int]]:
    """A chunk → (rows in wire layout, clock anchor)."""
    from ..protocol.wire import Decoder

    dec = getattr(_codec, "dec", None)
    if dec is None:
        dec = _codec.dec = Decoder()
    batch = dec.decode(bytes(data))
    a = batch.get("anchor") or (0, 0)
    return batch["calls"], (int(a[0]), int(a[1]))


def summary(rows: Iterable[tuple], old_fids: str | None, old_raised: str | None
            ) -> tuple[str, str | None]:
    """A session's ``fids`` and ``raised`` columns (see :class:`SQLiteStore`) after adding
    calls in store layout to it."""
    import json

    fids = {int(f) for f in (old_fids or "").split()}
    raised: dict[tuple[int, int], int] = {
        (f, e): n for f, e, n in json.loads(old_raised)} if old_raised else {}
    for c in rows:
        fids.add(c[_FID])
        if c[_RESULT] == ERROR and c[_EXC_SID]:
            key = (c[_FID], c[_EXC_SID])
            raised[key] = raised.get(key, 0) + 1
    return (f" {' '.join(map(str, sorted(fids)))} ",
            json.dumps([[f, e, n] for (f, e), n in raised.items()]) if raised else None)


def store_rows(rows: Iterable[tuple], ses: int) -> list[tuple]:
    """Rows in store layout → a ``STORE`` chunk's rows (wire layout, session ``ses``)."""
    return [(c[0], c[1], ses, *c[2:11], c[11] if len(c) > 11 else 0) for c in rows]


class ProcessMaps:
    """A process's wire-id maps, from ``processes.info`` (kept there by the sidecar)."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.fids = {int(k): v for k, v in info.get("fids", {}).items()}
        self.sids = {int(k): v for k, v in info.get("sids", {}).items()}

    def translate(self, rows: Iterable[tuple], anchor: tuple[int, int]) -> list[tuple]:
        """Wire rows → store layout (store ids, unix-ns times)."""
        fids, sids = self.fids.get, self.sids.get
        shift = wall_offset(anchor)
        return [(cid, par, fids(fid, 0), fids(pfid, 0), sids(ins, 0), sids(out, 0), res,
                 sids(exc, 0), t0 + shift, t1 + shift, thr, cpu)
                for cid, par, _s, fid, pfid, ins, out, res, exc, t0, t1, thr, cpu in rows]


def by_session(data: bytes) -> tuple[dict[int, list[tuple]], tuple[int, int]]:
    """A chunk's rows grouped by session number, and its clock anchor."""
    rows, anchor = decode(data)
    grouped: dict[int, list[tuple]] = {}
    for r in rows:
        grouped.setdefault(r[_SES], []).append(r)
    return grouped, anchor


def session_rows(chunks: Iterable[tuple[int, dict[int, list[tuple]], tuple[int, int]]],
                 ses: int, maps: ProcessMaps) -> list[tuple]:
    """One session's calls (store layout, start order) from its chunks, each given as
    ``(ids, rows by session, anchor)`` (see :func:`by_session`)."""
    out: list[tuple] = []
    for ids, grouped, anchor in chunks:
        mine = grouped.get(ses, ())
        if ids == WIRE:
            out.extend(maps.translate(mine, anchor))
        else:
            out.extend((*r[:2], *r[3:]) for r in mine)
    out.sort(key=lambda c: (c[_T0], c[_CALL_ID]))
    return out
