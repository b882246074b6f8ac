"""Import time is one flow: calls made while a selected module is imported form one
``<import>:module`` session per imported module tree; a module whose import called nothing
leaves no session; an import made inside a recorded call stays in that call's session; a
failing import's traceback is the program's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import record, run_python, strip_summary

pytestmark = pytest.mark.e2e

FILES = {
    "shop/__init__.py": "",
    "shop/web.py": """
from shop import rules

def make_validator(**fields):
    def validate(payload):
        return all(k in payload for k in fields)
    return validate

check_item = make_validator(sku=str)
check_order = make_validator(id=int)
LIMITS = rules.load()
""",
    "shop/rules.py": """
def parse(x):
    return int(x)

def load():
    return [parse(v) for v in "123"]
""",
    "shop/quiet.py": """
def f():
    return 1
""",
    "shop/bad.py": """
def g():
    raise ValueError("bad import")

g()
""",
}

PROGRAM = """
import shop.web
import shop.quiet

def main():
    import shop.rules
    print(shop.web.check_item({"sku": 1}), shop.quiet.f())
    try:
        import shop.bad
    except ValueError as e:
        print("caught", e)

main()
import shop.bad
"""


def test_import_time_calls_are_one_session_per_module_tree(tmp_path: Path, backend: str) -> None:
    rec = record(PROGRAM, tmp_path, backend=backend, extra_files=FILES, check=False)
    plain = run_python(["prog.py"], tmp_path)
    assert rec.returncode == plain.returncode == 1
    assert rec.stdout == plain.stdout.decode() == "True 1\ncaught bad import\n"
    # the failed import's traceback is the one the program prints without the agent
    assert strip_summary(rec.stderr.encode()) == plain.stderr
    sessions = rec.sessions()
    assert [(s["name"], s["result"]) for s in sessions] == [
        ("<import>:shop.web", "success"), ("__main__:main", "partial"),
        ("<import>:shop.bad", "error")]
    web = rec.tree(sessions[0]["session_id"])
    names = [n["function_name"] for n in web["nodes"]]
    # shop.rules is imported (and called) while shop.web is: one tree
    assert names[0] == "<import>:shop.web"
    assert names.count("shop.web:make_validator") == 2 and names.count("shop.rules:parse") == 3
    assert all(n["parent_id"] == web["nodes"][0]["id"] for n in web["nodes"][1:]
               if n["function_name"] in ("shop.web:make_validator", "shop.rules:load"))
    # the import inside main() belongs to main's session
    main = rec.tree(sessions[1]["session_id"])
    assert "shop.bad:g" in [n["function_name"] for n in main["nodes"]]
