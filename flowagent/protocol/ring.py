"""Lock-free single-producer/single-consumer ring in a file-backed shared-memory mapping.

One ring per recorded process, as a file ``<run>/rings/<pid>-<key>.ring``. The producer (the
recorded process) only ever moves ``head``; the consumer (the sidecar) only ever moves
``tail``. Both are monotonic byte counters, so ``head - tail`` is the fill level and neither
side needs a lock. Frames are length-prefixed and checksummed, so a consumer that reads a torn
or garbled frame detects it, counts it and resynchronises on the next valid one.

Layout (little endian)::

    0    magic "FLOWRING"         8    version u32, header size u32
    16   capacity u64             24   pid u32, ppid u32
    32   process key u64          40   created (unix ns) u64
    64   head u64                 72   produced batches u64
    80   produced events u64      88   dropped batches u64
    96   dropped events u64       104  closed flag u64 (clean producer exit)
    112  last sequence u64
    128  tail u64                 136  consumer pid u64
    192  control: paused u32, sample rate (parts per million) u32, generation u64
    256  process info: u32 length + UTF-8 JSON (argv, executable, ...)
    4096 data area (capacity bytes)

Frame: ``len u32 | crc32 u32 | seq u64 | payload | padding to 8``; ``crc32`` covers the
sequence number and the payload. A frame may wrap around the end of the data area.

Ordering: the producer writes the frame bytes, then publishes ``head``; the consumer reads
``head``, then the bytes. On x86-64 (total store order) that is enough; on weaker memory
models a frame read too early fails its checksum and is re-read on the next poll before it
is declared corrupt (see :meth:`RingReader.read`).
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import zlib

# The process info in the header is JSON, written with the C encoder alone: `json` loads `re`
# and `enum` (~25 M instructions) into every recorded process, which writes one such header.
from .jsonline import dumps, loads

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Iterator

try:
    # Loaded with this module, not when the first ring is made: that is on the agent's
    # flusher thread, and a program forking while a thread imports a module leaves the child
    # that module's import lock held by a thread it does not have (the child's own first
    # ring then waited for it forever).
    import resource
except ImportError:  # not on every platform
    resource = None  # type: ignore[assignment]

MAGIC = b"FLOWRING"
VERSION = 1
HEADER_SIZE = 4096
FRAME_HEADER = 16
_Q = struct.Struct("<Q")
_I = struct.Struct("<I")
_FRAME = struct.Struct("<IIQ")

OFF_CAPACITY = 16
OFF_PID = 24
OFF_KEY = 32
OFF_CREATED = 40
OFF_HEAD = 64
OFF_PRODUCED_BATCHES = 72
OFF_PRODUCED_EVENTS = 80
OFF_DROPPED_BATCHES = 88
OFF_DROPPED_EVENTS = 96
OFF_CLOSED = 104
OFF_LAST_SEQ = 112
OFF_TAIL = 128
OFF_CONSUMER = 136
OFF_PAUSED = 192
OFF_SAMPLE_PPM = 196
OFF_CONTROL_GEN = 200
OFF_INFO = 256
MAX_INFO = HEADER_SIZE - OFF_INFO - 4


_MAX_INT = 2**63 - 1
# Polls in a row with impossible head/tail before the data area is scanned: a live producer
# republishes its head with its next write, normally within one flush interval.
_SCAN_AFTER_POLLS = 3


def _align8(n: int) -> int:
    return (n + 7) & ~7


MIN_CAPACITY = 64 * 1024
# A ring takes at most this share of the address space the process has left under RLIMIT_AS:
# the rest is the program's.
_AS_SHARE = 4


def fit_limits(capacity: int) -> int:
    """The ring capacity the process's resource limits allow, at most ``capacity``; a
    negative errno when not even the smallest ring fits.

    RLIMIT_FSIZE: a file grown past it gets SIGXFSZ, which kills a process that does not
    ignore it (Python ignores it, a program may restore it): the ring file stays below it.
    RLIMIT_AS: the mapping counts against the program's address space: the ring takes a
    bounded share of what is left, so a program that fits plainly still fits."""
    if resource is None:
        return capacity
    fit = capacity
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if soft != resource.RLIM_INFINITY:
        fit = min(fit, soft - HEADER_SIZE)
        if fit < MIN_CAPACITY:
            return -errno.EFBIG
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        try:
            with open("/proc/self/statm", "rb") as f:
                used = int(f.read().split()[0]) * mmap.PAGESIZE
        except (OSError, ValueError, IndexError):
            used = 0
        fit = min(fit, (soft - used) // _AS_SHARE - HEADER_SIZE)
        if fit < MIN_CAPACITY:
            return -errno.ENOMEM
    return fit & ~(mmap.PAGESIZE - 1) if fit != capacity else capacity


def _leave_marker(fd: int, tmp: str, path: str, exc: OSError) -> None:
    """In place of a ring that could not be allocated, an empty file named for the cause
    (``<pid>-<key>.ring.ENOSPC``): the launcher reports the unrecorded process and why,
    instead of a silent gap. Empty, so it needs no free block; the sidecar reads only
    ``*.ring`` files."""
    try:
        os.ftruncate(fd, 0)  # give back what was allocated
        os.replace(tmp, f"{path}.{errno.errorcode.get(exc.errno or 0, 'EIO')}")
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


class RingWriter:
    """Producer side. Never blocks: a batch that does not fit is dropped and counted."""

    def __init__(self, path: str, capacity: int, pid: int, ppid: int, key: int, created_ns: int,
                 info: dict) -> None:
        capacity = fit_limits(_align8(max(capacity, MIN_CAPACITY)))
        tmp = f"{path}.tmp{pid}"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            # Allocate every block now: a sparse file whose pages get allocated on first
            # write would raise SIGBUS in the *program* when the disk fills up mid-run.
            # Failing here (ENOSPC, ENOMEM) only means this process is not recorded.
            try:
                if capacity < MIN_CAPACITY:
                    raise OSError(-capacity, os.strerror(-capacity))
                os.posix_fallocate(fd, 0, HEADER_SIZE + capacity)
                self._mm = mmap.mmap(fd, HEADER_SIZE + capacity)
            except OSError as exc:
                _leave_marker(fd, tmp, path, exc)
                raise
        finally:
            os.close(fd)
        mm = self._mm
        mm[0:8] = MAGIC
        struct.pack_into("<II", mm, 8, VERSION, HEADER_SIZE)
        _Q.pack_into(mm, OFF_CAPACITY, capacity)
        struct.pack_into("<II", mm, OFF_PID, pid & 0xFFFFFFFF, ppid & 0xFFFFFFFF)
        _Q.pack_into(mm, OFF_KEY, key)
        _Q.pack_into(mm, OFF_CREATED, created_ns)
        _I.pack_into(mm, OFF_SAMPLE_PPM, 1_000_000)
        blob = dumps(info, default=str).encode()[:MAX_INFO]
        _I.pack_into(mm, OFF_INFO, len(blob))
        mm[OFF_INFO + 4:OFF_INFO + 4 + len(blob)] = blob
        # Publish only a fully initialised header: the sidecar never sees a half-made ring.
        os.rename(tmp, path)
        self.path = path
        self.capacity = capacity
        self._head = 0
        self._stats = [0, 0, 0, 0]  # produced batches/events, dropped batches/events

    def write(self, seq: int, payload: bytes, n_events: int) -> bool:
        """Append one frame; False (and counted) if the ring has no room for it."""
        mm = self._mm
        cap = self.capacity
        size = FRAME_HEADER + len(payload)
        need = _align8(size)
        tail = _Q.unpack_from(mm, OFF_TAIL)[0]
        if need > cap - (self._head - tail):
            self.count_dropped(1, n_events)
            return False
        seq_bytes = _Q.pack(seq)
        crc = zlib.crc32(payload, zlib.crc32(seq_bytes))
        frame = _FRAME.pack(len(payload), crc, seq) + payload + b"\0" * (need - size)
        pos = self._head % cap
        first = min(need, cap - pos)
        base = HEADER_SIZE
        mm[base + pos:base + pos + first] = frame[:first]
        if first < need:
            mm[base:base + need - first] = frame[first:]
        self._head += need
        _Q.pack_into(mm, OFF_LAST_SEQ, seq)
        _Q.pack_into(mm, OFF_HEAD, self._head)  # publish last
        st = self._stats
        st[0] += 1
        st[1] += n_events
        _Q.pack_into(mm, OFF_PRODUCED_BATCHES, st[0])
        _Q.pack_into(mm, OFF_PRODUCED_EVENTS, st[1])
        return True

    def count_dropped(self, batches: int, events: int) -> None:
        st = self._stats
        st[2] += batches
        st[3] += events
        _Q.pack_into(self._mm, OFF_DROPPED_BATCHES, st[2])
        _Q.pack_into(self._mm, OFF_DROPPED_EVENTS, st[3])

    def init_control(self, paused: bool, sample_ppm: int) -> None:
        """The process's own starting state (from its config), until the sidecar says else."""
        _I.pack_into(self._mm, OFF_PAUSED, 1 if paused else 0)
        _I.pack_into(self._mm, OFF_SAMPLE_PPM, sample_ppm)

    def control(self) -> tuple[bool, int]:
        """(paused, sample rate in parts per million), as last written by the sidecar."""
        mm = self._mm
        return bool(_I.unpack_from(mm, OFF_PAUSED)[0]), _I.unpack_from(mm, OFF_SAMPLE_PPM)[0]

    def control_generation(self) -> int:
        """Grows with every control the sidecar writes (the module globs live in the file)."""
        return int(_Q.unpack_from(self._mm, OFF_CONTROL_GEN)[0])

    def close(self) -> None:
        """Mark a clean exit; the mapping stays valid for the sidecar's last drain."""
        try:
            _Q.pack_into(self._mm, OFF_CLOSED, 1)
            self._mm.flush()
        except (ValueError, OSError):
            pass


class RingError(ValueError):
    """A ring file that is not a flowagent ring (wrong magic, version or size)."""


class RingReader:
    """Consumer side, used by the sidecar. Tolerates garbage: counts it and resynchronises."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_SIZE + 64 * 1024:
                raise RingError(f"{path}: too small to be a ring ({size} bytes)")
            self._mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        mm = self._mm
        if mm[0:8] != MAGIC:
            raise RingError(f"{path}: wrong magic {bytes(mm[0:8])!r}")
        version, header = struct.unpack_from("<II", mm, 8)
        if version != VERSION or header != HEADER_SIZE:
            raise RingError(f"{path}: unsupported ring version {version}")
        self.capacity = _Q.unpack_from(mm, OFF_CAPACITY)[0]
        if self.capacity + HEADER_SIZE != size or self.capacity % 8:
            raise RingError(f"{path}: capacity {self.capacity} does not match file size {size}")
        self.path = path
        self.pid, self.ppid = struct.unpack_from("<II", mm, OFF_PID)
        # Header fields go into SQLite: clamp them to its integer range (garbled headers).
        self.key = _Q.unpack_from(mm, OFF_KEY)[0]
        self.created_ns = min(_Q.unpack_from(mm, OFF_CREATED)[0], _MAX_INT)
        self.tail = min(_Q.unpack_from(mm, OFF_TAIL)[0], _MAX_INT)
        self.corrupt_bytes = 0
        self.corrupt_frames = 0
        self._suspect: int | None = None  # tail at which a frame failed once (maybe torn)
        _Q.pack_into(mm, OFF_CONSUMER, os.getpid())

    def info(self) -> dict:
        """The producer's process info; its command line as the store keeps every command
        line: secret-looking option values masked (:mod:`flowagent.redact`)."""
        n = _I.unpack_from(self._mm, OFF_INFO)[0]
        try:
            info = loads(bytes(self._mm[OFF_INFO + 4:OFF_INFO + 4 + min(n, MAX_INFO)]))
        except ValueError:
            return {}
        if not isinstance(info, dict):
            return {}
        if isinstance(info.get("argv"), list):
            from ..redact import mask_argv  # the reader's side only (the sidecar)

            info["argv"] = mask_argv(info["argv"])
        return info

    def counters(self) -> dict[str, int]:
        if self._retired is not None:
            return self._retired
        mm = self._mm
        names = ("head", "produced_batches", "produced_events", "dropped_batches",
                 "dropped_events", "closed", "last_seq")
        # Clamped to SQLite's integer range: a garbled header must not crash the store.
        return {n: min(_Q.unpack_from(mm, OFF_HEAD + 8 * i)[0], _MAX_INT)
                for i, n in enumerate(names)}

    def _copy(self, pos: int, n: int) -> bytes:
        cap = self.capacity
        p = pos % cap
        first = min(n, cap - p)
        b = HEADER_SIZE
        data = self._mm[b + p:b + p + first]
        if first < n:
            data += self._mm[b:b + n - first]
        return data

    def read(self, max_bytes: int = 64 * 1024 * 1024) -> Iterator[tuple[int, bytes, int]]:
        """Yield ``(seq, payload, end_offset)`` for each valid frame after ``tail``.

        ``tail`` is *not* advanced in shared memory: the caller calls :meth:`commit` once what
        it read is safely stored, so a crash in between replays frames instead of losing them.
        """
        self.last_end = None
        if self._retired is not None:
            return
        head = _Q.unpack_from(self._mm, OFF_HEAD)[0]
        pos = self.tail
        cap = self.capacity
        if head < pos or head - pos > cap:
            # A head (or our tail) that cannot be: garbled, or torn mid-write. A live
            # producer's next write publishes its real head again, so wait for that; if the
            # counters stay impossible, recover the frames by their checksums alone.
            self.bad_heads += 1
            self._bad_polls += 1
            if self._bad_polls >= _SCAN_AFTER_POLLS and (head, pos) != self._scanned_at:
                self._scanned_at = (head, pos)
                yield from self._recover()
            return
        self._bad_polls = 0
        budget = max_bytes
        while pos + FRAME_HEADER <= head and budget > 0:
            length, crc, seq = _FRAME.unpack(self._copy(pos, FRAME_HEADER))
            need = _align8(FRAME_HEADER + length)
            ok = 0 < length <= cap - FRAME_HEADER and pos + need <= head
            if ok:
                payload = self._copy(pos + FRAME_HEADER, length)
                ok = zlib.crc32(payload, zlib.crc32(_Q.pack(seq))) == crc
            if not ok:
                if self._suspect != pos and not self._resyncing:
                    # First failure here: maybe a frame still being published. Retry next poll.
                    self._suspect = pos
                    break
                self._resyncing = True
                # Second failure at the same place: garbage. Resynchronise 8 bytes further on.
                self._suspect = None
                self.corrupt_bytes += 8
                pos += 8
                self.tail = pos
                if self.corrupt_bytes and (self.corrupt_frames == 0 or self._last_bad != pos - 8):
                    self.corrupt_frames += 1
                self._last_bad = pos
                continue
            self._suspect = None
            self._resyncing = False
            pos += need
            budget -= need
            self.last_end = pos
            if seq <= self._recovered_seq:
                continue  # already handed over by _recover() while the counters were garbled
            yield seq, payload, pos

    def _recover(self) -> Iterator[tuple[int, bytes, int]]:
        """Frames of a ring whose counters cannot be believed, found by scanning the data
        area for a plausible length and a matching checksum, in sequence order, each once.
        Positions are not committed (there is no believable one): frames still in the ring
        when the counters come right again are recognised by their sequence numbers."""
        for seq, payload in sorted(self._scan().items()):
            if seq > self._recovered_seq:
                self._recovered_seq = seq
                self.recovered_frames += 1
                yield seq, payload, self.tail

    def _scan(self) -> dict[int, bytes]:
        mm, cap, base = self._mm, self.capacity, HEADER_SIZE
        found: dict[int, bytes] = {}
        pos = 0
        while pos < cap:
            # A frame starts 8-aligned with a non-zero length: skip runs of zeros at C speed.
            window = mm[base + pos:base + min(cap, pos + 65536)]
            zeros = len(window) - len(window.lstrip(b"\0"))
            if zeros >= 8:
                pos += zeros & ~7
                continue
            length, crc, seq = _FRAME.unpack(self._copy(pos, FRAME_HEADER))
            if 0 < length <= cap - FRAME_HEADER:
                payload = self._copy(pos + FRAME_HEADER, length)
                if zlib.crc32(payload, zlib.crc32(_Q.pack(seq))) == crc:
                    found.setdefault(seq, payload)
                    pos += _align8(FRAME_HEADER + length)
                    continue
            pos += 8
        return found

    _last_bad = -1
    bad_heads = 0  # polls that found an impossible head
    _bad_polls = 0  # ... in a row
    _scanned_at: tuple[int, int] | None = None  # (head, tail) when the data area was scanned
    _recovered_seq = 0  # highest sequence number handed over by _recover()
    recovered_frames = 0  # frames found by scanning, not through the counters
    _resyncing = False  # scanning past confirmed garbage for the next valid frame
    last_end: int | None = None  # end offset of the last frame the latest read() yielded

    def commit(self, tail: int) -> None:
        """Release ring space up to ``tail`` (the end offset of the last stored frame)."""
        if tail > self.tail:
            self.tail = tail
        if self._retired is None:
            _Q.pack_into(self._mm, OFF_TAIL, self.tail)

    # -- end of a ring ---------------------------------------------------------------------
    _retired: dict[str, int] | None = None  # the last counters, once the file is removed

    @property
    def retired(self) -> bool:
        return self._retired is not None

    def producer_alive(self) -> bool:
        """Whether the process that writes this ring may still write: it has not marked a
        clean exit and its pid still exists."""
        if self._retired is not None or self.counters()["closed"]:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            pass  # exists, owned by someone else
        return True

    def drained(self) -> bool:
        """Everything the producer published has been read and released."""
        return self._retired is not None or _Q.unpack_from(self._mm, OFF_HEAD)[0] <= self.tail

    def retire_if_done(self, producer_gone: bool = False) -> bool:
        """Remove the ring file once its producer has closed it (or, with ``producer_gone``,
        once its process has ended) and everything in it is stored: a drained ring is only
        disk space (a pool with ``maxtasksperchild=1`` makes one per task). The counters stay
        readable. True when it was removed."""
        if self._retired is not None:
            return False
        closed = self.counters()["closed"]
        if not (closed or (producer_gone and not self.producer_alive())) or not self.drained():
            return False
        counters = self.counters()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError:
            return False
        self._retired = counters
        self.close()
        return True

    def set_control(self, paused: bool, sample_ppm: int) -> None:
        if self._retired is not None:
            return
        mm = self._mm
        _I.pack_into(mm, OFF_PAUSED, 1 if paused else 0)
        _I.pack_into(mm, OFF_SAMPLE_PPM, max(0, min(sample_ppm, 1_000_000)))
        _Q.pack_into(mm, OFF_CONTROL_GEN, _Q.unpack_from(mm, OFF_CONTROL_GEN)[0] + 1)

    def close(self) -> None:
        try:
            self._mm.close()
        except (ValueError, OSError):
            pass
