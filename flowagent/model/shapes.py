"""How a stored input shape decodes.

The store keeps a call's input shape as the JSON list of its argument shapes in parameter
order (the parameter names are stored once per function, not per call); every reader that
shows or compares inputs turns it back into ``{parameter: shape}`` here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence


def input_shape(params: Sequence[str], text: str) -> dict[str, str]:
    """``["a", "b"]`` and ``'["int", "str"]'`` → ``{"a": "int", "b": "str"}``."""
    return dict(zip(params, json.loads(text)))
