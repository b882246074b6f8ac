"""Command lines as stored: the values of options that look like secrets are masked.

A run's own command line (``flowagent runs``) and the command line of every recorded child
process (``flowagent stats``, the viewer) are stored alike, so both go through
:func:`mask_argv` before they reach the store. What is masked: the value of an option whose
name looks like a secret (``--password X``, ``--api-key=X``, ``-token X``), an environment-style
assignment to such a name (``DB_PASSWORD=X``, as in ``env DB_PASSWORD=X prog``), and the
password of a URL (``postgres://user:X@host``). Everything else is kept as typed: a command line
is structure the user needs to tell runs apart.

Standard library only: the sidecar and the launcher import it.
"""

from __future__ import annotations

import re

MASK = "***"

# Names (of options or variables) that hold secrets, matched anywhere in the name after
# separators are removed: "--db-password", "API_KEY", "--client-secret", "--auth-token".
_SECRET_NAME = re.compile(
    r"(pass(word|wd|phrase)?|pwd|secret|token|api_?key|access_?key|private_?key|"
    r"secret_?key|session_?key|auth|credential|cookie|signature|bearer)$|"
    r"(password|passwd|secret|token|apikey|credential)", re.IGNORECASE)
_OPTION = re.compile(r"^(-{1,2})([A-Za-z][A-Za-z0-9_.-]*)(=(.*))?$", re.DOTALL)
_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)([^/\s@]+)(@)")


def is_secret_name(name: str) -> bool:
    """``--db-password`` / ``DB_PASSWORD`` / ``apiKey``: a name whose value is a secret."""
    flat = re.sub(r"[-.]", "_", name.strip("-")).lower()
    return bool(_SECRET_NAME.search(flat.replace("_", ""))) or bool(_SECRET_NAME.search(flat))


def mask_argv(argv: list[str] | tuple[str, ...]) -> list[str]:
    """``argv`` with secret values replaced by ``***`` (see the module docstring)."""
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if not isinstance(arg, str):
            out.append(arg)
            continue
        if mask_next:
            mask_next = False
            if not arg.startswith("-") or arg == "-":
                out.append(MASK)
                continue
        option = _OPTION.match(arg)
        if option is not None and arg != "--":
            name, value = option.group(2), option.group(4)
            if is_secret_name(name):
                if value is None:
                    mask_next = True  # "--password VALUE": the next word is the value
                    out.append(arg)
                else:
                    out.append(f"{option.group(1)}{name}={MASK}")
                continue
        assign = _ASSIGN.match(arg)
        if assign is not None and is_secret_name(assign.group(1)):
            out.append(f"{assign.group(1)}={MASK}")
            continue
        out.append(_URL_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), arg))
    return out
