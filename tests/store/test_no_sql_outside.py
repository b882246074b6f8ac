"""Only flowagent/store speaks SQL: no other module of the program, the sidecar, the CLI or
the viewer imports a database driver, calls ``.execute(``, or holds an SQL statement."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("flowagent", "viewer", "sitecustomize")
STORE = REPO / "flowagent" / "store"

DRIVERS = re.compile(r"^\s*(import|from)\s+(sqlite3|psycopg\w*|apsw)\b", re.M)
CALLS = re.compile(r"\.(execute|executemany|executescript)\(")
STATEMENT = re.compile(
    r"\bSELECT\b.+\bFROM\b|\bINSERT\s+(OR\s+\w+\s+)?INTO\b|\bUPDATE\s+\w+\s+SET\b|"
    r"\bDELETE\s+FROM\b|\bCREATE\s+(UNIQUE\s+)?(TABLE|INDEX|VIEW)\b|\bALTER\s+TABLE\b|"
    r"\bDROP\s+(TABLE|INDEX)\b|\bPRAGMA\s+\w+|\bSAVEPOINT\b|\bROLLBACK\b", re.S)


def _sources() -> list[Path]:
    out = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if STORE not in path.parents:
                out.append(path)
    return out


def _strings(text: str) -> list[tuple[int, str]]:
    return [(tok.start[0], tok.string) for tok in
            tokenize.generate_tokens(io.StringIO(text).readline)
            if tok.type == tokenize.STRING or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1)]


def offenders() -> list[str]:
    found = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(REPO)
        for m in DRIVERS.finditer(text):
            found.append(f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: imports {m.group(2)}")
        for m in CALLS.finditer(text):
            found.append(f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: calls .{m.group(1)}(")
        for line, s in _strings(text):
            if STATEMENT.search(s):
                found.append(f"{rel}:{line}: SQL in a string: {s[:60]!r}")
    return found


def test_no_sql_outside_the_store() -> None:
    assert offenders() == []


def test_the_check_finds_sql() -> None:
    """The patterns catch what they are for (so the test above cannot pass vacuously)."""
    sample = ('import sqlite3\nx = db.execute("SELECT a FROM t WHERE b=?")\n'
              'y = "UPDATE runs SET status=?"\nz = "INSERT OR IGNORE INTO t VALUES(?)"\n')
    assert DRIVERS.search(sample) and CALLS.search(sample)
    assert [s for _, s in _strings(sample) if STATEMENT.search(s)] == [
        '"SELECT a FROM t WHERE b=?"', '"UPDATE runs SET status=?"',
        '"INSERT OR IGNORE INTO t VALUES(?)"']
    assert not STATEMENT.search('"DELETE"') and not STATEMENT.search('"select one from the list"')
    assert len(_sources()) > 50
