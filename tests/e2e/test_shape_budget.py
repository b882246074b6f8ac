"""End-to-end: the shape budget, and ``shape_every_call`` turning it off (both twins, and the
other backends, through the real launcher).

A hot function sees a ``str`` exactly once, at its 50th call: with the budget (the first 16
calls, then one in 16) that call is recorded without shapes; with ``--shape-every-call`` every
call carries its shapes, so the odd one is found.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import record

pytestmark = pytest.mark.e2e

PROG = """
    def hot(value):
        return value


    def main():
        for i in range(100):
            hot("odd" if i == 49 else i)


    main()
"""


def _hot_inputs(tmp_path: Path, backend: str, options: list[str]) -> list[object]:
    rec = record(PROG, tmp_path, backend=backend, options=options)
    calls = rec.calls(":hot")
    assert len(calls) == 100  # every call is recorded either way; only shapes are sampled
    return [c["input_shape"] for c in calls]


def test_budget_samples_shapes_of_a_hot_function(tmp_path: Path, backend: str) -> None:
    shapes = _hot_inputs(tmp_path, backend, [])
    described = [s for s in shapes if s is not None]
    assert 16 <= len(described) < 100
    assert {"value": "str"} not in described


def test_shape_every_call_describes_every_call(tmp_path: Path, backend: str) -> None:
    shapes = _hot_inputs(tmp_path, backend, ["--shape-every-call"])
    assert None not in shapes
    assert shapes.count({"value": "str"}) == 1 and shapes.count({"value": "int"}) == 99
