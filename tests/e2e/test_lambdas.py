"""Lambdas of recorded modules are recorded like functions on every backend, named after
where they are written (``outer.<locals>.<lambda>``) and their line; the program's output
and tracebacks stay its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import record, run_python, strip_summary

pytestmark = pytest.mark.e2e

PROGRAM = """\
import traceback
import shapes
sq = lambda x: x * x
class K:
    key = lambda self, v: -v
def outer(n):
    f = lambda y: shapes.area(y)
    g = lambda: (lambda z: z + 1)(n)
    return f(1) + sq(n) + g()
def main():
    print(outer(3), sorted([3, 1, 2], key=lambda v: -v), K().key(4))
    try:
        (lambda: 1 / 0)()
    except ZeroDivisionError:
        traceback.print_exc()
main()
"""

SHAPES = """\
def area(r):
    return r * 3
"""


def test_lambdas_are_recorded_like_functions(tmp_path: Path, backend: str) -> None:
    rec = record(PROGRAM, tmp_path, backend=backend, extra_files={"shapes.py": SHAPES})
    plain = run_python(["prog.py"], tmp_path)
    assert rec.stdout == plain.stdout.decode() == "16 [3, 2, 1] -4\n"
    assert strip_summary(rec.stderr.encode()) == plain.stderr
    assert b"in <lambda>" in plain.stderr
    [session] = rec.sessions()
    g = rec.tree(session["session_id"])
    by_id = {n["id"]: n for n in g["nodes"]}
    tree = [(n["function_name"], by_id[n["parent_id"]]["function_name"] if n["parent_id"]
             else None, n["result_type"]) for n in g["nodes"]]
    assert tree == [
        ("__main__:main", None, "partial"),
        ("__main__:outer", "__main__:main", "success"),
        ("__main__:outer.<locals>.<lambda>@7", "__main__:outer", "success"),
        ("shapes:area", "__main__:outer.<locals>.<lambda>@7", "success"),
        ("__main__:<lambda>@3", "__main__:outer", "success"),
        ("__main__:outer.<locals>.<lambda>@8", "__main__:outer", "success"),
        ("__main__:outer.<locals>.<lambda>.<locals>.<lambda>@8",
         "__main__:outer.<locals>.<lambda>@8", "success"),
        *[("__main__:main.<locals>.<lambda>@11", "__main__:main", "success")] * 3,
        ("__main__:K.<lambda>@5", "__main__:main", "success"),
        ("__main__:main.<locals>.<lambda>@13", "__main__:main", "error"),
    ]
    area = next(n for n in g["nodes"] if n["function_name"].endswith("<lambda>@7"))
    assert area["input_shape"] == {"y": "int"} and area["output_shape"] == "int"
    functions = {f["name"]: f for f in rec.store().functions(rec.run_info()["run_id"]).values()}
    assert functions["__main__:K.<lambda>@5"]["line"] == 5
    assert functions["__main__:K.<lambda>@5"]["params"] == ["self", "v"]
