"""flowagent's configuration: one frozen :class:`Config`, built in layers by :func:`load_config`.

Order (later wins; every layer replaces a whole value, lists included, nothing is merged):

1. defaults (below);
2. the config file: walking up from the working directory to the filesystem root, the first
   directory holding ``flowagent.toml`` (the whole file is the table) or a ``pyproject.toml``
   with a ``[tool.flowagent]`` table (a ``pyproject.toml`` without it is skipped; when a
   directory has both, ``flowagent.toml`` wins). Keys may be spelled ``data_dir`` or
   ``data-dir``;
3. the ``FLOWAGENT_*`` environment variables listed in :data:`ENV_KEYS` (any other
   ``FLOWAGENT_*`` name is internal to the agent and ignored here). Lists are comma-separated
   (an empty value means an empty list); booleans are 1/0, true/false, yes/no, on/off; an empty
   value of any other variable counts as not set;
4. the command line (``cli`` mapping, ``None`` = not given). ``--include``/``--exclude``
   replace the file's and environment's lists, as users expect from ``--include``.

Keys (TOML key / environment variable / default):

- ``include`` / FLOWAGENT_INCLUDE / ``[]``: module globs to record (``fnmatch`` over dotted
  names, e.g. ``shop``, ``shop.*``); empty means the user's own code.
- ``exclude`` / FLOWAGENT_EXCLUDE / ``[]``: module globs never recorded, even if included.
- ``data_dir`` / FLOWAGENT_DATA_DIR / ``.flowagent``: where runs are stored; a relative path is
  taken from the config file's directory (file) or the working directory (environment, CLI).
- ``store`` / FLOWAGENT_STORE / ``""``: the store runs are written to and read from: empty =
  the SQLite file in the data directory; a path or ``sqlite:///PATH``; ``postgresql://...``.
- ``backend`` / FLOWAGENT_BACKEND / ``auto``: auto, wrap, profile or monitor.
- ``enabled`` / FLOWAGENT_ENABLED / ``true``: production switch; false = agent fully off.
- ``nested`` / FLOWAGENT_NESTED / ``true``: also instrument functions defined in functions.
- ``verbose`` / FLOWAGENT_VERBOSE / ``false``: debug lines (backend choice, config sources).
- ``ring_size`` / FLOWAGENT_RING_SIZE / ``8MiB``: bytes per process ring, an integer or a
  binary-unit size (``512KiB``, ``4M``), 64 KiB to 1 GiB.
- ``flush_interval_ms`` / FLOWAGENT_FLUSH_INTERVAL_MS / ``50``: flush period, 1 to 10000 ms.
- ``sample_rate`` / FLOWAGENT_SAMPLE_RATE / ``1.0``: fraction of sessions recorded, 0 < x <= 1.
- ``hooks`` / FLOWAGENT_HOOKS / ``[]``: ``package.module:function`` callables run in the sidecar.
- ``retention_sessions`` / FLOWAGENT_RETENTION_SESSIONS / ``10000``: full session trees kept
  per run (0 or more); aggregates are always kept.
- ``cpu_time`` / FLOWAGENT_CPU_TIME / ``false``: also measure each call's CPU time.
- ``shape_every_call`` / FLOWAGENT_SHAPE_EVERY_CALL / ``false``: describe every call's shapes
  instead of the budgeted sample (first calls of each function, then one in 16 or 256).
- ``max_data_size`` / FLOWAGENT_MAX_DATA_SIZE / ``2GiB``: how much the data directory may hold
  (database pages in use and run files); after each run the oldest ended runs are pruned
  until it fits, and the summary says so. ``0`` = no limit; otherwise at least 1 MiB.
- ``otlp_endpoint`` / FLOWAGENT_OTLP_ENDPOINT / ``""``: an OTLP/HTTP receiver
  (``http://host:4318``) the sidecar sends each finished session to as OpenTelemetry spans;
  empty means none.
- ``service`` / FLOWAGENT_SERVICE / ``""``: the service name the run is stored under (letters,
  digits, ``.``, ``_``, ``-``); empty means the program's name (script stem, ``-m`` module,
  or program name).

Any mistake raises :class:`~flowagent.errors.ConfigError` naming the key, where it came from
(file path, variable or option) and what to do. This module runs inside the recorded program,
so it imports the standard library only, and ``tomllib``/``difflib`` only when needed.
"""

from __future__ import annotations

import os

from flowagent.errors import ConfigError
from flowagent.protocol.env import FALSE_WORDS, TRUE_WORDS
from flowagent.record import NamedTuple  # typing's, for type checkers; no typing at run time

TYPE_CHECKING = False
if TYPE_CHECKING:
    # Not at run time: every `flowagent run` reads the config before it starts the sidecar
    # (re loads only for a value that needs it: a size string, a service name).
    from collections.abc import Mapping
    from pathlib import Path
    from typing import Any

__all__ = [
    "Config", "KNOWN_KEYS", "ENV_KEYS", "BACKENDS", "load_config", "find_config_file",
    "to_child_env", "validate_glob", "describe_keys",
]

BACKENDS = ("auto", "wrap", "profile", "monitor")
KiB, MiB, GiB = 1024, 1024**2, 1024**3
RING_MIN, RING_MAX = 64 * KiB, GiB


class Config(NamedTuple):
    """The effective configuration of one run (see the module docstring for every key).

    A named tuple, not a dataclass: ``flowagent run`` reads it before it starts the sidecar,
    and ``dataclasses`` (which loads ``inspect``, ``ast``, ``dis`` and ``tokenize``) was the
    largest import on that path (see benchmarks/README.md, Start-up)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    data_dir: str = ".flowagent"
    store: str = ""
    backend: str = "auto"
    enabled: bool = True
    nested: bool = True
    verbose: bool = False
    ring_size: int = 8 * MiB
    flush_interval_ms: int = 50
    sample_rate: float = 1.0
    hooks: tuple[str, ...] = ()
    retention_sessions: int = 10000
    cpu_time: bool = False
    shape_every_call: bool = False
    max_data_size: int = 2 * GiB
    otlp_endpoint: str = ""
    service: str = ""
    sources: tuple[tuple[str, str], ...] = ()  # (key, "default" | file path | env var | --option)


# key -> (kind, default as written in TOML, meaning). The single source for KNOWN_KEYS,
# ENV_KEYS and describe_keys(), so the README table cannot drift from the code.
_KEYS: dict[str, tuple[str, str, str]] = {
    "include": ("globs", "[]", "Module globs to record (fnmatch over dotted names, e.g. `shop`, "
                "`shop.*`); empty = the user's own code (files under the working or script "
                "directory)."),
    "exclude": ("globs", "[]", "Module globs never recorded, even when they match `include`."),
    "data_dir": ("path", '".flowagent"', "Where runs are stored; relative to the config file's "
                 "directory (file) or the working directory (environment, command line)."),
    "store": ("store", '""', "Where runs are written and read: empty = the SQLite file in the "
              "data directory; a path or `sqlite:///PATH`; `postgresql://USER@HOST/DB` for a "
              "store shared by many hosts."),
    "backend": ("backend", '"auto"', "Instrumentation backend: `auto`, `wrap`, `profile` or "
                "`monitor` (Python 3.12+)."),
    "enabled": ("bool", "true", "Production switch; `false` turns the agent fully off."),
    "nested": ("bool", "true", "Also instrument functions defined inside functions."),
    "verbose": ("bool", "false", "Print debug lines (backend choice, where each setting "
                "came from)."),
    "ring_size": ("size", '"8MiB"', "Bytes per process ring: an integer or a size such as "
                  "`512KiB`, `8MiB`, `4M` (binary units); 64 KiB to 1 GiB."),
    "flush_interval_ms": ("int", "50", "How often recorded calls are flushed to the ring, "
                          "in milliseconds (1 to 10000)."),
    "sample_rate": ("float", "1.0", "Fraction of sessions recorded, 0 < x <= 1."),
    "hooks": ("hooks", "[]", "`package.module:function` callables run in the sidecar."),
    "retention_sessions": ("int", "10000", "Full session trees kept per run (0 or more); "
                           "aggregates are always kept."),
    "cpu_time": ("bool", "false", "Also measure each call's CPU time (the thread's CPU clock; "
                 "two more clock reads per call)."),
    "shape_every_call": ("bool", "false", "Describe the input and output shapes of every "
                         "call, not the budgeted sample (the first 16 calls of each function, "
                         "then one in 16, after 1,024 calls one in 256); costly on hot code."),
    "max_data_size": ("datasize", '"2GiB"', "How much the data directory may hold (database "
                      "pages in use plus run files); after each run the oldest ended runs are "
                      "pruned until it fits, and the summary says so. `0` = no limit, else at "
                      "least 1 MiB."),
    "otlp_endpoint": ("url", '""', "OTLP/HTTP receiver (`http://host:4318`) the sidecar sends "
                      "each finished session to as OpenTelemetry spans; empty = none. Needs "
                      "the `otlp` extra."),
    "service": ("service", '""', "Service name the run is stored under (letters, digits, "
                "`.`, `_`, `-`); requests that cross services are stitched by it. Empty = "
                "the program's name (script stem, `-m` module or program)."),
}
KNOWN_KEYS: frozenset[str] = frozenset(_KEYS)
ENV_KEYS: dict[str, str] = {"FLOWAGENT_" + key.upper(): key for key in _KEYS}
_INT_RANGES = {"flush_interval_ms": (1, 10000), "retention_sessions": (0, None)}
_EXPECTED = {
    "globs": "a list of strings", "hooks": "a list of strings", "path": "a string",
    "backend": "a string", "bool": "true or false", "int": "an integer", "float": "a number",
    "size": "an integer number of bytes or a size string such as \"8MiB\"",
    "datasize": "an integer number of bytes or a size string such as \"2GiB\"",
    "url": "an http:// or https:// URL such as \"http://localhost:4318\"",
    "store": "a path, sqlite:///PATH or postgresql://USER@HOST/DB",
    "service": "a service name such as \"checkout\"",
}
_SIZE_UNITS = {"": 1, "b": 1, "k": KiB, "kb": KiB, "kib": KiB, "m": MiB, "mb": MiB, "mib": MiB,
               "g": GiB, "gb": GiB, "gib": GiB}
_SERVICE_RE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_SIZE_RE = r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)"


def describe_keys() -> list[tuple[str, str, str, str]]:
    """Rows of (key, environment variable, default, meaning), in documentation order."""
    return [(key, "FLOWAGENT_" + key.upper(), default, meaning)
            for key, (_, default, meaning) in _KEYS.items()]


def load_config(cwd: str | os.PathLike[str], env: Mapping[str, str],
                cli: Mapping[str, object]) -> Config:
    """Build the effective Config: defaults -> file -> environment -> command line."""
    base = os.path.abspath(cwd)
    values: dict[str, Any] = {k: v for k, v in Config._field_defaults.items() if k != "sources"}
    values["data_dir"] = _abspath(values["data_dir"], base)
    origin = dict.fromkeys(values, "default")

    found = _find_config(base)
    if found is not None:
        path, table = found
        for key, raw in _file_items(table, path).items():
            values[key] = _check(key, raw, f"{key!r} in {path}", os.path.dirname(path))
            origin[key] = str(path)

    for var, key in ENV_KEYS.items():
        text = env.get(var)
        if text is None or (not text.strip() and _KEYS[key][0] not in ("globs", "hooks")):
            continue  # an empty scalar means "not set"; an empty list variable means "[]"
        values[key] = _check(key, _parse_text(key, text, var), var, base)
        origin[key] = var

    for name, raw in cli.items():
        key = name.replace("-", "_")
        option = "--" + key.replace("_", "-")
        if key not in _KEYS:
            raise ConfigError(f"unknown command-line setting {name!r}; valid: {_valid_list()}")
        if raw is None:
            continue
        kind = _KEYS[key][0]
        # Options may arrive as text ("4MiB", "true", "a,b") or, for lists, as lists of text.
        if isinstance(raw, str) and kind != "path":
            raw = _parse_text(key, raw, option)
        elif kind in ("globs", "hooks") and isinstance(raw, (list, tuple)) \
                and all(isinstance(item, str) for item in raw):
            raw = _parse_text(key, ",".join(raw), option)
        values[key] = _check(key, raw, option, base)
        origin[key] = option

    return Config(**values, sources=tuple(origin.items()))


def find_config_file(cwd: str | os.PathLike[str]) -> Path | None:
    """The flowagent.toml or pyproject.toml that load_config would read from ``cwd``, if any."""
    found = _find_config(os.path.abspath(cwd))
    if found is None:
        return None
    from pathlib import Path

    return Path(found[0])


def to_child_env(cfg: Config) -> dict[str, str]:
    """The public FLOWAGENT_* variables that make a child's agent see exactly ``cfg``.

    Every key is written, so the environment layer overrides whatever file the child finds.
    """
    out: dict[str, str] = {}
    for var, key in ENV_KEYS.items():
        value = getattr(cfg, key)
        if isinstance(value, tuple):
            out[var] = ",".join(value)
        elif isinstance(value, bool):
            out[var] = "1" if value else "0"
        elif key == "data_dir":
            out[var] = os.path.abspath(value)
        else:
            out[var] = repr(value) if isinstance(value, float) else str(value)
    return out


def validate_glob(pattern: str, where: str) -> str:
    """Return ``pattern`` if it is a valid module glob; otherwise raise ConfigError."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"invalid module glob {pattern!r} (from {where}): {why}")

    if not isinstance(pattern, str) or not pattern:
        raise bad("patterns must be non-empty strings such as 'shop' or 'shop.*'")
    if "/" in pattern or "\\" in pattern or pattern.endswith(".py"):
        import re

        guess = re.sub(r"\.py$", "", pattern.replace("\\", "/")).replace("/__init__", "")
        guess = ".".join(part for part in guess.split("/") if part not in ("", "."))
        raise bad(f"module globs use dots, not paths: did you mean {guess!r}?")
    if any(ch.isspace() for ch in pattern):
        raise bad("whitespace is not allowed; give several patterns as a list "
                  "(or comma-separated in FLOWAGENT_INCLUDE/FLOWAGENT_EXCLUDE)")
    if pattern.startswith(".") or pattern.endswith(".") or ".." in pattern:
        raise bad("leading, trailing or doubled dots never match a module name")
    in_bracket, bracket_start = False, 0
    for i, ch in enumerate(pattern):
        if ch == "[" and not in_bracket:
            in_bracket, bracket_start = True, i
        elif ch == "]" and in_bracket:
            if i == bracket_start + 1 or pattern[bracket_start + 1:i] == "!":
                raise bad("empty [] character class")
            in_bracket = False
        elif ch == "]" or ch == "[":
            raise bad(f"unbalanced or nested {ch!r}")
        elif ch == "!" and not (in_bracket and i == bracket_start + 1):
            raise bad("'!' is only allowed right after '[' (as in '[!a-c]')")
        elif ch == "-" and not in_bracket:
            raise bad("'-' is only allowed inside [...]; module names cannot contain it")
        elif not (ch.isalnum() or ch in "_.*?!-"):
            raise bad(f"character {ch!r} cannot appear in a module name")
    if in_bracket:
        raise bad("unbalanced '['")
    return pattern


# -- internals ---------------------------------------------------------------------------------

def _parents(start: str) -> list[str]:
    """``start`` (absolute) and every directory above it, up to the root."""
    out = [start]
    while (up := os.path.dirname(out[-1])) != out[-1]:
        out.append(up)
    return out


def _find_config(start: str) -> tuple[str, dict[str, Any]] | None:
    for directory in _parents(start):
        own = os.path.join(directory, "flowagent.toml")
        if os.path.isfile(own):
            return own, _read_toml(own)
        pyproject = os.path.join(directory, "pyproject.toml")
        if os.path.isfile(pyproject):
            # Cheap text check first: an unrelated (even broken) pyproject.toml higher up the
            # tree must neither cost a parse nor stop the program.
            if "flowagent" not in _read_text(pyproject):
                continue
            table = _read_toml(pyproject).get("tool", {})
            if isinstance(table, dict) and "flowagent" in table:
                if not isinstance(table["flowagent"], dict):
                    raise ConfigError(f"[tool.flowagent] in {pyproject} must be a table; "
                                      "write its keys under a [tool.flowagent] header")
                return pyproject, table["flowagent"]
    return None


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}; fix its permissions "
                          "or encoding (UTF-8)") from None


def _read_toml(path: str) -> dict[str, Any]:
    import tomllib  # only when a candidate file exists

    try:
        return tomllib.loads(_read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in {path}: {exc}; fix the syntax there") from None


def _file_items(table: Mapping[str, Any], path: str) -> dict[str, Any]:
    items: dict[str, Any] = {}
    for name, value in table.items():
        key = name.replace("-", "_")
        if key not in _KEYS:
            import difflib  # error path only

            close = difflib.get_close_matches(key, sorted(_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown key {name!r} in {path}{hint}; valid keys: {_valid_list()}")
        if key in items:
            raise ConfigError(f"key {key!r} is set twice in {path} (with '_' and '-'); keep one")
        items[key] = value
    return items


def _valid_list() -> str:
    return ", ".join(_KEYS)


def _parse_text(key: str, text: str, where: str) -> Any:
    """Turn one environment/command-line string into the type the key holds."""
    kind, text = _KEYS[key][0], text.strip()
    if kind in ("globs", "hooks"):
        return [item.strip() for item in text.split(",") if item.strip()]
    if kind == "bool":
        if text.lower() in TRUE_WORDS | FALSE_WORDS:
            return text.lower() in TRUE_WORDS
        raise ConfigError(f"{where}: expected one of 1/0, true/false, yes/no, on/off, got {text!r}")
    if kind == "backend":
        return text.lower()
    if kind in ("int", "float"):
        try:
            return int(text) if kind == "int" else float(text)
        except ValueError:
            raise ConfigError(f"{where}: expected {_EXPECTED[kind]}, got {text!r}") from None
    return text  # size strings are parsed by _check; paths stay text


def _check(key: str, value: Any, where: str, base: str) -> Any:
    """Validate one typed value (from any layer) and return it in its Config form."""
    kind = _KEYS[key][0]

    def wrong() -> ConfigError:
        return ConfigError(f"{where}: expected {_EXPECTED[kind]}, got {type(value).__name__} "
                           f"{value!r}")

    if kind in ("globs", "hooks"):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise wrong()
        check = validate_glob if kind == "globs" else _validate_hook
        return tuple(check(item, where) for item in value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong()
        return value
    if kind == "path":
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            raise wrong()
        return _abspath(os.fspath(value), base)
    if kind == "backend":
        if value not in BACKENDS:
            raise ConfigError(f"{where}: unknown backend {value!r}; choose one of "
                              f"{', '.join(BACKENDS)}")
        return value
    if kind == "datasize":
        size = _parse_size(value, where) if isinstance(value, str) else value
        if isinstance(size, bool) or not isinstance(size, int):
            raise wrong()
        if size != 0 and not MiB <= size <= 1 << 60:
            raise ConfigError(f"{where}: the data directory limit must be 0 (no limit) or at "
                              f"least 1MiB, got {size} bytes")
        return size
    if kind == "url":
        return _check_url(value, where, wrong)
    if kind == "store":
        return _check_store(value, where, base, wrong)
    if kind == "service":
        if not isinstance(value, str):
            raise wrong()
        import re

        if value and not re.fullmatch(_SERVICE_RE, value):
            raise ConfigError(f"{where}: a service name is 1 to 64 letters, digits, '.', '_' "
                              f"or '-' (it prefixes the service's functions), got {value!r}")
        return value
    if kind == "size":
        size = _parse_size(value, where) if isinstance(value, str) else value
        if isinstance(size, bool) or not isinstance(size, int):
            raise wrong()
        if not RING_MIN <= size <= RING_MAX:
            raise ConfigError(f"{where}: ring size must be between 64KiB and 1GiB, "
                              f"got {size} bytes")
        return size
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong()
        low, high = _INT_RANGES[key]
        if value < low or (high is not None and value > high):
            span = f"between {low} and {high}" if high is not None else f"{low} or more"
            raise ConfigError(f"{where}: must be {span}, got {value}")
        return value
    # float: sample_rate
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise wrong()
    import math  # only for a sample rate given

    if not (math.isfinite(value) and 0 < value <= 1):
        raise ConfigError(f"{where}: must be greater than 0 and at most 1, got {value}")
    return float(value)


def _check_url(value: Any, where: str, wrong: Any) -> str:
    if not isinstance(value, str):
        raise wrong()
    text = value.strip()
    if not text:
        return ""  # none
    from urllib.parse import urlsplit  # only when a URL is set

    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: expected {_EXPECTED['url']}, got {value!r}")
    return text


def _check_store(value: Any, where: str, base: str, wrong: Any) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise wrong()
    text = os.fspath(value).strip()
    if not text:
        return ""  # the data directory's SQLite file
    from .errors import StoreError
    from .store.api import kind_of, sqlite_path

    try:
        kind = kind_of(text)
    except StoreError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if kind == "sqlite":
        return _abspath(sqlite_path(text), base)  # a relative file: from where it was given
    return text


def _parse_size(text: str, where: str) -> int:
    import re

    match = re.fullmatch(_SIZE_RE, text.strip())
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ConfigError(f"{where}: expected a size such as 65536, \"512KiB\", \"8MiB\" or "
                          f"\"4M\" (units B, K/KiB, M/MiB, G/GiB), got {text!r}")
    return round(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def _validate_hook(entry: str, where: str) -> str:
    module, sep, func = entry.partition(":")
    parts = module.split(".") + func.split(".")
    if not sep or not all(part.isidentifier() for part in parts):
        raise ConfigError(f"invalid hook {entry!r} (from {where}): write it as "
                          "'package.module:function'")
    return entry


def _abspath(path: str, base: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))

