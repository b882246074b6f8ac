"""Parts made to keep start-up short that must still agree with what they stand in for: the
sidecar's quick command-line reader with its argparse parser, and the helper names a cached
instrumented module is checked by with the instrumenter's."""

from __future__ import annotations

import pytest

from flowagent.agent import helpernames, instrument
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


def test_the_helper_names_are_the_instrumenters() -> None:
    assert helpernames.HELPERS == instrument.HELPERS
    assert helpernames.OPENERS == instrument.OPENERS
    assert helpernames.LAMBDA == instrument.LAMBDA
