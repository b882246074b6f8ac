"""Instructions each part of ``flowagent run`` executes at start-up, counted by valgrind:
``python startup_instructions.py [--before DIR]``.

A loaded machine inflates wall and CPU times alike (``startup.py`` reports both, and at a
load average of 10+ on two cores their medians move by tens of milliseconds from run to
run); the number of instructions a process executes does not depend on the load. Each part
runs once under ``valgrind --tool=cachegrind --cache-sim=no`` with ``PYTHONHASHSEED=0``,
after one run without valgrind that writes the bytecode caches:

* ``python_c`` and ``plain``: ``python -c pass`` and ``python pass.py``, the floor;
* ``program_agent``: ``python pass.py`` with the environment ``flowagent run`` gives its
  program (the agent's bootstrap inside the program, no launcher, no sidecar);
* ``sidecar``: ``python -m flowagent.sidecar --once`` storing an empty run into an existing
  store (its interpreter, its imports, the store opened, the run's rows, the end of run);
  ``sidecar_service``: the same with ``--service``, as ``flowagent run`` starts it (every run
  has a service), with the thread that polls the service's fleet row;
* ``launcher``: ``python -m flowagent run pass.py``, the launcher's own process only (the
  sidecar and the program it starts run without valgrind), and ``launcher_until_program``:
  what it executed before it started the program, read where it forks the process-group
  holder (a forked child's count starts from its parent's), which it does right before the
  program when it runs without a terminal, as here.

The switched-off launcher is not counted: valgrind loses a process's count when it ``exec``s
(``startup.py``'s ``disabled_over_floor`` is its measure).

``--before DIR`` counts the same parts with ``DIR`` (another version's ``flowagent/`` and
``sitecustomize/``, its C extension built) first on ``PYTHONPATH``. Prints one JSON line:
millions of instructions per part, and each part over its floor (``python pass.py``).
Needs valgrind; a run takes a few minutes (every process runs ~50x slower under it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

PY = sys.executable
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from startup import _program_env as startup_program_env  # noqa: E402


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FLOWAGENT_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONHASHSEED"] = "0"  # the same set and dict layouts in every run
    env.update(extra)
    return env


def _count(argv: list[str], env: dict[str, str], cwd: str,
           warm: list[str] | None = None) -> float:
    """Millions of instructions ``argv`` executes (after ``warm``, by default the same
    command, run without valgrind to write the bytecode caches)."""
    subprocess.run(warm or argv, env=env, cwd=cwd, capture_output=True, timeout=300)
    proc = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         *argv], env=env, cwd=cwd, capture_output=True, timeout=1200)
    found = re.search(rb"I\s+refs:\s+([\d,]+)", proc.stderr)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"{argv} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return round(int(found.group(1).replace(b",", b"")) / 1e6, 1)


def _launcher(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """Millions of instructions of the launcher process ``argv``: its own count, and the
    count of the process-group holder it forks right before the program (a forked child's
    count starts from its parent's at the fork), 0 if it forked none."""
    subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=300)
    # Without a terminal and not leading its process group (a shell's command, as in CI):
    # the launcher then forks the holder of the program's own group.
    shell = 'valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$@"'
    proc = subprocess.run(["sh", "-c", shell + "; exit $?", "sh", *argv], env=env, cwd=cwd,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          start_new_session=True, timeout=1200)
    counts = sorted(int(n.replace(b",", b"")) / 1e6 for n in
                    re.findall(rb"==\d+==\s+I\s+refs:\s+([\d,]+)", proc.stderr))
    if proc.returncode != 0 or not counts:
        raise RuntimeError(f"{argv} failed ({proc.returncode}): "
                           f"{proc.stderr.decode()[-2000:]}")
    # The launcher outlives (and out-counts) every child it forked.
    return round(counts[-1], 1), round(counts[0], 1) if len(counts) > 1 else 0.0


def _program_env(tmp: str) -> dict[str, str]:
    """The environment ``flowagent run`` gives its program (startup.py's, from a real run),
    with fixed hash seeds."""
    env = startup_program_env(tmp)
    env["PYTHONHASHSEED"] = "0"
    return env


def main() -> None:
    if shutil.which("valgrind") is None:
        sys.exit("startup_instructions.py needs valgrind (apt-get install valgrind)")
    args = sys.argv[1:]
    versions = {"": ""}
    if "--before" in args:
        versions["_before"] = os.path.abspath(args[args.index("--before") + 1])
    tmp = tempfile.mkdtemp(prefix="fa-startup-ir-")
    try:
        script = os.path.join(tmp, "pass.py")
        with open(script, "w") as f:
            f.write("pass\n")
        agent_env = _program_env(tmp)
        counts = {"python_c": _count([PY, "-c", "pass"], _env(), tmp),
                  "plain": _count([PY, script], _env(), tmp)}
        for suffix, before in versions.items():
            path = {"PYTHONPATH": before} if before else {}
            boot = ({"PYTHONPATH": os.pathsep.join((os.path.join(before, "sitecustomize"),
                                                    before))} if before else {})
            counts["program_agent" + suffix] = _count([PY, script], dict(agent_env, **boot),
                                                      tmp)
            run = os.path.join(tmp, "sidecar-run" + suffix)
            os.makedirs(os.path.join(run, "rings"))

            def sidecar(run_id: str, run: str = run, suffix: str = suffix,
                        *extra: str) -> list[str]:
                return [PY, "-m", "flowagent.sidecar", "--once", "--run-dir", run, "--db",
                        os.path.join(tmp, f"sidecar{suffix}.db"), "--run-id", run_id,
                        "--max-data-size", str(2 << 30), *extra]

            # The uncounted run makes the store: the counted one opens an existing store.
            counts["sidecar" + suffix] = _count(sidecar("counted"),
                                                _env(FLOWAGENT_ENABLED="0", **path), tmp,
                                                warm=sidecar("warm"))
            # As `flowagent run` starts it: with the run's service, whose fleet row a thread
            # of the sidecar polls (a second, read-only store).
            counts["sidecar_service" + suffix] = _count(
                sidecar("counted-svc", run, suffix, "--service", "svc"),
                _env(FLOWAGENT_ENABLED="0", **path), tmp,
                warm=sidecar("warm-svc", run, suffix, "--service", "svc"))
            own, until = _launcher([PY, "-m", "flowagent", "run", "--data-dir",
                                    os.path.join(tmp, "data" + suffix), script],
                                   _env(**path), tmp)
            counts["launcher" + suffix] = own
            counts["launcher_until_program" + suffix] = until
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    over = {k: round(v - counts["plain"], 1) for k, v in counts.items()
            if k.startswith(("program_agent", "sidecar", "launcher"))}
    print(json.dumps({"million_instructions": counts, "over_plain": over}))


if __name__ == "__main__":
    main()
