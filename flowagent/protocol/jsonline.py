"""``json.dumps`` and ``json.loads`` for the small documents flowagent's own processes hand each
other (a ring's process info, the launcher's end of run, the sidecar's summary), made of the C
encoder and scanner of the standard ``json`` package, without importing the package.

``import json`` loads ``re`` (``json.decoder`` compiles its patterns at import) and ``re``
loads ``enum``: ~25 M instructions in every process that needs only these two calls (the
agent in the recorded program, the launcher between the program's exit and its own). The
text written and the values read are the package's own (the same C functions, called with
``json.dumps``' and ``json.loads``' defaults; a test compares them on many values). Where the
C module is missing, or a document is malformed (the error is the package's
``JSONDecodeError``), the package is used.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any, Callable

_c_string: Any = None
_c_make_encoder: Any = None
_c_make_scanner: Any = None
try:
    import _json
except ImportError:  # an interpreter without the accelerator: the package does it all
    pass
else:
    _c_string = _json.encode_basestring_ascii
    _c_make_encoder = _json.make_encoder
    _c_make_scanner = _json.make_scanner

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


def _no_default(o: Any) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def dumps(obj: Any, default: Callable[[Any], Any] | None = None) -> str:
    """``json.dumps(obj, default=default)``."""
    if _c_make_encoder is None:
        import json

        return json.dumps(obj, default=default)
    if isinstance(obj, str):
        return str(_c_string(obj))
    encode = _c_make_encoder({}, default or _no_default, _c_string, None, ": ", ", ", False,
                             False, True)
    return "".join(encode(obj, 0))


class _Context:
    """What the C scanner reads of a ``json.JSONDecoder``: the defaults."""

    __slots__ = ("memo", "object_hook", "object_pairs_hook", "parse_constant", "parse_float",
                 "parse_int", "strict")

    def __init__(self) -> None:
        self.strict = True
        self.object_hook = self.object_pairs_hook = None
        self.parse_float, self.parse_int = float, int
        self.parse_constant = _CONSTANTS.__getitem__
        self.memo: dict[Any, Any] = {}


_scan = _c_make_scanner(_Context()) if _c_make_scanner is not None else None


def loads(s: str | bytes | bytearray) -> Any:
    """``json.loads(s)``; ``ValueError`` (``json.JSONDecodeError``) when it is not JSON."""
    if isinstance(s, (bytes, bytearray)):
        try:
            text = bytes(s).decode("utf-8")  # what flowagent writes: ASCII, UTF-8 at most
        except UnicodeDecodeError:
            text = ""
        if not text or text.startswith("\ufeff") or "\0" in text[:4]:
            text = ""  # another encoding, a BOM: the package tells which, or says why not
    else:
        text = s
    if _scan is None or not text:
        import json

        return json.loads(s)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        obj, end = _scan(text, start)
    except StopIteration:
        end = -1
    if end < 0 or text[end:].strip(_WHITESPACE):
        import json  # malformed: the package's own error, with its position and message

        return json.loads(s)
    return obj
