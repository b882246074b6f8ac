"""Parts made to keep start-up short that must still agree with what they stand in for: the
sidecar's quick command-line reader with its argparse parser, the helper names a cached
instrumented module is checked by with the instrumenter's, and the plain batch encoder
(no msgpack, no zstandard) with the real one."""

from __future__ import annotations

import random

import pytest

from flowagent.agent import helpernames, instrument
from flowagent.protocol import wire
from flowagent.sidecar.__main__ import _parse_args, _quick_args

_LAUNCHER_LINES = [
    ["--run-dir", "/d/runs/r", "--db", "/d/flowagent.db", "--run-id", "r", "--retention",
     "10000", "--max-data-size", "2147483648", "--started-ns", "1765000000000000000",
     "--service", "app"],
    ["--run-dir", "/d/runs/r", "--db", "postgresql://u@h/db", "--run-id", "r",
     "--retention", "5", "--max-data-size", "0", "--started-ns", "7", "--hook", "a:f",
     "--hook", "b:g", "--otlp-endpoint", "http://127.0.0.1:4318", "--otlp-service", "svc",
     "--otlp-host", "", "--service", "svc"],
    ["--run-dir", "r", "--db", "f.db", "--run-id", "x", "--resume", "--once", "--poll-ms",
     "2.5", "--error-cap", "-1", "--host", "h1"],
]


@pytest.mark.parametrize("argv", _LAUNCHER_LINES, ids=["launcher", "hooks-otlp", "flags"])
def test_the_quick_reader_reads_what_argparse_reads(argv: list[str]) -> None:
    quick = _quick_args(argv)
    assert quick is not None
    assert vars(quick) == vars(_parse_args(argv))


@pytest.mark.parametrize("argv", [
    ["--run-dir", "r", "--db", "f.db"],                      # a required option missing
    ["--run-dir", "r", "--db", "f.db", "--run-id"],          # a value missing
    ["--run-dir=r", "--db", "f.db", "--run-id", "x"],        # --option=value
    ["--run-dir", "r", "--db", "f.db", "--run-id", "x", "--poll-ms", "fast"],  # a bad number
    ["--run-dir", "r", "--db", "--run-id", "x"],             # an option where a value belongs
    ["--help"],
    ["--run-dir", "r", "--db", "f.db", "--run-id", "x", "--unknown", "1"],
])
def test_anything_else_is_left_to_argparse(argv: list[str]) -> None:
    assert _quick_args(argv) is None


_EVERY_KIND = """
def f(x):
    return x
def g(n):
    try:
        yield n
    finally:
        pass
async def a():
    return 1
async def ag():
    yield 1
def d():
    yield from g(1)
k = lambda y: y
"""


def _names(code: object) -> set[str]:
    names = set(code.co_names)  # type: ignore[attr-defined]
    for const in code.co_consts:  # type: ignore[attr-defined]
        if hasattr(const, "co_names"):
            names |= _names(const)
    return names


def test_the_instrumenter_calls_only_the_helpers_a_cached_module_is_checked_by() -> None:
    """A cached module is marked portable and recognized by helpernames alone: every helper
    the instrumenter writes a call to must be listed there, and each recorded kind of
    function must open its call through one of the listed openers."""
    fids = iter(range(1, 100))
    code, count = instrument.instrument_source(
        _EVERY_KIND, "<kinds>", "kinds", lambda *_: next(fids))
    written = {n for n in _names(code) if n.startswith("__fa_")}
    assert count == 6
    assert written <= set(helpernames.HELPERS), written - set(helpernames.HELPERS)
    assert written & set(helpernames.OPENERS) == set(helpernames.OPENERS)


_VALUES = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1,
           -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**63,
           "", "a" * 31, "a" * 32, "a" * 255, "a" * 256, "a" * 65535, "a" * 65536,
           "\udcff undecodable", "é ✓", None, True, False, b"", b"x" * 300, b"y" * 70000, 1.5,
           [], list(range(15)), list(range(16)), list(range(70000)), (1, "t"), {},
           {str(i): i for i in range(15)}, {str(i): i for i in range(16)},
           {i: str(i) for i in range(70000)}, [[1, "a"], [2, ["b", 3]]]]


@pytest.mark.parametrize("value", _VALUES, ids=lambda v: repr(v)[:20])
def test_the_plain_packer_packs_what_msgpack_packs(value: object) -> None:
    msgpack = pytest.importorskip("msgpack")
    out = bytearray()
    wire._pack(value, out)
    packer = msgpack.Packer(use_bin_type=True, unicode_errors="backslashreplace")
    assert bytes(out) == packer.pack(value)


@pytest.mark.parametrize("n", [0, 1, 7, 3000])
def test_a_plain_batch_decodes_as_the_real_encoders(n: int) -> None:
    rng = random.Random(n)
    calls = []
    for _ in range(n):
        record = [rng.randrange(0, 2**40) for _ in wire.CALL_FIELDS]
        record[wire.CALL_FIELDS.index("t1")] = record[wire.CALL_FIELDS.index("t0")] + 100
        calls.append(tuple(record))
    block = wire.columns(wire.pack_records(calls))  # 3000 calls: several stored zstd blocks
    batch = {"v": wire.VERSION, "pk": 5, "pid": 9, "seq": 3, "anchor": [1, 2],
             "defs": [[1, "m:f", "m", "f", 3, ["x"], "function"]], "strings": [[1, "int"]],
             "starts": [], "threads": [[7, "MainThread"]], "final": True}
    decoder = wire.Decoder()
    real = decoder.decode(wire.Encoder().encode_columns(dict(batch), n, block))
    plain = decoder.decode(wire.PlainEncoder().encode_columns(dict(batch), n, block))
    assert plain == real
    assert plain["calls"] == calls


# -- what stands in for `re` and the `json` package at start-up ------------------------------

def _random_text(rng: random.Random, alphabet: str, most: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, most)))


def test_the_selectors_glob_matching_is_fnmatchcase() -> None:
    from fnmatch import fnmatchcase as reference

    from flowagent.agent.select import fnmatchcase

    rng = random.Random(12)
    cases = [(name, pattern)
             for name in ("flowagent", "flowagent.agent", "requests", "requests.api", "",
                          "a.b.c", "pkg_x", "x\ny", "[", "a[b", "]", "*", "?")
             for pattern in ("flowagent", "flowagent.*", "requests.*", "*", "", "?", "*.*",
                             "a*b*c", "*.b.*", "?.?.?", "*[", "[ab]*", "a[!b]", "[", "a[b",
                             "[]]", "[!]]", "[a-c]*", "[z-a]", "x?y", "*\n*", "**", "*?*")]
    cases += [(_random_text(rng, "ab.*?\n", 9), _random_text(rng, "ab.*?", 8))
              for _ in range(30000)]
    cases += [(_random_text(rng, "ab.[]!-", 7), _random_text(rng, "ab.*?[]!-", 8))
              for _ in range(3000)]
    wrong = [(n, p) for n, p in cases if fnmatchcase(n, p) != reference(n, p)]
    assert not wrong, wrong[:10]


_JSON_VALUES: list[object] = [
    {}, [], "", 0, -1, 10**30, 1.5, -0.0, 1e300, float("inf"), float("-inf"), True, False,
    None, "é ✓ \u2028 \x00 \" \\ \n \t", "\udcff", {"pid": 7, "argv": ["python", "a b", "\udcff"],
                                                "cwd": "/tmp", "started": 1.25},
    {"run": {"argv": ["x"], "cwd": "/", "backend": "wrap", "ended_ns": 2**62,
             "exit_code": -15}},
    {1: 2, False: 3, None: 4, 2.5: 5}, (1, (2, 3)), [[[]], {"a": [{"b": None}]}],
]


@pytest.mark.parametrize("value", _JSON_VALUES, ids=lambda v: repr(v)[:24])
def test_jsonline_writes_what_json_writes(value: object) -> None:
    import json

    from flowagent.protocol import jsonline

    assert jsonline.dumps(value) == json.dumps(value)
    assert jsonline.dumps(value, default=str) == json.dumps(value, default=str)
    text = json.dumps(value)
    assert repr(jsonline.loads(text)) == repr(json.loads(text))
    assert repr(jsonline.loads(text.encode())) == repr(json.loads(text.encode()))


def test_jsonline_refuses_and_fails_as_json_does() -> None:
    import json

    from flowagent.protocol import jsonline

    for value in (object(), {"x": {1}}, {(1, 2): 3}):
        with pytest.raises(TypeError) as ours:
            jsonline.dumps(value)
        with pytest.raises(TypeError) as theirs:
            json.dumps(value)
        assert str(ours.value) == str(theirs.value)
    assert jsonline.dumps({"o": object()}, default=lambda o: "obj") == '{"o": "obj"}'
    for text in ("", " ", "{", '{"a": 1} x', "[1,]", "nul", "\ufeff{}", '"\\x"', b"\xff",
                 b"\xef\xbb\xbf{}", b'{"a": 1}\n', " \n[1, 2] \r\n", "1 2", '"a\x00"',
                 "NaN", "-Infinity", '{"a": 1, "a": 2}'):
        def outcome(loads: object, text: object = text) -> tuple[str, str]:
            try:
                return "value", repr(loads(text))  # type: ignore[operator]
            except ValueError as exc:
                return type(exc).__name__, str(exc)

        assert outcome(jsonline.loads) == outcome(json.loads), text


def test_lambda_names_and_traceparents_are_read_as_their_patterns_read_them() -> None:
    import re

    from flowagent.agent import tracecontext

    comprehensions = re.compile(r"<(?:listcomp|dictcomp|setcomp|genexpr)>\.")
    header = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
    rng = random.Random(5)
    parts = ["<listcomp>.", "<dictcomp>.", "<setcomp>.", "<genexpr>.", "<", ">.", "f", ".",
             "<locals>.", "<lambda>", "<list", "comp>.", "<genexpr>"]
    for _ in range(20000):
        qualname = "".join(rng.choice(parts) for _ in range(rng.randint(0, 7)))
        assert helpernames.lambda_qualname(qualname, 9) == \
            f"{comprehensions.sub('', qualname)}@9", qualname
    valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    for _ in range(20000):
        chars = list(valid + rng.choice(["", "-x", "-a-b", "x", "-\nx", "\n", "-"]))
        for _ in range(rng.randint(0, 3)):
            at = rng.randrange(len(chars))
            change = rng.random()
            if change < 0.4:
                chars[at] = rng.choice("0f-gA\n é")
            elif change < 0.7:
                chars.insert(at, rng.choice("0f-g\n"))
            else:
                del chars[at]
        value = "".join(chars).strip()
        m = header.match(value)
        assert tracecontext._fields(value) == (
            None if m is None else tuple(g or "" for g in m.groups())), value


def test_the_lazy_integrations_hook_the_modules_their_hooks_name() -> None:
    import importlib

    from flowagent.agent import integrations

    for name, modules in integrations.LAZY.items():
        loaded = importlib.import_module(f"flowagent.agent.integrations.{name}")
        assert tuple(loaded.HOOKS) == modules, name
