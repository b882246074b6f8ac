"""Per-yield cost of the tracer cores, in instructions (``valgrind --tool=callgrind``).

As ``cores_ab.py`` does for calls, for a recorded generator: a loop consumes a generator
that yields N1 and then N2 times, each in a fresh process under callgrind, and
(I(N2) - I(N1)) / (N2 - N1) is what one yield and the resumption after it cost, start-up
and the generator's one call cancelled out. Under ``monitor`` that is a PY_YIELD and a
PY_RESUME event; under ``wrap`` the rewritten body's helpers around the ``yield``.

    .venv312/bin/python benchmarks/yields_ab.py [--n1 2000 --n2 12000] [--root OTHER_BUILD]

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

CORES = ("none", "wrap", "monitor-c", "monitor-py", "cprofile")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n1", type=int, default=2000)
    p.add_argument("--n2", type=int, default=12000)
    p.add_argument("--cores", default=",".join(CORES))
    p.add_argument("--root", default=cores_ab.ROOT, help="the flowagent checkout to measure")
    a = p.parse_args(argv)
    root = os.path.abspath(a.root)
    # The generator is one recorded call (twice, with loop): the child's check that every
    # call was recorded becomes a check that some were.
    child = cores_ab.CHILD.replace("assert got >= n,", "assert got >= 1,")
    assert child != cores_ab.CHILD, "cores_ab's child changed: update the check above"
    cores_ab.CHILD = child
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        moddir = os.path.join(tmp, "mod")
        os.makedirs(moddir)
        with open(os.path.join(moddir, "fa_ab_mod.py"), "w") as f:
            f.write(MODULE)
        for core in a.cores.split(","):
            if core.startswith("monitor") and sys.version_info < (3, 12):
                continue
            i1 = cores_ab.instructions(core, a.n1, True, moddir, tmp, root)
            i2 = cores_ab.instructions(core, a.n2, True, moddir, tmp, root)
            per = None if i1 is None or i2 is None else (i2 - i1) / (a.n2 - a.n1)
            if core == "none":
                base = per
            added = "" if per is None or base is None else f" (added {per - base:,.0f})"
            print(f"{root}: {core} per yield: {per if per is None else f'{per:,.0f}'}{added}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
