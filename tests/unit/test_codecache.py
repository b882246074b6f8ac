"""The cache of instrumented bytecode (``flowagent.agent.codecache``), in this process.

The code a load returns is run with *spy* helpers in its own builtins (never the real
``builtins``), so each test sees which function id the rewritten code passes to the recorder
and compares it with the id :func:`recorder.register_function` gives that function here.
"""

from __future__ import annotations

import builtins
import contextlib
import marshal
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest

from flowagent.agent import codecache, recorder

REPO = Path(__file__).resolve().parents[2]

SOURCE = textwrap.dedent('''\
    def double(x):
        return x * 2


    class Box:
        def get(self):
            return "box"


    def numbers():
        yield "a"
        yield "b"
''')


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module file under ``tmp_path/src``, a user cache directory, clean counters."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "mod.py").write_text(SOURCE)
    monkeypatch.setattr(codecache, "fallback_dir", str(tmp_path / "user-cache"))
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.setattr(codecache, "stats", dict.fromkeys(codecache.stats, 0))
    yield src / "mod.py"


def load(path: Path, nested: bool = True, main: bool = False) -> tuple[Any, int]:
    return codecache.instrumented_code(path.read_bytes(), str(path), "cachemod", nested, main)


def run_and_spy(code: Any) -> list[int]:
    """Execute a loaded module with spy helpers; the function ids its calls pass, in order."""
    seen: list[int] = []

    def call(fid: int, *args: Any) -> Any:
        seen.append(fid)
        return contextlib.nullcontext()

    spies = {"__fa_call__": call, "__fa_gcall__": call, "__fa_ret__": lambda fid, v: v,
             "__fa_own__": lambda fid: None, "__fa_suspend__": lambda fid, v=None: v,
             "__fa_resume__": lambda frame, sent=None: sent}
    ns: dict[str, Any] = {"__name__": "cachemod", "__builtins__": {**vars(builtins), **spies}}
    exec(code, ns)
    assert ns["double"](2) == 4
    assert ns["Box"]().get() == "box"
    assert list(ns["numbers"]()) == ["a", "b"]
    return seen


def expected_ids(path: Path) -> list[int]:
    """What this process's recorder calls the three functions (register is idempotent)."""
    reg = recorder.register_function
    return [reg("cachemod", "double", str(path), 1, ("x",), "function"),
            reg("cachemod", "Box.get", str(path), 6, ("self",), "method"),
            reg("cachemod", "numbers", str(path), 10, (), "generator")]


def entry_path(path: Path, nested: bool = True) -> Path:
    return Path(codecache.locations(str(path), codecache.config_key(nested))[0])


def test_miss_writes_beside_the_pyc_then_hits(cache: Path) -> None:
    code, n = load(cache)
    assert n == 3
    assert codecache.stats == {"hits": 0, "misses": 1, "writes": 1, "uncacheable": 0}
    entry = entry_path(cache)
    assert entry.parent == cache.parent / "__pycache__"
    assert entry.name.startswith(f"mod.{sys.implementation.cache_tag}.flowagent-")
    assert run_and_spy(code) == expected_ids(cache)

    again, _ = load(cache)
    assert codecache.stats["hits"] == 1 and codecache.stats["writes"] == 1
    assert run_and_spy(again) == expected_ids(cache)
    assert not [p for p in entry.parent.iterdir() if p.name.endswith(".tmp")]


def test_entry_written_by_another_process_gets_this_process_ids(cache: Path) -> None:
    """The other process registers unrelated functions first, so its ids differ from ours."""
    script = textwrap.dedent(f'''
        import sys
        from flowagent.agent import codecache, recorder
        for i in range(37):
            recorder.register_function("other", f"f{{i}}", "other.py", i, (), "function")
        codecache.fallback_dir = None
        sys.dont_write_bytecode = False
        path = {str(cache)!r}
        codecache.instrumented_code(open(path, "rb").read(), path, "cachemod", True)
        assert codecache.stats["writes"] == 1, codecache.stats
    ''')
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr.decode()
    code, _ = load(cache)
    assert codecache.stats["hits"] == 1 and codecache.stats["misses"] == 0
    assert run_and_spy(code) == expected_ids(cache)


def test_changed_source_with_same_size_and_mtime_is_rebuilt(cache: Path) -> None:
    load(cache)
    st = cache.stat()
    cache.write_text(SOURCE.replace("x * 2", "x + x"))  # same length
    os.utime(cache, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.stat().st_size == st.st_size
    code, _ = load(cache)
    assert codecache.stats["misses"] == 2 and codecache.stats["writes"] == 2
    assert run_and_spy(code) == expected_ids(cache)
    load(cache)
    assert codecache.stats["hits"] == 1  # the rewritten entry is the new source's


CORRUPTIONS = {
    "empty": lambda good: b"",
    "magic only": lambda good: good[:4],
    "truncated": lambda good: good[:len(good) // 2],
    "wrong magic": lambda good: b"\0\0\0\0" + good[4:],
    "garbage": lambda good: good[:4] + os.urandom(200),
    "wrong layout": lambda good: good[:4] + marshal.dumps(("not", "an", "entry")),
    "other format": lambda good: good[:4] + marshal.dumps(
        (codecache.FORMAT + 1, *marshal.loads(good[4:])[1:])),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_entry_is_ignored_and_rewritten(cache: Path, corrupt: Any) -> None:
    load(cache)
    entry = entry_path(cache)
    entry.write_bytes(corrupt(entry.read_bytes()))
    code, _ = load(cache)
    assert codecache.stats["hits"] == 0 and codecache.stats["writes"] == 2
    assert run_and_spy(code) == expected_ids(cache)
    load(cache)
    assert codecache.stats["hits"] == 1  # the rewritten entry is valid


def test_unwritable_pycache_falls_back_to_the_user_cache_dir(cache: Path) -> None:
    # A file where __pycache__ should be: cannot be written even by root.
    (cache.parent / "__pycache__").write_text("not a directory")
    code, _ = load(cache)
    beside, fallback = codecache.locations(str(cache), codecache.config_key(True))
    assert not os.path.exists(beside) and os.path.isfile(fallback)
    assert fallback.startswith(str(codecache.fallback_dir))
    assert run_and_spy(code) == expected_ids(cache)
    load(cache)
    assert codecache.stats["hits"] == 1


def test_nowhere_writable_still_loads(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (cache.parent / "__pycache__").write_text("not a directory")
    monkeypatch.setattr(codecache, "fallback_dir", None)
    code, _ = load(cache)
    assert codecache.stats["writes"] == 0
    assert run_and_spy(code) == expected_ids(cache)


def test_dont_write_bytecode_keeps_the_source_tree_clean(cache: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    load(cache)
    load(cache)
    assert not (cache.parent / "__pycache__").exists()
    assert codecache.stats["hits"] == 1
    [place] = codecache.locations(str(cache), codecache.config_key(True))
    assert place.startswith(str(codecache.fallback_dir)) and os.path.isfile(place)


def test_main_scripts_are_cached_only_in_the_user_cache_dir(cache: Path) -> None:
    load(cache, main=True)
    load(cache, main=True)
    assert not (cache.parent / "__pycache__").exists()
    assert codecache.stats["hits"] == 1


def test_options_that_change_the_rewrite_have_their_own_entries(cache: Path) -> None:
    cache.write_text(SOURCE + "\n\ndef outer():\n    def inner():\n        return 1\n"
                              "    return inner()\n")
    _, with_nested = load(cache, nested=True)
    _, without = load(cache, nested=False)
    assert (with_nested, without) == (5, 4)
    assert entry_path(cache, True) != entry_path(cache, False)
    assert codecache.config_key(True) != codecache.config_key(False)
    load(cache, nested=True)
    load(cache, nested=False)
    assert codecache.stats["hits"] == 2


def test_syntax_error_is_raised_as_python_would_and_nothing_is_cached(cache: Path) -> None:
    cache.write_text("def broken(:\n    pass\n")
    with pytest.raises(SyntaxError):
        load(cache)
    assert codecache.stats["writes"] == 0 and not entry_path(cache).exists()


def test_placeholder_guard_detects_a_second_occurrence() -> None:
    two = compile("def f():\n    return 7\ndef g():\n    return 7\n", "m.py", "exec")
    one = compile("def f():\n    return 7\ndef g():\n    return 8\n", "m.py", "exec")
    assert not codecache._placeholders_unique(two, 7, 8)
    assert codecache._placeholders_unique(one, 7, 9)


def test_module_whose_constants_collide_is_compiled_uncached(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the guard refuses an entry, the module still loads, with real ids."""
    monkeypatch.setattr(codecache, "_placeholders_unique", lambda code, lo, hi: False)
    code, n = load(cache)
    assert n == 3 and codecache.stats["uncacheable"] == 1 and codecache.stats["writes"] == 0
    assert run_and_spy(code) == expected_ids(cache)


def test_concurrent_writers_leave_one_valid_entry(cache: Path) -> None:
    script = textwrap.dedent(f'''
        import sys
        from flowagent.agent import codecache
        sys.dont_write_bytecode = False
        codecache.fallback_dir = None
        path = {str(cache)!r}
        source = open(path, "rb").read()
        key = codecache.config_key(True)
        entry = codecache._build(source, path, True, key, codecache.source_hash(source))
        for _ in range(50):
            codecache._store(codecache.locations(path, key), entry, path)
    ''')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env,
                              stderr=subprocess.PIPE) for _ in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert [p.name for p in (cache.parent / "__pycache__").iterdir()] == [entry_path(cache).name]
    code, _ = load(cache)
    assert codecache.stats["hits"] == 1
    assert run_and_spy(code) == expected_ids(cache)
