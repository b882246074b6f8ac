"""Instructions per web request on the program's thread (``valgrind --tool=callgrind``).

A child process starts the agent in process as ``flowagent run`` would (its ``FLOWAGENT_*``
environment, a ring in a temporary run directory, no sidecar), makes warm-up requests of the
``bench_flask`` mix with Flask's test client, then N1 and, in another child, N2 more; the
collector is paused after the warm-up. Only the main thread is counted
(``--separate-threads=yes``: the flusher's wake-ups follow the clock, and valgrind's slowdown
inflates them), and (I(N2) - I(N1)) / (N2 - N1) is one request with the warm-up, start-up
and the first requests' classifications cancelled out.

    .venv312/bin/python benchmarks/requests_ab.py [--modes plain,monitor,wrap] [--root BUILD]
        [--include bench_flask] [--n1 100 --n2 300] [--keep DIR]

``--http``: over HTTP instead (``main_http``: werkzeug's threaded server in the process),
counting the main thread, which is the client. ``--include`` names what is recorded (``nothing``: only the request roots and the
framework hooks). ``--keep DIR`` keeps the callgrind files (main thread: ``*-01``) to compare
per function with ``callgrind_annotate``. Printed, not saved.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CHILD = textwrap.dedent('''\
    import gc, os, sys
    mode, warm, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if mode != "plain":
        from flowagent.agent import bootstrap
        bootstrap.start()
    import bench_flask
    from bench_flask import service
    from bench_flask.app import create_app
    service.reset()
    client = create_app().test_client()
    requests = bench_flask.plan(warm + n)
    def run(part):
        acc = 0
        for method, path, body in part:
            resp = client.open(path, method=method, json=body)
            acc = bench_flask._fold(acc, resp.status_code, resp.data)
        return acc
    run(requests[:warm])
    gc.collect()
    gc.disable()
    run(requests[warm:])
    if mode != "plain":
        from flowagent.agent import recorder
        assert recorder.S.on, "the agent did not start"
''')

# Over HTTP: the main thread is the client (bench_flask.main_http's loop, a recorded call),
# werkzeug's threaded server answers in other threads, which are not counted.
CHILD_HTTP = textwrap.dedent('''\
    import gc, sys
    mode, warm, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if mode != "plain":
        from flowagent.agent import bootstrap
        bootstrap.start()
    import bench_flask
    bench_flask.main_http(warm)
    gc.collect()
    gc.disable()
    bench_flask.main_http(n)
''')


def instructions(mode: str, warm: int, n: int, root: str, include: str, tmp: str,
                 keep: str | None, http: bool = False) -> int | None:
    run_dir = tempfile.mkdtemp(dir=tmp)
    out = os.path.join(tmp, f"cg.{mode}.{n}{'.http' if http else ''}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWAGENT_")}
    env.update({"PYTHONPATH": os.pathsep.join([root, os.path.join(HERE, "workloads")]),
                "PYTHONHASHSEED": "0", "XDG_CACHE_HOME": os.path.join(tmp, "cache")})
    if mode != "plain":
        env.update({"FLOWAGENT_RUN_DIR": run_dir, "FLOWAGENT_BACKEND": mode,
                    "FLOWAGENT_INCLUDE": f"{include},{include}.*",
                    "FLOWAGENT_ROOTS": os.path.join(HERE, "workloads")})
    child = [sys.executable, "-c", CHILD_HTTP if http else CHILD, mode, str(warm), str(n)]
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--separate-threads=yes",
         f"--callgrind-out-file={out}", *child],
        capture_output=True, text=True, cwd=root, timeout=3600, env=env)
    if proc.returncode != 0:
        sys.stderr.write(f"{mode} n={n}: {proc.stderr.strip().splitlines()[-3:]}\n")
        return None
    main = sorted(glob.glob(out + "-01"))
    if not main:
        return None
    with open(main[0]) as f:
        m = re.search(r"^(?:summary|totals):\s*(\d+)", f.read(), re.M)
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(main[0], os.path.join(keep, os.path.basename(root) + os.path.basename(out)[2:]))
    return int(m.group(1)) if m else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default="plain,monitor,wrap")
    p.add_argument("--root", default=ROOT, help="the flowagent checkout to measure")
    p.add_argument("--include", default="bench_flask")
    p.add_argument("--warm", type=int, default=100)
    p.add_argument("--n1", type=int, default=100)
    p.add_argument("--n2", type=int, default=300)
    p.add_argument("--keep", default=None)
    p.add_argument("--http", action="store_true",
                   help="over HTTP: count the client's thread (main_http's loop)")
    a = p.parse_args(argv)
    root = os.path.abspath(a.root)
    with tempfile.TemporaryDirectory() as tmp:
        for mode in a.modes.split(","):
            i1 = instructions(mode, a.warm, a.n1, root, a.include, tmp, a.keep, a.http)
            i2 = instructions(mode, a.warm, a.n2, root, a.include, tmp, a.keep, a.http)
            per = None if i1 is None or i2 is None else (i2 - i1) / (a.n2 - a.n1)
            where = "client thread, per request over HTTP" if a.http else "per request"
            print(f"{root}: {mode} include={a.include} {where}: "
                  f"{per if per is None else f'{per:,.0f}'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
