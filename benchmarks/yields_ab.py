"""Per-yield cost of the tracer cores, in instructions (``valgrind --tool=callgrind``).

As ``cores_ab.py`` does for calls, for a recorded generator: a loop consumes a generator
that yields N1 and then N2 times, each in a fresh process under callgrind, and
(I(N2) - I(N1)) / (N2 - N1) is what one yield and the resumption after it cost, start-up
and the generator's one call cancelled out. Under ``monitor`` that is a PY_YIELD and a
PY_RESUME event; under ``wrap`` the rewritten body's helpers around the ``yield``.

    .venv312/bin/python benchmarks/yields_ab.py [--n1 2000 --n2 12000] [--root OTHER_BUILD]

``--pygments``: the same difference for a real generator-heavy program instead, Pygments
highlighting the standard library's ``_pydecimal.py`` to HTML (its lexer yields each token;
the ``pygments`` package recorded): instructions per highlighting of the whole file, from one
and two highlightings in a process (``--n1 1 --n2 2`` are implied).

Printed, not saved (figures worth keeping go into ``results/requests.md`` by hand).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cores_ab  # noqa: E402  (the child and its callgrind run are the same)

MODULE = textwrap.dedent('''\
    def tokens(n):
        for i in range(n):
            yield i

    def loop(n):
        t = 0
        for v in tokens(n):
            t += v
        return t
''')

PYGMENTS = textwrap.dedent('''\
    import os

    def loop(n):
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
        with open(os.path.join(os.path.dirname(os.__file__), "_pydecimal.py")) as f:
            text = f.read()
        for _ in range(n):
            highlight(text, PythonLexer(), HtmlFormatter(full=True))
''')

CORES = ("none", "wrap", "monitor-c", "monitor-py", "cprofile")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n1", type=int, default=2000)
    p.add_argument("--n2", type=int, default=12000)
    p.add_argument("--cores", default=",".join(CORES))
    p.add_argument("--root", default=cores_ab.ROOT, help="the flowagent checkout to measure")
    p.add_argument("--pygments", action="store_true",
                   help="per highlighting of _pydecimal.py by Pygments, not per yield")
    a = p.parse_args(argv)
    if a.pygments:
        a.n1, a.n2 = 1, 2
    root = os.path.abspath(a.root)
    # The generator is one recorded call (twice, with loop): the child's check that every
    # call was recorded becomes a check that some were.
    child = cores_ab.CHILD.replace("assert got >= n,", "assert got >= 1,")
    assert child != cores_ab.CHILD, "cores_ab's child changed: update the check above"
    if a.pygments:
        sel = '("fa_ab_mod",) if selected'
        child = child.replace(sel, '("fa_ab_mod", "pygments", "pygments.*") if selected')
        assert sel not in child, "cores_ab's child changed: update the selection above"
    cores_ab.CHILD = child
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        moddir = os.path.join(tmp, "mod")
        os.makedirs(moddir)
        with open(os.path.join(moddir, "fa_ab_mod.py"), "w") as f:
            f.write(PYGMENTS if a.pygments else MODULE)
        for core in a.cores.split(","):
            if core.startswith("monitor") and sys.version_info < (3, 12):
                continue
            i1 = cores_ab.instructions(core, a.n1, True, moddir, tmp, root)
            i2 = cores_ab.instructions(core, a.n2, True, moddir, tmp, root)
            per = None if i1 is None or i2 is None else (i2 - i1) / (a.n2 - a.n1)
            if core == "none":
                base = per
            added = "" if per is None or base is None else f" (added {per - base:,.0f})"
            unit = "per highlighting" if a.pygments else "per yield"
            print(f"{root}: {core} {unit}: {per if per is None else f'{per:,.0f}'}{added}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
