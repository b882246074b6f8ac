"""End-to-end: ``flowagent run --verbose`` says which recorder twin records, and why."""

from __future__ import annotations

import pytest

from helpers import PURE, record

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("pure", [False, True], ids=["default", "pure"])
def test_verbose_run_names_the_hot_path(tmp_path, pure: bool) -> None:
    from flowagent.agent import recorder

    rec = record("def f():\n    return 1\n\nprint(f())\n", tmp_path, options=["--verbose"],
                 env={PURE: "1" if pure else ""})
    assert rec.stdout == "1\n"
    if pure:
        expected = "recorder hot path: pure Python (FLOWAGENT_PURE is set)"
    else:
        expected = f"recorder hot path: {recorder.HOT_PATH}"
    assert expected in rec.stderr, rec.stderr
    assert rec.call(":f")["output_shape"] == "int"
