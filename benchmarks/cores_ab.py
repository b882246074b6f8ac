"""Per-call cost of the tracer cores, in instructions (``valgrind --tool=callgrind``).

Wall time on a shared 2-core machine moves by tens of percent between runs; instruction
counts do not. For each core this runs a small function N1 and N2 times in a fresh process
under callgrind and reports (I(N2) - I(N1)) / (N2 - N1): the instructions one call adds,
fixed costs (start-up, install, classification) cancelled out. Also measured: a call of a
function the selection leaves out (what every other call of the program pays).

    .venv312/bin/python benchmarks/cores_ab.py [--n1 2000 --n2 12000]

Writes ``results/cores_ab-<python>.md`` and ``.json``. Cores: ``none`` (no tracer),
``wrap`` (import-time rewrite, C hot path), ``monitor-c`` / ``monitor-py`` (sys.monitoring with C or Python callbacks, 3.12+),
``profile-c`` / ``profile-py`` (C or Python profile function), ``cprofile`` and, when
installed, ``viztracer`` (its C tracer, restricted to the module's file).

``--take`` adds what the flusher thread spends on each record before msgpack and zstd (the
records taken out of the buffer in batches, as the program's CPU time counts it too);
``--encode`` also packs and compresses each batch as the flusher does (msgpack, zstd at the
flusher's level), the whole of the flusher's work but the ring write.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")

MODULE = textwrap.dedent('''\
    def leaf(a, b):
        return a + b

    def loop(n):
        t = 0
        for i in range(n):
            t = leaf(t, i)
        return t
''')

# The child: install one core, then call the workload function n times.
CHILD = textwrap.dedent('''\
    import sys
    core, n, selected = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    take = len(sys.argv) > 5 and sys.argv[5] in ("take", "encode")
    encode = len(sys.argv) > 5 and sys.argv[5] == "encode"
    sys.path.insert(0, sys.argv[4])
    stop = lambda: None
    if core == "wrap":  # rewrites the module as it is imported: install first
        from flowagent.agent import backends, bootstrap, recorder
        from flowagent.agent.select import Selector
        bootstrap.install_helpers()
        backend, _ = backends.choose("wrap")
        recorder.S.on = True
        backend.install(Selector(("fa_ab_mod",) if selected else ("nothing",), (), ()), True)
    import fa_ab_mod as mod
    if core in ("monitor-c", "monitor-py", "profile-c", "profile-py"):
        from flowagent.agent import backends, recorder
        from flowagent.agent.select import Selector
        backend, _ = backends.choose(core.split("-")[0])
        if core.endswith("-py"):
            backend.cores = None
        elif backend.cores is None:
            raise SystemExit(f"{core}: no C core here")
        recorder.S.on = True
        backend.install(Selector(("fa_ab_mod",) if selected else ("nothing",), (), ()), True)
        stop = backend.uninstall
    elif core == "cprofile":
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
        stop = prof.disable
    elif core == "viztracer":
        from viztracer import VizTracer
        tracer = VizTracer(include_files=[sys.argv[4]] if selected else ["/nothing"],
                           verbose=0, tracer_entries=5_000_000)
        tracer.start()
        stop = tracer.stop
    taken = 0
    if take and core in ("wrap", "monitor-c", "monitor-py", "profile-c", "profile-py"):
        # As the flusher does, in batches as the program records (the wire block only: the
        # msgpack and zstd of a batch are not measured).
        from flowagent.agent import transport
        from flowagent.agent.transport import BATCH_CALLS
        flush = lambda got: got[0]
        if encode:  # a batch as Transport._send makes it (the definitions already sent)
            from flowagent.protocol.wire import VERSION, Encoder
            enc = Encoder(getattr(transport, "ZSTD_LEVEL", 3))
            def flush(got):
                enc.encode_columns({
                    "v": VERSION, "pk": "k" * 32, "pid": 1, "seq": 2, "anchor": [1, 2],
                    "defs": [], "strings": [], "starts": [], "threads": {},
                    "agent_errors": 0, "sampled_out": 0, "final": False}, got[0], got[1])
                return got[0]
        for _ in range(n // BATCH_CALLS):
            mod.loop(BATCH_CALLS)
            taken += flush(recorder.take_calls(BATCH_CALLS))
        mod.loop(n % BATCH_CALLS)
        taken += flush(recorder.take_calls())
    else:
        mod.loop(n)
    stop()
    if selected and core in ("wrap", "monitor-c", "monitor-py", "profile-c", "profile-py"):
        got = taken + recorder.S.buffered
        assert got >= n, f"{core} recorded {got} of {n} calls"
''')

CORES = ("none", "wrap", "monitor-c", "monitor-py", "profile-c", "profile-py", "cprofile", "viztracer")


def instructions(core: str, n: int, selected: bool, moddir: str, tmp: str,
                 root: str = ROOT, take: bool | str = False) -> int | None:
    out = os.path.join(tmp, f"cg.{core}.{n}.{int(selected)}")
    child = [sys.executable, "-c", CHILD, core, str(n), "1" if selected else "0", moddir,
             take if isinstance(take, str) else "take" if take else "keep"]
    env = {**os.environ, "PYTHONPATH": root, "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONHASHSEED": "0", "XDG_CACHE_HOME": os.path.join(tmp, "cache")}
    # Unmeasured first: both measured runs then load the instrumented module from the cache
    # (a miss instruments it, which a cache hit does not even import).
    subprocess.run(child, capture_output=True, cwd=root, timeout=600, env=env)
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *child],
        capture_output=True, text=True, cwd=root, timeout=1800, env=env)
    if proc.returncode != 0:
        sys.stderr.write(f"{core} n={n}: {proc.stderr.strip().splitlines()[-1:]}\n")
        return None
    m = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
    return int(m.group(1)) if m else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n1", type=int, default=2000)
    p.add_argument("--n2", type=int, default=12000)
    p.add_argument("--cores", default=",".join(CORES))
    p.add_argument("--root", default=ROOT,
                   help="the flowagent checkout to measure (another build: printed, not saved)")
    p.add_argument("--recorded-only", action="store_true",
                   help="skip the 'left out' runs (a function the selection excludes)")
    p.add_argument("--take", action="store_true",
                   help="also take the records out of the buffer as the flusher does, in "
                        "batches (recorder.take_calls: the wire block, not msgpack or zstd); "
                        "printed, not saved")
    p.add_argument("--encode", action="store_true",
                   help="--take, and each batch packed and compressed as the flusher does "
                        "(msgpack, zstd); printed, not saved")
    a = p.parse_args(argv)
    take: bool | str = "encode" if a.encode else a.take
    root = os.path.abspath(a.root)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        moddir = os.path.join(tmp, "mod")
        os.makedirs(moddir)
        with open(os.path.join(moddir, "fa_ab_mod.py"), "w") as f:
            f.write(MODULE)
        for core in a.cores.split(","):
            if core.startswith("monitor") and sys.version_info < (3, 12):
                continue
            for selected in (True, False):
                if (core == "none" or a.recorded_only) and not selected:
                    continue
                i1 = instructions(core, a.n1, selected, moddir, tmp, root, take)
                i2 = instructions(core, a.n2, selected, moddir, tmp, root, take)
                per = None if i1 is None or i2 is None else (i2 - i1) / (a.n2 - a.n1)
                rows.append({"core": core, "selected": selected, "per_call": per})
                sys.stderr.write(f"{core:11s} selected={selected!s:5s} per call: {per}\n")
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    if root != os.path.abspath(ROOT) or take:
        taken = (" (records taken, packed and compressed as the flusher does)" if a.encode
                 else " (records taken as the flusher does)" if take else "")
        for r in rows:
            print(f"{root}: {r['core']} selected={r['selected']} per call{taken}: "
                  f"{r['per_call']}")
        return 0
    stem = os.path.join(RESULTS, f"cores_ab-{py}")
    # Cores measured by an earlier run (same sizes) and not by this one are kept.
    try:
        with open(stem + ".json") as f:
            old = json.load(f)
        if (old.get("n1"), old.get("n2")) == (a.n1, a.n2):
            done = {r["core"] for r in rows}
            rows = [r for r in old["rows"] if r["core"] not in done] + rows
            rows.sort(key=lambda r: CORES.index(r["core"]) if r["core"] in CORES else 99)
    except (OSError, ValueError, KeyError):
        pass
    base = next((r["per_call"] for r in rows if r["core"] == "none"), None)
    lines = [f"# Tracer cores: instructions per call (callgrind), Python {py}", "",
             f"`{os.path.relpath(sys.executable, ROOT)} benchmarks/cores_ab.py` — "
             f"(I({a.n2}) - I({a.n1})) / {a.n2 - a.n1} for a loop calling a two-argument "
             f"function; 'recorded' = the function is selected (every call recorded), "
             f"'left out' = the selection excludes it. 'added' subtracts the untraced loop.",
             "", "| core | recorded: instr/call | added | left out: instr/call | added |",
             "|---|---:|---:|---:|---:|"]
    for core in dict.fromkeys(r["core"] for r in rows):
        cells = []
        for selected in (True, False):
            r = next((r for r in rows if r["core"] == core and r["selected"] == selected), None)
            v = r and r["per_call"]
            cells += ["—", "—"] if v is None else [f"{v:,.0f}",
                                                   f"{v - base:,.0f}" if base else "—"]
        lines.append(f"| {core} | " + " | ".join(cells) + " |")
    os.makedirs(RESULTS, exist_ok=True)
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(stem + ".json", "w") as f:
        json.dump({"python": sys.version, "n1": a.n1, "n2": a.n2, "rows": rows}, f, indent=1)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
