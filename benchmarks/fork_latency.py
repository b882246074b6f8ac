"""Fork latency while threads record: ``os.fork()`` in the main thread of a program whose
other threads call recorded functions flat out, plainly and under every backend, in one run.

    .venv/bin/python benchmarks/fork_latency.py [--forks 40] [--threads 4] [--rounds 1]
                                                [--only MODE] [--baseline CHECKOUT]

Each mode runs the same program (``--threads`` threads looping over small recorded
functions, the main thread forking ``--forks`` times; the child ends at once with
``os._exit``). The latency is the time ``os.fork()`` takes to return in the parent. Printed:
p50 and p99 per mode and their ratio to plain Python measured in the same run (the machine
is shared: absolute times move with its load, ratios much less). ``--baseline`` measures the
agent's modes a second time with flowagent imported from another checkout (e.g. a worktree
of the commit before a change), interleaved with this one's, shown as ``MODE@base``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PROGRAM = textwrap.dedent("""
    import json, os, sys, threading, time

    def leaf(i):
        return i

    def work(k):
        return sum(leaf(i) for i in range(k))

    def loop(stop):
        while not stop.is_set():
            work(50)

    def main(forks, threads):
        stop = threading.Event()
        ts = [threading.Thread(target=loop, args=(stop,)) for _ in range(threads)]
        for t in ts:
            t.start()
        time.sleep(0.2)  # the threads are recording (and the flusher flushing) by now
        took = []
        for _ in range(forks):
            t0 = time.perf_counter()
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            took.append(time.perf_counter() - t0)
            os.waitpid(pid, 0)
            time.sleep(0.01)
        stop.set()
        for t in ts:
            t.join()
        sys.stdout.write(json.dumps(took) + "\\n")

    main(int(sys.argv[1]), int(sys.argv[2]))
""")


def backends() -> list[str]:
    return ["wrap", "wrap-pure", "profile"] + (["monitor"] if sys.version_info >= (3, 12)
                                               else [])


def run_mode(mode: str, work: Path, forks: int, threads: int,
             baseline: str | None = None) -> list[float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWAGENT_")}
    if baseline:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [baseline, env.get("PYTHONPATH")]))
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"  # 3.12's multi-threaded fork warning
    args = ["prog.py", str(forks), str(threads)]
    if mode == "plain":
        argv = [sys.executable, *args]
    else:
        env["FLOWAGENT_PURE"] = "1" if mode == "wrap-pure" else "0"
        backend = "wrap" if mode == "wrap-pure" else mode
        argv = [sys.executable, "-m", "flowagent", "run", "--data-dir", str(work / "data"),
                "--backend", backend, *args]
    out = subprocess.run(argv, cwd=work, env=env, capture_output=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"{mode}: exit {out.returncode}\n{out.stderr.decode(errors='replace')}")
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--forks", type=int, default=40)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1,
                    help="runs per mode, interleaved (latencies pooled)")
    ap.add_argument("--only", action="append", default=[], choices=backends(),
                    help="measure only this backend (repeatable); plain is always measured")
    ap.add_argument("--baseline", metavar="CHECKOUT",
                    help="also measure the agent's modes with flowagent from this checkout")
    opts = ap.parse_args()
    agent_modes = opts.only or backends()
    modes = ["plain", *agent_modes]
    if opts.baseline:
        base = str(Path(opts.baseline).resolve())
        if not (Path(base) / "flowagent" / "__init__.py").is_file():
            raise SystemExit(f"--baseline {opts.baseline}: not a flowagent checkout "
                             "(no flowagent/__init__.py); give the directory holding it")
        modes += [f"{m}@base" for m in agent_modes]
    took: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="fa-fork-") as tmp:
        work = Path(tmp)
        (work / "prog.py").write_text(PROGRAM)
        for _ in range(opts.rounds):
            for m in modes:
                mode, _, at = m.partition("@")
                took[m] += run_mode(mode, work, opts.forks, opts.threads,
                                    base if at else None)
    base50 = statistics.median(took["plain"])
    base99 = pct(took["plain"], 0.99)
    print(f"fork latency, {opts.threads} threads recording, {opts.forks} forks x "
          f"{opts.rounds} round(s), Python {sys.version.split()[0]}")
    print(f"{'mode':<15} {'p50 ms':>9} {'p99 ms':>9} {'p50 ratio':>10} {'p99 ratio':>10}")
    for m in modes:
        p50, p99 = statistics.median(took[m]), pct(took[m], 0.99)
        print(f"{m:<15} {p50 * 1e3:9.2f} {p99 * 1e3:9.2f} {p50 / base50:10.1f} "
              f"{p99 / base99:10.1f}")


if __name__ == "__main__":
    main()
