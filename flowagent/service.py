"""Service names: what a run is called when requests cross from one program to another.

Every run carries one (``--service NAME``, config key ``service``); without it the name is
the program's own: a script's stem (``shop/api.py`` → ``api``, a directory with
``__main__.py`` → the directory), a ``-m`` module (``shop.api``), or a program's name
(``gunicorn``), where a Python interpreter started as a program gives way to the script or
module it runs. A run stored before services existed is named from its stored command line
the same way.

Readers that put several services side by side prefix each function with its service
(:func:`qualified`), so two programs' ``__main__:main`` stay two nodes.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # `flowagent run` names its service before the sidecar starts: no
if TYPE_CHECKING:      # typing, no re on that path
    from typing import Any

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
MAX_LEN = 64


def _clean(name: str) -> str:
    """Every run of characters other than ASCII letters, digits, ``.``, ``_`` and ``-``
    becomes one ``-``; leading and trailing ``-`` and ``.`` go."""
    out: list[str] = []
    for ch in name:
        if ch in _SAFE:
            out.append(ch)
        elif not out or out[-1] != "\0":
            out.append("\0")  # a run of unsafe characters, as one
    name = "".join(out).replace("\0", "-").strip("-.") or "program"
    return name[:MAX_LEN]


def _script(path: str) -> str:
    path = path.rstrip(os.sep) or path
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem == "__main__":
        stem = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return stem


def default_service(kind: str, name: str, args: tuple[str, ...] | list[str] = ()) -> str:
    """The service name of a target: ``kind`` is ``script``, ``module`` or ``program``."""
    if kind == "module":
        return _clean(name)
    if kind == "script":
        return _clean(_script(name))
    base = os.path.basename(name)
    if base.startswith("python") and not base[6:].strip("0123456789.") and args:
        # `-- python app.py` / `-- python -m pkg`: the program is the script or module.
        rest = list(args)
        while rest and rest[0].startswith("-") and rest[0] != "-m":
            rest.pop(0)
        if len(rest) >= 2 and rest[0] == "-m":
            return _clean(rest[1])
        if rest and not rest[0].startswith("-"):
            return _clean(_script(rest[0]))
    return _clean(base)


def service_of(run: dict[str, Any]) -> str:
    """The service a stored run belongs to: its ``service`` column, else its command line."""
    stored = run.get("service")
    if isinstance(stored, str) and stored:
        return stored
    import json  # not at import: `flowagent run` names its service before the sidecar starts

    try:
        argv = json.loads(run.get("argv") or "[]")
    except (TypeError, ValueError):
        argv = []
    if not argv or not isinstance(argv[0], str):
        return "program"
    head, rest = argv[0], [a for a in argv[1:] if isinstance(a, str)]
    if head.startswith("-m "):
        return default_service("module", head[3:])
    if head.startswith("-- "):
        return default_service("program", head[3:], rest)
    return default_service("script", head)


def qualified(service: str, function_name: str) -> str:
    """``svc:module:qualname``: a function as one of several services shows it."""
    return f"{service}:{function_name}"
