"""The pure twin's buffer of finished call records, kept out of every fork.

The program's threads append records; the flusher takes them, oldest first. Both sides run
Python, so each step that must not be split is one C call under the GIL:

* a record is packed into bytes (:data:`pack`) and then appended by ``S.buf.write(rec)``:
  ``mmap.write`` copies it at the mapping's position and moves the position on, so two
  threads never write the same place and the flusher never sees half a record. Nothing
  between loading ``S.buf`` and that call lets CPython switch threads;
* the flusher reads from the other mapping (:class:`Taker`), and swaps the two only when the
  one it reads is drained. It re-reads the position each time, so a record appended to a
  mapping after it was swapped out is still taken, and it empties a mapping only once it
  took everything in it.

Why mappings and not an ``array`` (which appends atomically too): ``os.fork()`` copies the
page tables of all the process's memory and write-protects it, and a backlog of records is
tens of MB when threads record faster than the flusher encodes. Each mapping here is private
anonymous memory marked ``MADV_WIPEONFORK``: a fork copies none of its page tables, the parent
takes no copy-on-write faults on it afterwards, and a child sees the mapping zeroed, still
valid, so agent code running in the child before its reset cannot crash (``MADV_DONTFORK``
would leave it unmapped). The parent's pending records are the parent's to send; the child
starts with fresh mappings (``recorder.reset_after_fork``), as the C twin does (``_speedups.c``).

A mapping starts small and grows to ``S.max_buf`` records (``mremap`` keeps the advice); one
that a burst grew is shrunk again when it is emptied, so the peak is not kept.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
from array import array

from .guard import program_exception
from ..protocol.wire import N_FIELDS

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any

REC_BYTES = N_FIELDS * 8
# Native int64s, the layout ``array("q")`` reads back.
pack = struct.Struct(f"@{N_FIELDS}q").pack
PackError = struct.error

_START = 1024      # records a new mapping holds
_SHRINK = 1 << 16  # a drained mapping larger than this many records is shrunk to _START
# MADV_WIPEONFORK (Linux 4.14+): the mmap module has no constant for it. Its value is the
# same on the architectures listed; elsewhere the mappings are copied by a fork like any
# memory (slower forks, the same records).
_WIPEONFORK: int | None = getattr(mmap, "MADV_WIPEONFORK", None)
# (os.uname().machine is platform.machine(), without platform, which every recorded
# process would load for it.)
if _WIPEONFORK is None and sys.platform.startswith("linux") and os.uname().machine in (
        "x86_64", "aarch64", "arm64", "i386", "i686", "armv7l", "armv8l", "ppc64le",
        "ppc64", "s390x", "riscv64", "loongarch64"):
    _WIPEONFORK = 18
# Growing in place needs mremap (Linux); elsewhere a mapping is made at its full size (only
# the pages written take memory).
_GROWS = sys.platform.startswith("linux")


def mapping(records: int) -> mmap.mmap:
    """Private anonymous memory for ``records`` records, wiped in a forked child."""
    m = mmap.mmap(-1, records * REC_BYTES, flags=mmap.MAP_PRIVATE)
    if _WIPEONFORK is not None:
        try:
            m.madvise(_WIPEONFORK)
        except OSError:
            pass  # (a kernel before 4.14: forks copy it, nothing else changes)
    return m


def new_buffer(max_records: int) -> mmap.mmap:
    return mapping(min(_START, max_records) if _GROWS else max_records)


def append_when_full(S: Any, rec: bytes) -> bool:
    """``S.buf.write(rec)`` found the buffer full: grow it to ``S.max_buf`` records and
    append. False when it is at that limit: the caller counts the record dropped.

    ``S.buf`` is loaded anew at each call: the flusher may swap it in between, and only a
    growth to the limit is harmless to whichever mapping is current then. Another thread
    that found it full at the same time may have grown it already: the append is tried
    again whatever its size, and only a buffer full at the limit drops."""
    limit = S.max_buf * REC_BYTES
    try:
        if _GROWS and len(S.buf) < limit:
            S.buf.resize(limit)  # (mremap: only the pages written take memory)
        S.buf.write(rec)
    except Exception as exc:
        # Full after all (ValueError), or no memory to grow (OSError from mremap: raised
        # here, not by code this frame called). Anything else is the program's: a signal
        # handler that ran here.
        if program_exception(exc) and not (isinstance(exc, OSError)
                                           and exc.__traceback__ is not None
                                           and exc.__traceback__.tb_next is None):
            raise
        return False
    return True


class Taker:
    """The flusher's side: the mapping swapped out of ``S.buf`` and how far it was read."""

    def __init__(self, max_records: int) -> None:
        self.front = new_buffer(max_records)
        self.read = 0  # bytes of ``front`` taken

    def take(self, S: Any, limit: int) -> array[int]:
        """The oldest ``limit`` records (0: all), as one flat int64 array; fewer only when
        nothing else is buffered (the flusher reads a short batch as "drained")."""
        out: array[int] = array("q")
        want = limit * REC_BYTES if limit > 0 else -1
        self._read_front(out, want)
        if (want < 0 or len(out) * 8 < want) and self.read >= self.front.tell():
            # Drained: it becomes the one appended to, and what was appended is read next.
            drained = self.front
            drained.seek(0)
            self.read = 0
            if _GROWS and len(drained) > _SHRINK * REC_BYTES:
                try:
                    drained.resize(_START * REC_BYTES)
                except (ValueError, OSError, BufferError, SystemError):
                    pass
            self.front, S.buf = S.buf, drained
            self._read_front(out, want if want < 0 else want - len(out) * 8)
        return out

    def _read_front(self, out: array[int], want: int) -> None:
        end = self.front.tell()
        if want >= 0:
            end = min(end, self.read + want)
        if end > self.read:
            out.frombytes(self.front[self.read:end])
            self.read = end
