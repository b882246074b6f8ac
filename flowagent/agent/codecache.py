"""A cache of instrumented bytecode, so a module is rewritten once, not at every start.

Like CPython's own ``__pycache__``, but it must never hand out wrong code:

* **Key.** An entry is found by file name and checked by content: the name carries the
  interpreter's cache tag and a *configuration key* (a hash of this cache's format, the
  instrumenter's own source files, the interpreter's bytecode magic, ``-O`` and every option
  that changes the rewrite, today ``nested``); the entry holds the bytecode magic, the same
  key and a SipHash of the module's source (what py_compile's ``checked-hash`` mode uses),
  all compared on load. A hash rather than mtime+size: an edit within the same second that
  keeps the size, a ``git checkout`` or a container layer with fixed mtimes cannot serve
  stale code, and hashing ~10 kB costs microseconds next to reading the entry.
* **Where.** ``__pycache__/mod.cpython-311.flowagent-<key>.pyc`` beside the module's normal
  ``.pyc`` (``sys.pycache_prefix`` is honoured), so it is shared by every run and data
  directory and cleaned with the other ``.pyc`` files. When that cannot be written, when
  the program runs with ``-B`` / ``PYTHONDONTWRITEBYTECODE`` (the user asked for no
  bytecode beside the sources), and for main scripts (``python script.py`` never creates a
  ``__pycache__`` either), entries go under the user's cache directory
  (``$XDG_CACHE_HOME/flowagent/codecache``, by default ``~/.cache/flowagent/codecache``),
  followed by the source's absolute directory. Never under the run's data directory: that is
  what people share to show a recording, and compiled code carries the program's literal
  constants.
* **Writes** go to a temporary file in the same directory, then ``os.replace``: a reader
  sees the old entry or the new one, never half of one. A corrupt, stale or unreadable entry
  is rebuilt and rewritten; an unwritable place is skipped. None of this is an error.
* **Function ids.** :func:`recorder.register_function` gives process-local integer ids, and
  rewritten code embeds its function's id as a constant. A cached entry holds the module's
  *function table* (qualname, line, parameters, kind; in rewrite order) and code compiled
  with *placeholder* ids ``base + i``, where ``base`` is a 62-bit number drawn from the
  source hash. Loading registers the table in this process and replaces each placeholder
  constant in ``co_consts`` (recursively, with ``code.replace``) by the real id. Before an
  entry is stored it is checked that every placeholder occurs at most once in the whole
  code tree (each only in its own function's constants): a program constant that happened
  to fall in the placeholder range would show up as a second occurrence, and such a module
  is then compiled with real ids and not cached. Cold and warm loads take the same remapping
  path, so a cache hit runs exactly the code a miss would.
"""

from __future__ import annotations

import _imp
import marshal
import os
import sys
import threading
from importlib.util import MAGIC_NUMBER, cache_from_source
from types import CodeType

from . import recorder
from .portable import mark

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any

FORMAT = 1  # bump when the entry layout or the placeholder scheme changes
_HERE = os.path.dirname(os.path.abspath(__file__))
_FINGERPRINTED = ("instrument.py", "codecache.py")  # their source decides what is cached
_SIP_KEY = int.from_bytes(b"flowagnt", "little")

# (format, config key, source hash, placeholder base, function table, code)
Entry = tuple[int, str, bytes, int, tuple["Any", ...], CodeType]

_keys: dict[bool, str] = {}
# What the cache did in this process (tests and --verbose diagnostics read it).
stats = {"hits": 0, "misses": 0, "writes": 0, "uncacheable": 0}


def _user_cache_dir() -> str | None:
    """``$XDG_CACHE_HOME/flowagent/codecache`` (default ``~/.cache/...``), or None."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):  # the XDG rule: a relative value is ignored
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return os.path.join(base, "flowagent", "codecache")


# The fallback place for entries (see "Where" above).
fallback_dir: str | None = _user_cache_dir()


def config_key(nested: bool) -> str:
    """Short hex key of everything besides the source that changes the cached code."""
    key = _keys.get(nested)
    if key is None:
        parts = [f"{FORMAT}|{nested}|{sys.flags.optimize}|{sys.implementation.cache_tag}|"
                 .encode(), MAGIC_NUMBER]
        for name in _FINGERPRINTED:
            try:
                with open(os.path.join(_HERE, name), "rb") as f:
                    parts.append(f.read())
            except OSError:  # frozen or zipped install: the version alone must do
                parts.append(name.encode())
        key = _keys[nested] = _imp.source_hash(_SIP_KEY, b"\0".join(parts)).hex()[:12]
    return key


def source_hash(source: bytes) -> bytes:
    """SipHash of a module's source (as CPython's hash-based ``.pyc`` files use)."""
    return _imp.source_hash(_SIP_KEY, source)


def locations(path: str, key: str, main: bool = False) -> list[str]:
    """Where the entry for the source ``path`` may be, in lookup (and write) order."""
    out: list[str] = []
    tag = f".flowagent-{key}.pyc"
    if not main and not sys.dont_write_bytecode:
        try:
            out.append(cache_from_source(path)[:-len(".pyc")] + tag)
        except (NotImplementedError, ValueError):  # no cache_tag: bytecode caching disabled
            pass
    if fallback_dir and sys.implementation.cache_tag:
        head, name = os.path.split(os.path.abspath(path))
        drive, head = os.path.splitdrive(head)  # C:\src -> codecache/C/src, never C:\src
        stem = name.rpartition(".")[0] or name
        out.append(os.path.join(fallback_dir, drive.rstrip(":"), head.lstrip(os.sep),
                                f"{stem}.{sys.implementation.cache_tag}{tag}"))
    return out


def instrumented_code(source: bytes, path: str, module: str, nested: bool,
                      main: bool = False) -> tuple[CodeType, int]:
    """The module's instrumented code, from the cache when a valid entry exists.

    Returns (code object, functions instrumented). Raises SyntaxError as compiling the
    source would; ``main`` marks a main script (cached only in the user's cache directory)."""
    key = config_key(nested)
    digest = source_hash(source)
    places = locations(path, key, main)
    entry: Entry | None = None
    for place in places:
        entry = _read(place, key, digest)
        if entry is not None:
            stats["hits"] += 1
            break
    else:
        stats["misses"] += 1
        entry = _build(source, path, nested, key, digest)
        if entry is None:  # a placeholder collided with a program constant: no caching
            stats["uncacheable"] += 1
            from .instrument import instrument_source

            code, count = instrument_source(source, path, module, recorder.register_function,
                                            nested)
            return mark(code), count  # type: ignore[arg-type]
        _store(places, entry, path)
    _, _, _, base, table, code = entry
    register = recorder.register_function
    fids = [register(module, qual, path, line, params, kind)
            for qual, line, params, kind in table]
    code = mark(_remap(code, base, fids))  # marked after the entry was stored: unmarshalable
    # the entry may have been built under another path (private to CPython: not in typeshed)
    _imp._fix_co_filename(code, path)  # type: ignore[attr-defined]
    return code, len(table)


def _build(source: bytes, path: str, nested: bool, key: str, digest: bytes) -> Entry | None:
    """Rewrite and compile with placeholder ids; None when a placeholder is not unique."""
    from .instrument import instrument_source  # only a miss pays for importing ast

    base = (1 << 62) | (int.from_bytes(digest, "little") & ((1 << 61) - 1))
    table: list[tuple[str, int, tuple[str, ...], str]] = []

    def placeholder(module: str, qual: str, filename: str, line: int,
                    params: tuple[str, ...], kind: str) -> int:
        table.append((qual, line, params, kind))
        return base + len(table) - 1

    code, _ = instrument_source(source, path, "", placeholder, nested)
    if not _placeholders_unique(code, base, base + len(table)):  # type: ignore[arg-type]
        return None
    return (FORMAT, key, digest, base, tuple(table), code)  # type: ignore[return-value]


def _placeholders_unique(code: CodeType, lo: int, hi: int) -> bool:
    """Each placeholder in [lo, hi) occurs at most once in the whole code tree.

    (One may be missing: a function in dead code, ``if 0:``, is compiled away.)"""
    seen: set[int] = set()
    stack = [code]
    while stack:
        co = stack.pop()
        for c in co.co_consts:
            t = type(c)
            if t is int and lo <= c < hi:
                if c in seen:
                    return False
                seen.add(c)
            elif t is CodeType:
                stack.append(c)
    return True


def _remap(code: CodeType, base: int, fids: list[int]) -> CodeType:
    """``code`` with every placeholder constant replaced by its real function id."""
    top = base + len(fids)
    consts = code.co_consts
    new: list[Any] | None = None
    for i, c in enumerate(consts):
        t = type(c)
        if t is int and base <= c < top:
            r: Any = fids[c - base]
        elif t is CodeType:
            r = _remap(c, base, fids)
            if r is c:
                continue
        else:
            continue
        if new is None:
            new = list(consts)
        new[i] = r
    return code if new is None else code.replace(co_consts=tuple(new))


def _read(place: str, key: str, digest: bytes) -> Entry | None:
    """The entry at ``place`` if it is complete and matches; None for anything else."""
    try:
        with open(place, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if data[:4] != MAGIC_NUMBER:
        return None
    try:
        entry: Entry = marshal.loads(memoryview(data)[4:])  # checked field by field below
        fmt, ekey, edigest, base, table, code = entry
    except Exception:  # truncated, corrupt or from another layout: rebuild it
        return None
    if fmt != FORMAT or ekey != key or edigest != digest or type(code) is not CodeType \
            or type(base) is not int or type(table) is not tuple:
        return None
    return entry


def _store(places: list[str], entry: Entry, source_path: str) -> None:
    """Write the entry to the first place that accepts it (atomically); skip the others."""
    try:
        data = MAGIC_NUMBER + marshal.dumps(entry)
    except ValueError:  # a constant marshal cannot write: run from memory, uncached
        return
    try:
        mode = os.stat(source_path).st_mode & 0o666 | 0o200  # like CPython: owner can rewrite
    except OSError:
        mode = 0o644
    for place in places:
        try:
            _write_atomic(place, data, mode)
        except OSError:
            continue
        stats["writes"] += 1
        return


def _write_atomic(place: str, data: bytes, mode: int) -> None:
    directory = os.path.dirname(place)
    os.makedirs(directory, exist_ok=True)
    tmp = f"{place}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with open(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, place)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
