"""Transparency on real code: third-party test suites, with and without flowagent.

    python tests/reliability/thirdparty.py [--cache DIR] [--only NAME ...]

For each library below: download its sdist (``pip download --no-binary :all: --no-deps``,
pinned version, cached), unpack it afresh, run its own test suite with plain
``python -m pytest`` and then with ``python -m flowagent run --include LIB --include 'LIB.*'
-m pytest``, and compare the outcome of every test (from JUnit XML) and pytest's summary
counts. Prints one figure line per library (also appended to ``$FLOWAGENT_FIGURES`` as JSON
lines) and exits 1 if any library's results differ. Used by ``scripts/reliability.sh --full``;
needs PyPI (or a pip cache) the first time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Lib:
    name: str               # PyPI name
    version: str
    tests: tuple[str, ...]  # test paths inside the sdist
    include: tuple[str, ...]
    pythonpath: str = ""    # e.g. "src" for a src layout
    # Tests whose outcome may differ, and why (reported, never hidden).
    known: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return self.name.replace("-", "_").lower()


LIBS = (
    Lib("six", "1.17.0", ("test_six.py",), ("six",)),
    Lib("toolz", "1.2.0", ("toolz/tests",), ("toolz", "toolz.*", "tlz", "tlz.*")),
    Lib("tomlkit", "0.15.2", ("tests",), ("tomlkit", "tomlkit.*")),
    Lib("idna", "3.20", ("tests",), ("idna", "idna.*")),
    Lib("attrs", "26.1.0", ("tests",), ("attr", "attr.*", "attrs", "attrs.*"), "src"),
    Lib("more-itertools", "11.2.1", ("tests",), ("more_itertools", "more_itertools.*"),
        known=((("tests.test_more.SeekableTest::"
                 "test_repeated_zero_cache_peek_has_bounded_memory"),
                ("measures with tracemalloc what 20,000 calls of the library retain, and so "
                 "sees the agent's buffered call records (~0.5 MB until the next flush)")),)),
)


def _env(lib: Lib, src: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLOWAGENT_", "PYTEST_", "PYTHON"))}
    if lib.pythonpath:
        env["PYTHONPATH"] = str(src / lib.pythonpath)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _sdist(lib: Lib, cache: Path) -> Path:
    sdists = cache / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    prefix = f"{lib.key}-{lib.version}".lower()
    for f in sdists.iterdir():
        if f.name.lower().replace("-", "_").startswith(prefix.replace("-", "_")):
            return f
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--no-binary", ":all:", "-d", str(sdists), f"{lib.name}=={lib.version}"],
                   check=True, timeout=600)
    return _sdist(lib, cache)


def _unpack(archive: Path, into: Path) -> Path:
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    [root] = list(into.iterdir())
    return root


def _outcomes(junit: Path) -> dict[str, str]:
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        tid = f"{case.get('classname')}::{case.get('name')}"
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        out[tid] = kinds[0] if kinds else "passed"
    return out


_SUMMARY = re.compile(r"^=*\s*(\d+ \w+.*?) in [\d.]+s", re.MULTILINE)


def _summary(stdout: str) -> str:
    found = _SUMMARY.findall(stdout)
    return found[-1].strip() if found else "?"


def _pytest(lib: Lib, src: Path, junit: Path, data: Path | None
            ) -> tuple[dict[str, str], str, float, str]:
    args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *lib.tests]
    if data is None:
        cmd = [sys.executable, *args]
    else:
        cmd = [sys.executable, "-m", "flowagent", "run", "--data-dir", str(data),
               *(a for glob in lib.include for a in ("--include", glob)), *args]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=src, env=_env(lib, src), capture_output=True, text=True,
                          timeout=1800, check=False)
    elapsed = time.monotonic() - t0
    ours = "\n".join(line for line in proc.stderr.splitlines() if line.startswith("flowagent:"))
    return _outcomes(junit), _summary(proc.stdout), elapsed, ours


def check(lib: Lib, cache: Path) -> dict:
    archive = _sdist(lib, cache)
    work = cache / "work" / lib.key
    src = _unpack(archive, work / "plain")
    plain, plain_summary, plain_s, _ = _pytest(lib, src, work / "plain.xml", None)
    src = _unpack(archive, work / "agent")
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    agent, agent_summary, agent_s, ours = _pytest(lib, src, work / "agent.xml", data)
    differ = sorted(t for t in plain.keys() | agent.keys() if plain.get(t) != agent.get(t))
    known = dict(lib.known)
    explained = [t for t in differ if t in known]
    differ = [t for t in differ if t not in known]
    recorded = re.search(r"run \S+: (\d+) sessions, (\d+) calls, \d+ errors, (\d+) dropped",
                         ours)
    counts = Counter(plain.values())
    same = not differ and (plain_summary == agent_summary or bool(explained))
    if not same:
        verdict = f"{len(differ)} DIFFER: {', '.join(differ[:5])}"
    elif explained:
        verdict = (f"every outcome identical but {len(explained)} known difference(s): "
                   + "; ".join(f"{t} fails because it {known[t]}" for t in explained))
    else:
        verdict = "every outcome identical"
    text = (f"{lib.name} {lib.version}: {len(plain)} tests "
            f"({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}); "
            f"under flowagent: {verdict} "
            f"(pytest: '{agent_summary}'); {plain_s:.1f} s plain, {agent_s:.1f} s recorded; "
            + (f"{int(recorded[1]):,} sessions, {int(recorded[2]):,} calls, "
               f"{int(recorded[3]):,} dropped events" if recorded else "nothing recorded!"))
    return {"test": f"thirdparty::{lib.name}", "figure": text, "same": same,
            "differ": differ[:20], "explained": explained, "plain_summary": plain_summary,
            "agent_summary": agent_summary, "plain_s": round(plain_s, 2),
            "agent_s": round(agent_s, 2), "recorded": bool(recorded)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
        "flowagent-reliability"))
    p.add_argument("--only", nargs="*", default=None)
    a = p.parse_args()
    cache = Path(a.cache)
    failed = False
    figures = os.environ.get("FLOWAGENT_FIGURES")
    for lib in LIBS:
        if a.only and lib.name not in a.only:
            continue
        try:
            result = check(lib, cache)
        except (subprocess.SubprocessError, OSError, ValueError, ET.ParseError) as exc:
            result = {"test": f"thirdparty::{lib.name}", "same": False,
                      "figure": f"{lib.name} {lib.version}: could not run: {exc}"}
        failed |= not (result["same"] and result.get("recorded", False))
        print(result["figure"], flush=True)
        if figures:
            with open(figures, "a", encoding="utf-8") as f:
                f.write(json.dumps(result) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
