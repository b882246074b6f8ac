"""What ``flowagent run`` adds to a program that does nothing:
``python startup.py [N] [--before DIR]``.

Every variant runs N times (default 15), interleaved, in the same minute; the median and the
minimum wall time of each are kept (start-up is a fixed cost: the minimum is the cost, the
median what a loaded machine makes of it):

* ``plain``: ``python pass.py`` (a script holding ``pass``; ``python -c pass`` costs the
  same, and ``flowagent run`` takes scripts);
* ``python_c`` and ``no_site``: ``python -c pass`` and ``python -S -c pass``: the floor. The
  launcher is a console script, one more interpreter start of this Python with its ``site``
  (``python_c``); ``no_site`` shows what of that is the environment's ``.pth`` files;
* ``enabled``: ``flowagent run pass.py`` (the console script next to the interpreter, as
  users run it; ``python -m flowagent`` where there is none) until it returns (launcher,
  program with the agent, sidecar start and finish, summary);
* ``disabled``: the same with the production switch off (``FLOWAGENT_ENABLED=0``): the
  launcher only, which becomes the program;
* ``small`` / ``small_enabled``: a small real program (a script importing a module of its
  own directory and calling its functions 400 times) plain and under ``flowagent run``;

and the parts of ``enabled``, each on its own:

* ``launcher_exec``: ``disabled`` minus ``plain``: the launcher's interpreter and imports;
  ``disabled_over_floor``: that minus ``python_c``, what the launcher adds to its own
  interpreter's start (the switch read, the command line split, the ``exec``);
* ``program_agent``: ``python pass.py`` with the environment ``flowagent run`` gives its
  program (captured from a real run; the run directory kept, no sidecar): the agent's
  bootstrap inside the program through ``sitecustomize``;
* ``program_kill_switch``: the same with ``FLOWAGENT_ENABLED=0``: what ``sitecustomize``
  costs a program whose recording is switched off;
* ``sidecar``: ``python -m flowagent.sidecar --once`` on an empty run: its interpreter,
  store and end of run, which the launcher waits for after the program.

``--before DIR`` also runs ``enabled``, ``disabled``, ``small_enabled``, ``program_agent`` and
``sidecar`` with ``DIR`` (a copy of another version's ``flowagent/`` and ``sitecustomize/``,
its C extension built) first on ``PYTHONPATH``, as ``*_before``: the previous code,
interleaved with this one.

Prints one JSON line: the median and minimum seconds of each, the milliseconds each adds
to its plain baseline (``added_ms``: medians; ``min_added_ms``: minimums) and the ratios;
the same for the CPU time of the processes each run started (``cpu_*``: on a loaded
machine the wall figures grow with the load, the CPU ones far less), and the load average
it ran at.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

PY = sys.executable


def _env(**extra: str) -> dict[str, str]:
    # Bytecode caches written and used, as in any installed Python (a first round, not
    # counted, writes what is missing).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FLOWAGENT_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _adopt_orphans() -> None:
    """Become the subreaper of what the runs leave behind: the launcher returns once the
    sidecar's summary is read, without waiting for the sidecar's exit, so the sidecar ends
    as an orphan; adopted here, its CPU time is still counted (Linux; elsewhere it is not)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _reap_orphans() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _time(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """Wall seconds until it returned, and the CPU seconds of every process it started
    (what a loaded machine inflates far less than the wall time)."""
    cpu = _children_cpu()
    t = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=120)
    took = time.perf_counter() - t
    _reap_orphans()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return took, _children_cpu() - cpu


def _program_env(tmp: str) -> dict[str, str]:
    """The environment ``flowagent run`` gives its program, from a real run."""
    dump = os.path.join(tmp, "env.py")
    with open(dump, "w") as f:
        f.write("import json, os, sys\n"
                "json.dump(dict(os.environ), open(sys.argv[1], 'w'))\n")
    out = os.path.join(tmp, "env.json")
    subprocess.run([PY, "-m", "flowagent", "run", "--data-dir", os.path.join(tmp, "envrun"),
                    dump, out], env=_env(), cwd=tmp, check=True, capture_output=True,
                   timeout=120)
    with open(out) as f:
        env = json.load(f)
    os.makedirs(os.path.join(env["FLOWAGENT_RUN_DIR"], "rings"), exist_ok=True)
    return env


SMALL_MODULE = """\
def parse(line):
    key, _, value = line.partition("=")
    return {"key": key.strip(), "value": int(value)}


def total(items):
    return sum(item["value"] for item in items)


def report(lines):
    items = [parse(line) for line in lines]
    return {"n": len(items), "total": total(items)}
"""
SMALL_MAIN = """\
import smallmod

print(smallmod.report([f"k{i} = {i}" for i in range(400)]))
"""

# The variant whose time each one's added milliseconds are counted from.
BASELINE = {"small_enabled": "small", "small_enabled_before": "small"}
# Measured on their own, not against a baseline.
_ABSOLUTE = ("plain", "small", "sidecar", "sidecar_before", "python_c", "no_site")


def _write(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return path


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description="What flowagent run adds to a program that "
                                     "does nothing (see this file's docstring).")
    parser.add_argument("n", nargs="?", type=int, default=15, help="runs of each variant")
    parser.add_argument("--before", default="", metavar="DIR",
                        help="a checkout of other code, measured in the same minutes")
    opts = parser.parse_args()
    n = opts.n
    before = os.path.abspath(opts.before) if opts.before else ""
    _adopt_orphans()
    tmp = tempfile.mkdtemp(prefix="fa-startup-")
    try:
        script = _write(os.path.join(tmp, "pass.py"), "pass\n")
        _write(os.path.join(tmp, "smallmod.py"), SMALL_MODULE)
        small = _write(os.path.join(tmp, "small.py"), SMALL_MAIN)
        data = os.path.join(tmp, "data")
        agent_env = _program_env(tmp)
        sidecar_run = os.path.join(tmp, "sidecar-run")
        console = os.path.join(os.path.dirname(PY), "flowagent")
        launcher = [console] if os.access(console, os.X_OK) else [PY, "-m", "flowagent"]
        run = [*launcher, "run", "--data-dir", data]
        variants = {
            "plain": ([PY, script], _env()),
            "python_c": ([PY, "-c", "pass"], _env()),
            "no_site": ([PY, "-S", "-c", "pass"], _env()),
            "enabled": ([*run, script], _env()),
            "disabled": ([*run, script], _env(FLOWAGENT_ENABLED="0")),
            "small": ([PY, small], _env()),
            "small_enabled": ([*run, small], _env()),
            "program_agent": ([PY, script], agent_env),
            "program_kill_switch": ([PY, script], dict(agent_env, FLOWAGENT_ENABLED="0")),
        }
        if before:
            path = os.pathsep.join(p for p in (before, os.environ.get("PYTHONPATH")) if p)
            variants.update({
                "enabled_before": ([*run, script], _env(PYTHONPATH=path)),
                "disabled_before": ([*run, script], _env(PYTHONPATH=path,
                                                         FLOWAGENT_ENABLED="0")),
                "small_enabled_before": ([*run, small], _env(PYTHONPATH=path)),
                "program_agent_before": ([PY, script], dict(agent_env, PYTHONPATH=os.pathsep.join(
                    (os.path.join(before, "sitecustomize"), before)))),
            })
        sidecars = {"sidecar": _env(FLOWAGENT_ENABLED="0")}
        if before:
            sidecars["sidecar_before"] = _env(FLOWAGENT_ENABLED="0", PYTHONPATH=path)
        names = (*variants, *sidecars)
        wall: dict[str, list[float]] = {k: [] for k in names}
        cpu: dict[str, list[float]] = {k: [] for k in names}

        def keep(name: str, took: tuple[float, float]) -> None:
            wall[name].append(took[0])
            cpu[name].append(took[1])

        for i in range(-1, n):
            if i == 0:  # the first round wrote the bytecode caches: start counting now
                for k in names:
                    wall[k].clear()
                    cpu[k].clear()
            for name, (argv, env) in variants.items():
                keep(name, _time(argv, env, tmp))
            for name, env in sidecars.items():
                shutil.rmtree(sidecar_run, ignore_errors=True)
                os.makedirs(os.path.join(sidecar_run, "rings"))
                keep(name, _time(
                    [PY, "-m", "flowagent.sidecar", "--once", "--run-dir", sidecar_run, "--db",
                     os.path.join(sidecar_run, "flowagent.db"), "--run-id", f"startup-{i}"],
                    env, tmp))
            if i % 5 == 4:
                shutil.rmtree(data, ignore_errors=True)  # runs pile up: keep the store small
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def added(m: dict[str, float]) -> dict[str, float]:
        out = {k: round((v - m[BASELINE.get(k, "plain")]) * 1000, 1) for k, v in m.items()
               if k not in _ABSOLUTE}
        out["launcher_exec"] = round((m["disabled"] - m["plain"]) * 1000, 1)
        out["disabled_over_floor"] = round((m["disabled"] - m["plain"] - m["python_c"]) * 1000,
                                           1)
        out["floor_python_c"] = round(m["python_c"] * 1000, 1)
        out["floor_no_site"] = round(m["no_site"] * 1000, 1)
        for k in ("sidecar", "sidecar_before"):
            if k in m:
                out[k] = round(m[k] * 1000, 1)
        return out

    med = {k: _median(v) for k, v in wall.items()}
    low = {k: min(v) for k, v in wall.items()}
    cpu_med = {k: _median(v) for k, v in cpu.items()}
    cpu_low = {k: min(v) for k, v in cpu.items()}
    print(json.dumps({
        "runs": n, "load": os.getloadavg()[0],
        "median_s": med, "added_ms": added(med),
        "min_s": low, "min_added_ms": added(low),
        "ratio": {k: round(v / med[BASELINE.get(k, "plain")], 2) for k, v in med.items()
                  if k not in ("plain", "small", "python_c", "no_site")},
        "cpu_median_s": cpu_med, "cpu_added_ms": added(cpu_med),
        "cpu_min_added_ms": added(cpu_low),
        "targets_ms": {"enabled": 50, "disabled": 5}}))


if __name__ == "__main__":
    main()
