"""How long ``flowagent run`` takes to return after its program has ended: the drain.
``python drain.py [SESSIONS] [REPEATS]`` (default 300000 sessions, 1 repeat).

The program (written to a temporary directory) calls one function of a selected package
SESSIONS times from unselected code, so every call is a session of its own: the sidecar's
worst case per recorded call. It prints the wall clock at its very end; the drain is the time
from then until the launcher returns (the sidecar storing what it had not stored yet, the end
of run, the summary). The sidecar's CPU time is shown beside it: on a loaded machine the
wall figure grows with the load, the CPU figure much less. The sidecar is not reaped into
this process's ``RUSAGE_CHILDREN``, so its CPU is read from ``/proc/PID/stat`` (user +
system ticks) every 10 ms while it runs, the last reading before it exits (Linux only;
null elsewhere).

Prints one JSON line: sessions, the plain program's and the recorded program's time, drain
seconds and per 100 000 sessions, the sidecar's CPU seconds and per 100 000 sessions, and the
sessions the run stored (from its summary line).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PKG = "fa_drain_pkg"
PROGRAM = f"""
import os, sys, time
from {PKG} import one
n = int(sys.argv[1])
t = time.perf_counter()
s = 0
for i in range(n):
    s += one(i)
elapsed = time.perf_counter() - t
print(f"checksum={{s}} elapsed_s={{elapsed}} cpu_s={{time.process_time()}} exit_wall={{time.time()}}",
      flush=True)
"""


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class SidecarCPU:
    """The CPU seconds of the sidecar of a run whose run directory lies under ``under``,
    sampled from ``/proc`` by a thread until :meth:`stop` (the last value read)."""

    def __init__(self, under: str) -> None:
        self.needle = under.encode()
        self.pid: int | None = None
        self.seconds: float | None = None
        self._stop = threading.Event()
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _find(self) -> int | None:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if b"\0flowagent.sidecar\0" in cmd and self.needle in cmd:
                return int(name)
        return None

    def _run(self) -> None:
        if not os.path.isdir("/proc"):
            return
        while not self._stop.wait(0.01):
            if self.pid is None:
                self.pid = self._find()
                continue
            try:
                with open(f"/proc/{self.pid}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                return  # gone: the last reading stands
            # after the command name: state is field 3, utime 14 and stime 15
            self.seconds = (int(fields[11]) + int(fields[12])) / self._tick

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        return self.seconds


def _field(out: str, name: str) -> float:
    m = re.search(rf"{name}=(\S+)", out)
    if m is None:
        raise RuntimeError(f"no {name}= in the program's output: {out!r}")
    return float(m.group(1))


def one_run(tmp: str, argv: list[str], sessions: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FLOWAGENT_") and k != "PYTHONDONTWRITEBYTECODE"}
    cpu0 = _children_cpu()
    sidecar = SidecarCPU(tmp)
    proc = subprocess.run([*argv, "main.py", str(sessions)], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=3600)
    end = time.time()
    cpu = _children_cpu() - cpu0
    sidecar_cpu = sidecar.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed: {proc.stderr[-2000:]}")
    out = {"program_s": _field(proc.stdout, "elapsed_s"),
           "drain_s": end - _field(proc.stdout, "exit_wall"),
           "tree_cpu_s": cpu, "program_cpu_s": _field(proc.stdout, "cpu_s"),
           "sidecar_cpu_s": sidecar_cpu}
    m = re.search(r"run \S+: (\d+) sessions", proc.stderr)
    if m:
        out["stored_sessions"] = int(m.group(1))
    return out


def main() -> None:
    sessions = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    tmp = tempfile.mkdtemp(prefix="fa-drain-")
    try:
        os.makedirs(os.path.join(tmp, PKG))
        with open(os.path.join(tmp, PKG, "__init__.py"), "w") as f:
            f.write("def one(x):\n    return x + 1\n")
        with open(os.path.join(tmp, "main.py"), "w") as f:
            f.write(PROGRAM)
        flowagent = [sys.executable, "-m", "flowagent", "run", "--data-dir",
                     os.path.join(tmp, "data"), "--include", f"{PKG}*"]
        plain, recorded = [], []
        for _ in range(repeats):
            plain.append(one_run(tmp, [sys.executable], sessions))
            shutil.rmtree(os.path.join(tmp, "data"), ignore_errors=True)
            recorded.append(one_run(tmp, flowagent, sessions))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    drain = med(recorded, "drain_s")
    read = [r["sidecar_cpu_s"] for r in recorded if r["sidecar_cpu_s"] is not None]
    sidecar_cpu = statistics.median(read) if read else None
    per = 100_000 / sessions
    print(json.dumps({
        "sessions": sessions, "plain_program_s": med(plain, "program_s"),
        "recorded_program_s": med(recorded, "program_s"), "drain_s": drain,
        "drain_s_per_100k": drain * per, "sidecar_cpu_s": sidecar_cpu,
        "sidecar_cpu_s_per_100k": None if sidecar_cpu is None else sidecar_cpu * per,
        "load_average": os.getloadavg(),
        "stored_sessions": recorded[-1].get("stored_sessions"), "runs": recorded}))


if __name__ == "__main__":
    main()
