"""End-to-end: the instrumented-bytecode cache across real runs and processes (wrap backend).

Function ids are per process. The first run writes the cache; the second imports the modules
in the other order, so every id differs from the first run's, and must still record every
call under its right name. Runs here write bytecode (``PYTHONDONTWRITEBYTECODE`` unset), so
entries go to ``__pycache__`` beside the modules, where a later run with another data
directory finds them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from helpers import outline, record, run_cli, write_files

pytestmark = pytest.mark.e2e

WRITE_BYTECODE = {"PYTHONDONTWRITEBYTECODE": ""}

MODULES = {
    "alpha.py": """
        def a_top(n):
            return a_helper(n) + 1


        def a_helper(n):
            return n * 2
    """,
    "beta.py": """
        class Beta:
            def b_method(self, s):
                return s.upper()

            @property
            def size(self):
                return 3


        def b_gen(n):
            for i in range(n):
                yield i
    """,
}

PROG = """
    import importlib
    import sys


    def main(order):
        mods = {name: importlib.import_module(name) for name in order}
        alpha, beta = mods["alpha"], mods["beta"]
        alpha.a_top(2)
        b = beta.Beta()
        b.b_method("x")
        b.size
        list(beta.b_gen(2))


    main(sys.argv[1].split(","))
"""

EXPECTED = [["main", ["a_top", "a_helper"], "Beta.b_method", "Beta.size", "b_gen"]]


def entries(root: Path) -> dict[str, int]:
    """Cache entries beside the modules: name -> inode (a rewrite makes a new inode)."""
    cache = root / "__pycache__"
    return {p.name: p.stat().st_ino for p in cache.glob("*.flowagent-*.pyc")}


def warm(tmp_path: Path, order: str) -> None:
    write_files(tmp_path, {"prog.py": PROG, **MODULES})
    proc = run_cli(["run", "--data-dir", str(tmp_path / "warm-data"), "--backend", "wrap",
                    "prog.py", order], tmp_path, env=WRITE_BYTECODE)
    assert proc.returncode == 0, proc.stderr.decode()


def test_second_run_loads_from_the_cache_with_its_own_ids(tmp_path: Path) -> None:
    warm(tmp_path, "alpha,beta")
    first = entries(tmp_path)
    tag = sys.implementation.cache_tag
    assert sorted(name.split(".flowagent-")[0] for name in first) == \
        [f"alpha.{tag}", f"beta.{tag}"]

    rec = record(PROG, tmp_path, args=["beta,alpha"], extra_files=MODULES, env=WRITE_BYTECODE)
    assert entries(tmp_path) == first  # read, not rewritten
    [tree] = rec.trees()
    assert outline(tree) == EXPECTED
    assert rec.call(":Beta.size")["function_name"] == "beta:Beta.size"
    assert rec.call(":a_helper")["function_name"] == "alpha:a_helper"
    # The program's own bytecode cache stays as Python writes it: no plain .pyc is replaced.
    assert not list((tmp_path / "__pycache__").glob(f"alpha.{tag}.pyc.*"))


def test_corrupt_entries_are_rebuilt_without_a_trace_in_the_program(tmp_path: Path) -> None:
    warm(tmp_path, "alpha,beta")
    for name in entries(tmp_path):
        path = tmp_path / "__pycache__" / name
        path.write_bytes(path.read_bytes()[:40])

    rec = record(PROG, tmp_path, args=["beta,alpha"], extra_files=MODULES, env=WRITE_BYTECODE)
    assert rec.stderr.count("Traceback") == 0
    [tree] = rec.trees()
    assert outline(tree) == EXPECTED
    rebuilt = entries(tmp_path)
    warm(tmp_path, "alpha,beta")
    assert entries(tmp_path) == rebuilt  # rewritten whole: the next run reads them


def test_edited_module_is_recompiled(tmp_path: Path) -> None:
    warm(tmp_path, "alpha,beta")
    before = entries(tmp_path)
    edited = {**MODULES, "alpha.py": MODULES["alpha.py"].replace("n * 2", "n * 3")}
    rec = record(PROG, tmp_path, args=["alpha,beta"], extra_files=edited, env=WRITE_BYTECODE)
    assert outline(rec.trees()[0]) == EXPECTED
    after = entries(tmp_path)
    changed = {name for name in after if after[name] != before.get(name)}
    assert [name.split(".")[0] for name in changed] == ["alpha"]


CHILDREN = """
    import multiprocessing
    import os
    import sys

    if __name__ != "__main__":
        import other  # a spawned child registers other's functions before work's
    import work


    def main():
        work.task(1)
        pid = os.fork()
        if pid == 0:
            work.task(2)
            os._exit(0)
        os.waitpid(pid, 0)
        ctx = multiprocessing.get_context("spawn")
        p = ctx.Process(target=work.child_entry, args=(3,))
        p.start()
        p.join()
        sys.exit(p.exitcode)


    if __name__ == "__main__":
        main()
"""

WORK = {
    "other.py": """
        def unrelated(n):
            return n
    """,
    "work.py": """
        def task(n):
            return step(n) + 1


        def step(n):
            return n


        def child_entry(n):
            import other
            other.unrelated(n)
            task(n)
    """,
}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_and_spawned_children_load_from_the_cache(tmp_path: Path) -> None:
    write_files(tmp_path, {"prog.py": CHILDREN, **WORK})
    warm_run = run_cli(["run", "--data-dir", str(tmp_path / "warm-data"), "--backend", "wrap",
                        "prog.py"], tmp_path, env=WRITE_BYTECODE, timeout=120)
    assert warm_run.returncode == 0, warm_run.stderr.decode()
    first = entries(tmp_path)
    assert {name.split(".")[0] for name in first} == {"work", "other"}

    rec = record(CHILDREN, tmp_path, extra_files=WORK, env=WRITE_BYTECODE, timeout=120)
    assert entries(tmp_path) == first
    tasks = rec.calls(":task")
    assert len(tasks) == 3  # parent, forked child, spawned child
    for call in tasks:
        tree = next(t for t in rec.trees() if t["session_id"] == call["session_id"])
        names = {n["function_name"] for n in tree["nodes"]}
        assert "work:step" in names
    assert "other:unrelated" in rec.function_names()
    assert "work:child_entry" in rec.function_names()


def test_main_script_is_cached_in_the_user_cache_never_in_the_data_directory(
        tmp_path: Path) -> None:
    """A main script's entry lives in the user's cache directory (never beside the script:
    ``python script.py`` writes no ``__pycache__`` either; never in the data directory, which
    people share and compiled code would carry the program's constants), and a second run
    reads it with its own ids."""
    data, user_cache = tmp_path / "data", tmp_path / "user-cache"
    env = {**WRITE_BYTECODE, "XDG_CACHE_HOME": str(user_cache)}
    write_files(tmp_path, {"prog.py": PROG, **MODULES})
    first = None
    for order in ("alpha,beta", "beta,alpha"):
        proc = run_cli(["run", "--data-dir", str(data), "--backend", "wrap", "prog.py", order],
                       tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr.decode()
        mains = [(p, p.stat().st_ino) for p in user_cache.rglob("prog.*.flowagent-*.pyc")]
        assert len(mains) == 1, sorted(user_cache.rglob("*"))
        first = first or mains
        assert mains == first  # the second run read it, did not rewrite it
    assert not list(data.rglob("*.pyc"))
    assert not list((tmp_path / "__pycache__").glob("prog.*"))
    export = run_cli(["export", "--format", "json", "--data-dir", str(data)], tmp_path)
    assert export.returncode == 0, export.stderr.decode()
    assert b'"__main__:main"' in export.stdout
