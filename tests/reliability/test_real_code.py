"""Transparency on real code: a pure-Python command-line program (Pygments, from the
project's own virtualenv) recorded with ``--include 'pygments.*'`` prints byte-identical
output. Its lexers are regex callbacks, generators and deep class hierarchies: thousands of
recorded calls per run.

Third-party *test suites* run with and without flowagent from ``thirdparty.py`` (network
needed the first time): ``bash scripts/reliability.sh --full``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import run_cli, run_python, strip_summary
from reliability_support import PROGRAMS

pytestmark = pytest.mark.e2e

pygments = pytest.importorskip("pygments")

FORMATS = {
    "html": ["-f", "html", "-O", "full,linenos=1"],
    "terminal256": ["-f", "terminal256"],
    "latex": ["-f", "latex"],
}


@pytest.mark.parametrize("fmt", [pytest.param(f, marks=() if f == "html" else pytest.mark.slow)
                                 for f in FORMATS])
def test_pygments_cli_output_is_byte_identical(tmp_path: Path, fmt: str, figure) -> None:
    shutil.copy(PROGRAMS / "hostile.py", tmp_path / "input.py")
    args = ["-m", "pygments", "-l", "python", *FORMATS[fmt], "input.py"]
    plain = run_python(args, tmp_path, timeout=120)
    assert plain.returncode == 0, plain.stderr.decode()
    fa = run_cli(["run", "--data-dir", str(tmp_path / "data"), "--include", "pygments",
                  "--include", "pygments.*", *args], tmp_path, timeout=300)
    assert fa.returncode == plain.returncode
    assert fa.stdout == plain.stdout
    assert strip_summary(fa.stderr) == plain.stderr
    summary = re.search(rb"(\d+) sessions, (\d+) calls, \d+ errors, (\d+) dropped", fa.stderr)
    assert summary, fa.stderr
    sessions, calls, dropped = map(int, summary.groups())
    assert calls > 1000
    figure(f"pygmentize -f {fmt} of a {len(plain.stdout) // 1024} KiB output, recorded "
           f"(--include pygments.*: {calls:,} calls in {sessions:,} sessions, {dropped} "
           f"dropped): byte-identical stdout, same stderr and exit status",
           calls=calls, sessions=sessions)
