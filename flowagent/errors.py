"""The project's own exception family.

Every message says what went wrong *and* what to do next. The CLI's single exit point turns a
:class:`FlowagentError` into one line on stderr and exit status 2; the recorded program's own
exit status is always passed through untouched.
"""

from __future__ import annotations


class FlowagentError(Exception):
    """Base class: a problem with flowagent's own input, configuration or data."""

    exit_code = 2


class ConfigError(FlowagentError):
    """Bad configuration: unknown key, bad value, bad glob, unreadable TOML."""


class UsageError(FlowagentError):
    """Bad command line: missing target, unknown option, conflicting options."""


class TargetError(FlowagentError):
    """The program to run cannot be found or is not something Python can run."""


class StoreError(FlowagentError):
    """The data directory or its database cannot be used."""


class NotFoundError(FlowagentError):
    """A run, session or other id named by the user does not exist in the store."""


class StoreDamagedError(StoreError):
    """The database file exists but is not a readable flowagent store (corrupt, truncated,
    overwritten): nothing reads from it or writes into it."""
