"""The names the instrumented code calls its helpers by, without the instrumenter.

A cached instrumented module (the common case) is loaded, marked portable and checked by
these names alone: importing :mod:`instrument` would bring ``ast`` into every recorded
process's start for nothing. :mod:`instrument` writes calls to exactly these names (a
test keeps the two equal). A lambda's recorded name is made here too, for the same reason:
the ``monitor`` and ``profile`` backends name lambdas from their code objects.
"""

from __future__ import annotations

HELPERS = ("__fa_call__", "__fa_gcall__", "__fa_ret__", "__fa_own__", "__fa_suspend__",
           "__fa_asuspend__", "__fa_resume__", "__fa_delegate__", "__fa_lcall__", "__fa_lret__",
           "__fa_reenter__")
# The helpers that open a call: a code object naming one of them is instrumented.
OPENERS = ("__fa_call__", "__fa_gcall__", "__fa_lcall__")
# A lambda's code name.
LAMBDA = "<lambda>"

# Comprehension scopes in a code object's qualname (Python 3.11 has them all; 3.12 inlines
# list, dict and set comprehensions): not part of a lambda's name on any version. Removed
# without `re` (which with `enum` would load into every recorded process's start), left to
# right as `re.sub` does.
_COMPREHENSIONS = ("<listcomp>.", "<dictcomp>.", "<setcomp>.", "<genexpr>.")


def _without_comprehensions(qualname: str) -> str:
    if "<" not in qualname:
        return qualname
    out: list[str] = []
    i = start = 0
    while (i := qualname.find("<", i)) >= 0:
        scope = next((c for c in _COMPREHENSIONS if qualname.startswith(c, i)), None)
        if scope is None:
            i += 1
            continue
        out.append(qualname[start:i])
        i = start = i + len(scope)
    out.append(qualname[start:])
    return "".join(out)


def lambda_qualname(qualname: str, line: int) -> str:
    """A lambda's recorded name: where it is defined, as a nested function's (``outer.<locals>.
    <lambda>``), and its line, which keeps two lambdas of one scope apart (``@12``)."""
    return f"{_without_comprehensions(qualname)}@{line}"
