"""What ``flowagent run`` adds to a program that does nothing: ``python startup.py [N]``.

Every variant runs N times (default 15), interleaved, in the same minute, and the minimum
wall time of each is kept (start-up is a fixed cost: the minimum is the cost, the rest is
the machine's load):

* ``plain``: ``python pass.py`` (a script holding ``pass``; ``python -c pass`` costs the
  same, and ``flowagent run`` takes scripts);
* ``enabled``: ``python -m flowagent run pass.py`` until it returns (launcher, program with
  the agent, sidecar start and finish, summary);
* ``disabled``: the same with the production switch off (``FLOWAGENT_ENABLED=0``): the
  launcher only, which becomes the program;

and the parts of ``enabled``, each on its own:

* ``launcher_exec``: ``disabled`` minus ``plain``: the launcher's interpreter and imports;
* ``program_agent``: ``python pass.py`` with the environment ``flowagent run`` gives its
  program (captured from a real run; the run directory kept, no sidecar): the agent's
  bootstrap inside the program through ``sitecustomize``;
* ``program_kill_switch``: the same with ``FLOWAGENT_ENABLED=0``: what ``sitecustomize``
  costs a program whose recording is switched off;
* ``sidecar``: ``python -m flowagent.sidecar --once`` on an empty run: its interpreter,
  store and end of run, which the launcher waits for after the program.

Prints one JSON line: the minimum seconds of each, the milliseconds each adds to ``plain``
and the ratios to it; the same for the CPU time of the processes each run waited for
(``cpu_*``: on a loaded machine the wall figures grow with the load, the CPU ones far less),
and the load average it ran at.
"""

from __future__ import annotations

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


def _time(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """Wall seconds until it returned, and the CPU seconds of every process it waited for
    (what a loaded machine inflates far less than the wall time)."""
    cpu = _children_cpu()
    t = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=120)
    took = time.perf_counter() - t
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


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    tmp = tempfile.mkdtemp(prefix="fa-startup-")
    try:
        script = os.path.join(tmp, "pass.py")
        with open(script, "w") as f:
            f.write("pass\n")
        data = os.path.join(tmp, "data")
        agent_env = _program_env(tmp)
        sidecar_run = os.path.join(tmp, "sidecar-run")
        variants = {
            "plain": ([PY, script], _env()),
            "enabled": ([PY, "-m", "flowagent", "run", "--data-dir", data, script], _env()),
            "disabled": ([PY, "-m", "flowagent", "run", "--data-dir", data, script],
                         _env(FLOWAGENT_ENABLED="0")),
            "program_agent": ([PY, script], agent_env),
            "program_kill_switch": ([PY, script], dict(agent_env, FLOWAGENT_ENABLED="0")),
        }
        best = {k: float("inf") for k in (*variants, "sidecar")}
        cpu = dict(best)

        def keep(name: str, took: tuple[float, float]) -> None:
            best[name] = min(best[name], took[0])
            cpu[name] = min(cpu[name], took[1])

        for i in range(-1, n):
            if i == 0:  # the first round wrote the bytecode caches: start counting now
                best = {k: float("inf") for k in best}
                cpu = dict(best)
            for name, (argv, env) in variants.items():
                keep(name, _time(argv, env, tmp))
            shutil.rmtree(sidecar_run, ignore_errors=True)
            os.makedirs(os.path.join(sidecar_run, "rings"))
            keep("sidecar", _time(
                [PY, "-m", "flowagent.sidecar", "--once", "--run-dir", sidecar_run, "--db",
                 os.path.join(sidecar_run, "flowagent.db"), "--run-id", f"startup-{i}"],
                _env(FLOWAGENT_ENABLED="0"), tmp))
            if i % 5 == 4:
                shutil.rmtree(data, ignore_errors=True)  # runs pile up: keep the store small
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    def added(m: dict[str, float]) -> dict[str, float]:
        plain = m["plain"]
        return {k: round((v - plain) * 1000, 1) for k, v in m.items()
                if k not in ("plain", "sidecar")} | {
            "launcher_exec": round((m["disabled"] - plain) * 1000, 1),
            "sidecar": round(m["sidecar"] * 1000, 1)}

    print(json.dumps({
        "runs": n, "load": os.getloadavg()[0], "min_s": best, "added_ms": added(best),
        "ratio": {k: round(v / best["plain"], 2) for k, v in best.items() if k != "plain"},
        "cpu_min_s": cpu, "cpu_added_ms": added(cpu),
        "targets_ms": {"enabled": 50, "disabled": 5}}))


if __name__ == "__main__":
    main()
