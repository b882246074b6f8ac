"""How a yes/no setting is spelled in the environment and in configuration files.

The launcher's kill switch (``FLOWAGENT_ENABLED``), the configuration layers and the agent's
switches all read the same words, so a value that turns recording off in one place never
turns it on in another. Standard library only: read before anything heavy is imported.
"""

from __future__ import annotations

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def is_true(value: str | None) -> bool:
    """``True`` for one of :data:`TRUE_WORDS` (any case, surrounding blanks ignored)."""
    return value is not None and value.strip().lower() in TRUE_WORDS


def is_false(value: str | None) -> bool:
    """``True`` for one of :data:`FALSE_WORDS` (any case, surrounding blanks ignored)."""
    return value is not None and value.strip().lower() in FALSE_WORDS


def flag(value: str | None, default: bool) -> bool:
    """A switch that is on only when spelled with one of :data:`TRUE_WORDS`; unset or empty
    keeps ``default``."""
    return default if not value else is_true(value)
