"""Analyses of recorded shapes, run by the CLI and the sidecar (never inside the recorded program).

* :mod:`~flowagent.analysis.shapetree`: shape text ⇄ tree, and merging the variants one
  function saw into one shape with optional record fields;
* :mod:`~flowagent.analysis.drift`: where and when a function's shapes changed;
* :mod:`~flowagent.analysis.stubs`: ``.pyi`` stubs from the observed shapes.

All are pure functions over plain strings and numbers, standard library only.
"""

from __future__ import annotations

from flowagent.analysis.drift import DriftEvent, Variant, drift, input_drift
from flowagent.analysis.shapetree import (
    MergedShape, Shape, ShapeSyntaxError, merge_inputs, merge_shapes, parse, render,
)
from flowagent.analysis.stubs import FunctionShapes, generate_stubs

__all__ = [
    "DriftEvent", "FunctionShapes", "MergedShape", "Shape", "ShapeSyntaxError", "Variant",
    "drift", "generate_stubs", "input_drift", "merge_inputs", "merge_shapes", "parse", "render",
]
