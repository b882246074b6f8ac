"""Where a recorded call's wall time goes: a quick interleaved A/B of a few modes.

``run.py --cores`` is the full measurement (30 minutes and more on a loaded machine). This
runs a chosen set of modes of one workload in fresh processes, round-robin (A B C A B C ...),
and prints per mode the median time inside ``main()``, the process CPU time in the same span
(all threads: the recorder's flusher included), and both as ratios to the baseline of the
same round. Extra modes:

- ``fa_agent_only`` (from modes.py) — the agent in the program without the launcher and the
  sidecar: the difference to ``fa_wrap`` is what a concurrently draining sidecar costs the
  program on this machine (CPU it takes from the program's cores).
- ``old:MODE`` — MODE with ``--old DIR`` first on PYTHONPATH: a checkout of another revision
  with its extension built in place, for an A/B of two builds in the same run
  (``git archive REV | tar -x -C DIR && cd DIR && python setup.py build_ext --inplace``).

    .venv312/bin/python benchmarks/percall_ab.py --workload calls --rounds 5 \
        baseline fa_agent_only fa_wrap cprofile viztracer
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from modes import MODES, WORKLOADS, Ctx  # noqa: E402

_RESULT = re.compile(r"elapsed_ns=(\d+) cpu_ns=(\d+)")


def run_once(mode: str, workload: str, n: int | None, old: str | None) -> tuple[int, int]:
    """One fresh process of MODE: (elapsed ns, CPU ns) measured inside ``main()``."""
    key = mode.split(":", 1)[-1]
    with tempfile.TemporaryDirectory(prefix="fa-ab-") as tmp:
        argv, env = MODES[key].build(Ctx(WORKLOADS[workload], n, tmp))
        full = {**os.environ, **env}
        if mode.startswith("old:"):
            if not old:
                raise SystemExit("percall_ab: an old: mode needs --old DIR")
            full["PYTHONPATH"] = os.pathsep.join(
                p for p in (old, full.get("PYTHONPATH", "")) if p)
        out = subprocess.run(argv, env=full, capture_output=True, text=True, timeout=900,
                             cwd=HERE)
    m = _RESULT.search(out.stdout)
    if out.returncode != 0 or m is None:
        raise SystemExit(f"percall_ab: {mode} failed ({out.returncode}): "
                         f"{out.stderr.strip()[-800:]}")
    return int(m.group(1)), int(m.group(2))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("modes", nargs="+", help="mode keys of modes.py, or old:KEY")
    p.add_argument("--workload", default="calls", choices=sorted(WORKLOADS))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n", type=int, default=None, help="workload size (default: full)")
    p.add_argument("--old", default=None, help="directory of another build (old: modes)")
    a = p.parse_args(argv)
    modes = a.modes if "baseline" in a.modes else ["baseline", *a.modes]
    rows: dict[str, list[tuple[int, int]]] = {m: [] for m in modes}
    for r in range(a.rounds):
        for m in modes:
            rows[m].append(run_once(m, a.workload, a.n, a.old))
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    base = rows["baseline"]
    print(f"{a.workload}, {a.rounds} interleaved rounds, load {os.getloadavg()[0]:.1f}")
    print(f"{'mode':24} {'wall ms':>9} {'cpu ms':>9} {'wall ratio':>11} {'cpu ratio':>10}")
    for m in modes:
        wall = statistics.median(e for e, _ in rows[m]) / 1e6
        cpu = statistics.median(c for _, c in rows[m]) / 1e6
        wr = statistics.median(e / b[0] for (e, _), b in zip(rows[m], base))
        cr = statistics.median(c / b[1] for (_, c), b in zip(rows[m], base))
        print(f"{m:24} {wall:9.1f} {cpu:9.1f} {wr:10.2f}x {cr:9.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
