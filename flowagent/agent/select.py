"""Which modules are recorded.

With ``include`` globs, a module is recorded when its dotted name matches one of them (that is
how a user opts a library in: ``--include 'requests.*'``). Without, the default is *the user's
own code*: modules whose source file lives under one of the roots (the working directory and
the script's directory) and not inside an interpreter or environment directory (stdlib,
site-packages, a virtualenv that happens to live in the project). ``exclude`` always wins, and
flowagent itself is never recorded.
"""

from __future__ import annotations

import os
import sys
import sysconfig

_ALWAYS_EXCLUDED = ("flowagent", "flowagent.*", "flowagent_viewer", "flowagent_viewer.*",
                    "sitecustomize", "usercustomize", "_pytest", "_pytest.*", "pytest",
                    "pluggy", "pluggy.*")


def fnmatchcase(name: str, pattern: str) -> bool:
    """``fnmatch.fnmatchcase(name, pattern)``. Globs of ``*`` and ``?`` (every glob the
    defaults and a usual ``--include``/``--exclude`` hold) are matched here: ``fnmatch``
    compiles each glob into a regular expression, and loading ``re`` (with ``enum``) is
    ~25 M instructions of every recorded process's start. A glob with ``[`` (a character
    set, with fnmatch's own rules for ``!``, ranges and an unclosed ``[``) goes to
    ``fnmatch``. A test compares the two on many globs and names."""
    if "[" in pattern:
        from fnmatch import fnmatchcase as with_sets

        return with_sets(name, pattern)
    if "*" not in pattern and "?" not in pattern:
        return name == pattern
    # The usual wildcard walk: after a `*`, on a mismatch the star takes one more character
    # and matching resumes right after it (`*` and `?` match any character, dots and
    # newlines included, as fnmatch's translation does).
    n = p = 0
    star = -1
    mark = 0
    size, length = len(name), len(pattern)
    while n < size:
        c = pattern[p] if p < length else ""
        if c == "*":
            star, mark = p, n
            p += 1
        elif c and (c == "?" or c == name[n]):
            n += 1
            p += 1
        elif star >= 0:
            mark += 1
            n, p = mark, star + 1
        else:
            return False
    while p < length and pattern[p] == "*":
        p += 1
    return p == length


def _norm(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def _environment_dirs() -> list[str]:
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            dirs.add(sysconfig.get_paths()[key])
        except KeyError:
            pass
    try:
        import site

        dirs.update(site.getsitepackages())
        dirs.add(site.getusersitepackages())
    except Exception:  # site may be partially initialised in odd embeddings
        pass
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the flowagent package
    dirs.add(here)
    return sorted({_norm(d) + os.sep for d in dirs if d})


class Selector:
    """Decides once per module; callers cache the answer (per module or per code object)."""

    def __init__(self, include: tuple[str, ...], exclude: tuple[str, ...],
                 roots: tuple[str, ...]) -> None:
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.configured_exclude = self.exclude
        self.also: tuple[str, ...] = ()  # globs recorded on top of the configured choice
        self.roots = tuple(_norm(r) + os.sep for r in roots if r)
        self.env_dirs = tuple(_environment_dirs())

    def _excluded(self, name: str) -> bool:
        return any(fnmatchcase(name, g) for g in _ALWAYS_EXCLUDED + self.exclude)

    def set_live(self, include: tuple[str, ...], exclude: tuple[str, ...]) -> None:
        """Globs a live control adds (modules imported later): ``include`` recorded as well
        as what the configuration selects, ``exclude`` skipped as well."""
        self.also = include
        self.exclude = self.configured_exclude + exclude

    def wants_name(self, name: str) -> bool | None:
        """Decision from the name alone; None when the file location must decide."""
        if self._excluded(name):
            return False
        if self.also and any(fnmatchcase(name, g) for g in self.also):
            return True
        if self.include:
            return any(fnmatchcase(name, g) for g in self.include)
        top = name.partition(".")[0]
        if top in sys.stdlib_module_names or top in sys.builtin_module_names:
            return False
        return None

    def wants(self, name: str, filename: str | None) -> bool:
        if name in ("__main__", "__mp_main__") and filename:
            # The script also answers to its file's name: `--exclude drive` means drive.py.
            alias = os.path.splitext(os.path.basename(filename))[0]
            if self._excluded(alias):
                return False
            if self.include and any(fnmatchcase(alias, g) for g in self.include):
                return True
        decided = self.wants_name(name)
        if decided is not None:
            return decided
        if not filename or filename.startswith("<"):
            return False
        path = _norm(filename)
        if any(path.startswith(d) for d in self.env_dirs):
            return False
        parts = path.split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts:
            return False
        return any(path.startswith(r) for r in self.roots)
