"""Bad input to flowagent itself: one clear line on stderr, exit status 2, nothing on stdout,
and the program never started.

tests/e2e/test_cli.py already covers: a path as --include glob, --backend fast, a missing
script, a missing -m module, a program not on PATH, a directory without __main__.py, no
target at all, an unknown export format and an unknown key in flowagent.toml. These are the
rest: bad TOML, unknown keys and bad values from every layer (file, environment, command
line), invalid globs in files and the environment, unknown backends, and targets that are
not Python programs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import run_cli, run_python

pytestmark = pytest.mark.e2e

GOOD = "import pathlib\npathlib.Path('ran').write_text('yes')\nprint('ran')\n"

# id: (files to write, environment, flowagent arguments, words the error line must contain)
CASES: dict[str, tuple[dict[str, str], dict[str, str], list[str], list[str]]] = {
    "bad TOML in flowagent.toml": (
        {"flowagent.toml": "include = [\"shop\"\n"}, {}, ["run", "prog.py"],
        ["flowagent.toml"]),
    "bad TOML in pyproject.toml": (
        {"pyproject.toml": "[tool.flowagent]\ninclude = 'a\n"}, {}, ["run", "prog.py"],
        ["pyproject.toml"]),
    "unknown key in pyproject.toml": (
        {"pyproject.toml": "[tool.flowagent]\nbakend = 'wrap'\n"}, {}, ["run", "prog.py"],
        ["'bakend'", "pyproject.toml"]),
    "invalid glob in flowagent.toml": (
        {"flowagent.toml": "include = ['shop.[a-']\n"}, {}, ["run", "prog.py"],
        ["shop.[a-", "flowagent.toml"]),
    "glob list that is a string": (
        {"flowagent.toml": "exclude = 'shop'\n"}, {}, ["run", "prog.py"],
        ["exclude", "flowagent.toml"]),
    "unknown backend in flowagent.toml": (
        {"flowagent.toml": "backend = 'fast'\n"}, {}, ["run", "prog.py"],
        ["backend", "fast", "flowagent.toml"]),
    "ring size out of range in flowagent.toml": (
        {"flowagent.toml": "ring_size = '2GiB'\n"}, {}, ["run", "prog.py"],
        ["ring_size", "flowagent.toml"]),
    "unknown backend in the environment": (
        {}, {"FLOWAGENT_BACKEND": "fast"}, ["run", "prog.py"],
        ["FLOWAGENT_BACKEND", "fast"]),
    "invalid glob in the environment": (
        {}, {"FLOWAGENT_INCLUDE": "shop,bad glob"}, ["run", "prog.py"],
        ["FLOWAGENT_INCLUDE", "bad glob"]),
    "not a boolean in the environment": (
        {}, {"FLOWAGENT_ENABLED": "maybe"}, ["run", "prog.py"], ["FLOWAGENT_ENABLED"]),
    "sample rate above 1 in the environment": (
        {}, {"FLOWAGENT_SAMPLE_RATE": "2"}, ["run", "prog.py"], ["FLOWAGENT_SAMPLE_RATE"]),
    "flush interval 0 in the environment": (
        {}, {"FLOWAGENT_FLUSH_INTERVAL_MS": "0"}, ["run", "prog.py"],
        ["FLOWAGENT_FLUSH_INTERVAL_MS"]),
    "ring size below 64 KiB on the command line": (
        {}, {}, ["run", "--ring-size", "1KiB", "prog.py"], ["--ring-size"]),
    "ring size that is not a size": (
        {}, {}, ["run", "--ring-size", "lots", "prog.py"], ["--ring-size", "lots"]),
    "glob with a dash on the command line": (
        {}, {}, ["run", "--exclude", "my-pkg", "prog.py"], ["my-pkg"]),
    "unknown option": ({}, {}, ["run", "--bogus", "prog.py"], ["--bogus"]),
    "option without its value": ({}, {}, ["run", "--include"], ["--include needs a value"]),
    "-m without a module": ({}, {}, ["run", "-m"], ["-m needs a module name"]),
    "-- without a program": ({}, {}, ["run", "--"], ["'--' must be followed"]),
    "binary file as the script": (
        {}, {}, ["run", "true.bin"], ["not a Python program", "flowagent run -- true.bin"]),
    "absolute path to a binary": (
        {}, {}, ["run", shutil.which("true") or "/bin/true"], ["not a Python program"]),
    "directory as the script": ({}, {}, ["run", "pkgdir"], ["is a directory"]),
    "unknown command": ({}, {}, ["recrod", "prog.py"], ["recrod"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path: Path, case: str) -> None:
    files, env, args, words = CASES[case]
    (tmp_path / "prog.py").write_text(GOOD)
    (tmp_path / "pkgdir").mkdir()
    shutil.copy(shutil.which("true") or "/bin/true", tmp_path / "true.bin")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    proc = run_cli(args, tmp_path, env=env)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.startswith("flowagent: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, (word, err)
    assert proc.stdout == b""
    assert not (tmp_path / "ran").exists()  # the program was not started
    assert not (tmp_path / ".flowagent").exists()  # nor was a run


def test_directory_as_a_program_is_refused_before_any_run(tmp_path: Path) -> None:
    # (bug 13: a sidecar was started and a run created before "Permission denied")
    (tmp_path / "pkgdir").mkdir()
    proc = run_cli(["run", "--", "./pkgdir"], tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err.count("\n") == 1 and "pkgdir" in err
    assert not (tmp_path / ".flowagent").exists(), err


def test_script_from_a_pipe_runs_as_under_python(tmp_path: Path) -> None:
    # (bug 14: "no such script '/dev/stdin'"; now read as it comes, and recorded)
    script = b"def hello():\n    print('from a pipe')\n\nhello()\n"
    plain = run_python(["/dev/stdin"], tmp_path, input=script)
    fa = run_cli(["run", "--data-dir", str(tmp_path / "d"), "/dev/stdin"], tmp_path,
                 input=script)
    assert plain.returncode == 0 and plain.stdout == b"from a pipe\n"
    assert (fa.returncode, fa.stdout) == (plain.returncode, plain.stdout), fa.stderr
    assert b"1 sessions, 1 calls" in fa.stderr, fa.stderr


def test_directory_with_main_runs_as_under_python(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__main__.py").write_text(
        "import sys\n\ndef main():\n    print('app', sys.argv[1:])\n    return 4\n\n"
        "sys.exit(main())\n")
    plain = run_python(["app", "x"], tmp_path)
    fa = run_cli(["run", "--data-dir", str(tmp_path / "d"), "app", "x"], tmp_path)
    assert (fa.returncode, fa.stdout) == (plain.returncode, plain.stdout) == (4, b"app ['x']\n")
