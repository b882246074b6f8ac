"""The names the instrumented code calls its helpers by, without the instrumenter.

A cached instrumented module (the common case) is loaded, marked portable and checked by
these names alone: importing :mod:`instrument` would bring ``ast`` into every recorded
process's start for nothing. :mod:`instrument` writes calls to exactly these names (a
test keeps the two equal).
"""

from __future__ import annotations

HELPERS = ("__fa_call__", "__fa_gcall__", "__fa_ret__", "__fa_own__", "__fa_suspend__",
           "__fa_asuspend__", "__fa_resume__", "__fa_delegate__", "__fa_lcall__", "__fa_lret__",
           "__fa_reenter__")
# The helpers that open a call: a code object naming one of them is instrumented.
OPENERS = ("__fa_call__", "__fa_gcall__", "__fa_lcall__")
# A lambda's code name.
LAMBDA = "<lambda>"
