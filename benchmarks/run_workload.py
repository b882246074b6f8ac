"""Runs one benchmark workload in this process: ``python run_workload.py [OPTIONS] NAME``.

This script is the program every mode runs (plain, under flowagent, under a profiler), so it
does as little as possible besides calling the workload's ``main()``: it is never part of
what the tools are restricted to (the workload packages live in ``workloads/``).

After the workload's own result line it prints ``rss_kb=<peak RSS of this process>`` (the
program side's memory, whatever tool is running inside it, including what it holds at the
end of ``main()``; a tool's work at exit, such as writing its trace file, comes later).

Options:
    --n N           workload size (default: the workload's full size)
    --otel          wrap every function of the workload package in an OpenTelemetry SDK span
                    (see otel_harness.py)
    --count-calls   count calls into the workload package's functions with a profile hook
                    (used once per workload to get the per-call denominators) and print
                    ``counted_calls=N``
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if not os.path.isdir(os.path.join(HERE, "workloads")):
    # Run through exec() by a tool that keeps its own globals (yappi's CLI): __file__ is the
    # tool's, sys.argv[0] is ours.
    HERE = os.path.dirname(os.path.abspath(sys.argv[0]))
WORKLOADS = os.path.join(HERE, "workloads")

# name -> (package, entry point)
ENTRIES = {
    "calls": ("bench_calls", "main"),
    "handler": ("bench_handler", "main"),
    "flask": ("bench_flask", "main"),
    "flask_http": ("bench_flask", "main_http"),
    "asyncio": ("bench_asyncio", "main"),
    "startup": ("bench_startup", "main"),
}


def _count_calls(package_dir: str) -> list[int]:
    """A profile hook counting first entries of the package's own functions (generator and
    coroutine resumptions are not new calls; comprehensions and lambdas are not functions
    flowagent records)."""
    import threading

    prefix = os.path.join(os.path.realpath(package_dir), "")
    count = [0]
    seen_frames: set = set()
    gen_flags = 0x20 | 0x80 | 0x200  # generator, coroutine, async generator
    wanted: dict = {}

    def hook(frame, event, arg):  # noqa: ANN001
        if event != "call":
            return
        code = frame.f_code
        ok = wanted.get(code)
        if ok is None:
            ok = wanted[code] = (os.path.realpath(code.co_filename).startswith(prefix)
                                 and not code.co_name.startswith("<"))
        if not ok:
            return
        if code.co_flags & gen_flags:
            if frame in seen_frames:
                return
            seen_frames.add(frame)
        count[0] += 1

    sys.setprofile(hook)
    threading.setprofile(hook)
    return count


def peak_rss_kb() -> int:
    """Peak RSS of this process's own address space (VmHWM). Not ``ru_maxrss``: on Linux
    that keeps the high-water mark of the address space replaced by ``exec``, which for a
    child started with vfork is the *parent's* (the benchmark orchestrator's)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="run_workload.py")
    p.add_argument("name", choices=sorted(ENTRIES))
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--otel", action="store_true")
    p.add_argument("--count-calls", action="store_true")
    a = p.parse_args(argv)
    package, entry = ENTRIES[a.name]
    sys.path.insert(0, WORKLOADS)
    if a.name == "startup" and not os.path.isdir(os.path.join(WORKLOADS, package, "mods")):
        # run.py generates the modules beforehand; this is for a runner started by hand.
        sys.path.insert(0, os.path.join(WORKLOADS, package))
        import generate

        generate.generate()
        sys.path.pop(0)
    mod = importlib.import_module(package)
    spans = None
    if a.otel:
        sys.path.insert(0, HERE)
        import otel_harness

        spans = otel_harness.instrument_package(package)
    counter = _count_calls(os.path.join(WORKLOADS, package)) if a.count_calls else None
    getattr(mod, entry)(a.n)
    if counter is not None:
        sys.setprofile(None)
        print(f"counted_calls={counter[0]}", flush=True)
    if spans is not None:
        print(f"otel_spans={spans.ended}", flush=True)
    print(f"rss_kb={peak_rss_kb()}", flush=True)


if __name__ == "__main__":
    main()
