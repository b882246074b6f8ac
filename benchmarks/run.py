"""flowagent overhead benchmarks: ``python benchmarks/run.py [--quick] [--pairs N]``.

Protocol (see README.md): every measurement is a fresh process. Per workload: one counting
run (calls into the workload package, reference checksum), one baseline warm-up, then per
mode one warm-up run of that mode followed by N interleaved pairs (baseline, mode, baseline,
mode, ...). Ratios are per pair (mode / the baseline run just before it); the table shows
their median and min-max. Full mode writes ``results/latest.{md,json,png}``; ``--quick``
writes ``results/quick.{md,json,png}`` and takes well under a minute.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import protocol  # noqa: E402
import report  # noqa: E402
from modes import (CORES_MODES, CORES_WORKLOADS, MODES, PY, ROOT, RUNNER,  # noqa: E402
                   WORKLOADS, WORKLOADS_DIR, Plan, Workload, target_for)

RESULTS = os.path.join(HERE, "results")


def log(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except Exception:
        mem = "?"
    import flowagent

    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem,
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(), "date": now,
            "flowagent_version": getattr(flowagent, "__version__", "?"),
            "flowagent_source_sha256": source_sha(), "loadavg_start": os.getloadavg()}


def source_sha() -> str:
    """Identifies the flowagent code measured (other people may edit it during a run)."""
    src = hashlib.sha256()
    for base, dirs, files in os.walk(os.path.join(ROOT, "flowagent")):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                with open(os.path.join(base, name), "rb") as f:
                    src.update(name.encode() + f.read())
    return src.hexdigest()[:16]


def prepare() -> None:
    sys.path.insert(0, os.path.join(HERE, "workloads", "bench_startup"))
    import generate

    generate.generate()


def count_pass(w: Workload, n: int | None) -> dict[str, Any]:
    """Reference run: calls into the workload package (profile hook) and the checksum."""
    if w.package is None:
        return {"calls": 0, "result": None}
    argv = [PY, RUNNER, w.runner or "", "--count-calls"] + (["--n", str(n)] if n else [])
    rec = protocol.run_process(argv, {})
    if rec["rc"] != 0:
        raise SystemExit(f"workload {w.key} fails on plain python: {rec.get('stderr_tail')}")
    return {"calls": rec.get("counted_calls"), "result": rec.get("result"),
            "printed_calls": rec.get("calls")}


def _check(rec: dict[str, Any], ref: dict[str, Any], where: str) -> None:
    problems = []
    if rec["rc"] != 0:
        problems.append(f"exit status {rec['rc']}")
    if rec.get("timed_out"):
        problems.append("timed out")
    if ref.get("result") is not None and rec.get("result") != ref["result"]:
        problems.append(f"checksum {rec.get('result')} != {ref['result']}")
    if problems:
        rec["problems"] = problems
        log(f"  !! {where}: {', '.join(problems)} {rec.get('stderr_tail', '')}")


def metric(w: Workload, rec: dict[str, Any]) -> float | None:
    return rec.get("elapsed_ns") if w.metric == "inner" else rec.get("wall_ns")


def cpu_metric(w: Workload, rec: dict[str, Any]) -> float | None:
    return rec.get("cpu_ns") if w.metric == "inner" else rec.get("proc_cpu_ns")


def _ratios(pairs: list[tuple[dict, dict]], key: Any) -> list[float]:
    out = []
    for a, b in pairs:
        va, vb = key(a), key(b)
        if va and vb is not None and not b.get("problems") and not a.get("problems"):
            out.append(vb / va)
    return out


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(w: Workload, mode_key: str, pairs: list[tuple[dict, dict]], calls: int | None
              ) -> dict[str, Any]:
    ok = [(a, b) for a, b in pairs if not a.get("problems") and not b.get("problems")]
    s: dict[str, Any] = {"workload": w.key, "mode": mode_key, "pairs": len(pairs),
                         "valid_pairs": len(ok)}
    s["ratio"] = _stats(_ratios(ok, lambda r: metric(w, r)))
    s["cpu_ratio"] = _stats(_ratios(ok, lambda r: cpu_metric(w, r)))
    s["process_ratio"] = _stats(_ratios(ok, lambda r: r.get("wall_ns")))
    base_m = [metric(w, a) for a, _ in ok]
    mode_m = [metric(w, b) for _, b in ok]
    s["baseline_ms"] = statistics.median(base_m) / 1e6 if base_m else None
    s["mode_ms"] = statistics.median(mode_m) / 1e6 if mode_m else None
    s["process_baseline_ms"] = statistics.median(a["wall_ns"] for a, _ in ok) / 1e6 if ok else None
    s["process_mode_ms"] = statistics.median(b["wall_ns"] for _, b in ok) / 1e6 if ok else None
    diffs = [metric(w, b) - metric(w, a) for a, b in ok]
    s["added_ms"] = statistics.median(diffs) / 1e6 if diffs else None
    cdiffs = [cpu_metric(w, b) - cpu_metric(w, a) for a, b in ok
              if cpu_metric(w, a) is not None and cpu_metric(w, b) is not None]
    s["added_cpu_ms"] = statistics.median(cdiffs) / 1e6 if cdiffs else None
    s["ns_per_call"] = (statistics.median(diffs) / calls) if diffs and calls else None
    s["program_rss_mb"] = (statistics.median(b["rss_kb"] for _, b in ok if "rss_kb" in b) / 1024
                           if any("rss_kb" in b for _, b in ok) else None)
    s["baseline_rss_mb"] = (statistics.median(a["rss_kb"] for a, _ in ok if "rss_kb" in a) / 1024
                            if any("rss_kb" in a for a, _ in ok) else None)
    s["tree_rss_mb"] = statistics.median(b["tree_maxrss_kb"] for _, b in ok) / 1024 if ok else None
    stores = [b["store"] for _, b in pairs if "store" in b]
    if stores:
        s["store"] = stores[-1]
    wires = [b["wire"] for _, b in pairs if "wire" in b]
    if wires:
        s["wire"] = wires[-1]
    t = target_for(w.key, mode_key)
    if t is not None:
        value = (s["ratio"] or {}).get("median") if t.kind == "ratio" else s["added_ms"]
        s["target"] = {"kind": t.kind, "limit": t.limit, "text": t.text, "value": value,
                       "met": None if value is None else value <= t.limit}
    return s


def run_workload(plan: Plan, w: Workload, out: dict[str, Any]) -> None:
    n = plan.n_of(w)
    modes = plan.modes_of(w)
    log(f"workload {w.key} (n={n or 'full'}): counting run")
    ref = count_pass(w, n)
    base = MODES["baseline"]
    log(f"  calls into the package: {ref['calls']}; checksum {ref['result']}")
    warm = protocol.measure(w, base, n)
    _check(warm, ref, f"{w.key}/baseline warm-up")
    entry: dict[str, Any] = {"workload": w.key, "label": w.label, "metric": w.metric, "n": n,
                             "reference": ref, "loadavg_before": os.getloadavg(), "modes": {}}
    out["workloads"][w.key] = entry
    for mode in modes:
        if mode.key == "baseline":
            continue
        t0 = time.time()
        keep = (os.path.join(RESULTS, "tmp", f"{w.key}-{mode.key}")
                if mode.key == "fa_wrap" and w.key == "calls" else None)
        warm = protocol.measure(w, mode, n, keep_data=keep)
        _check(warm, ref, f"{w.key}/{mode.key} warm-up")
        pairs = []
        for _ in range(plan.pairs_for(w, mode)):
            a = protocol.measure(w, base, n)
            _check(a, ref, f"{w.key}/baseline")
            b = protocol.measure(w, mode, n)
            _check(b, ref, f"{w.key}/{mode.key}")
            pairs.append((a, b))
        s = summarise(w, mode.key, pairs, ref["calls"])
        entry["modes"][mode.key] = {"summary": s, "warmup": warm,
                                    "pairs": [{"baseline": a, "mode": b} for a, b in pairs]}
        r = s["ratio"] or {}
        log(f"  {mode.key:<14} ratio {r.get('median', float('nan')):8.3f}x "
            f"({r.get('min', float('nan')):.3f}-{r.get('max', float('nan')):.3f})  "
            f"{time.time() - t0:6.1f}s")
        report.write(out, plan, partial=True)
    entry["loadavg_after"] = os.getloadavg()
    entry["noise"] = noise(w, [warm] + [p["baseline"] for m in entry["modes"].values()
                                       for p in m["pairs"]])


def _spread(values: list[float]) -> dict[str, float] | None:
    if len(values) < 3:
        return None
    med = statistics.median(values)
    mad = statistics.median(abs(v - med) for v in values)
    q = statistics.quantiles(values, n=10)
    return {"median": med, "mad_pct": 100 * mad / med, "p10_pct": 100 * (q[0] / med - 1),
            "p90_pct": 100 * (q[-1] / med - 1)}


def noise(w: Workload, baselines: list[dict[str, Any]]) -> dict[str, Any]:
    """How much the plain program's own runs vary: the floor under every ratio."""
    ok = [r for r in baselines if not r.get("problems")]
    return {"runs": len(ok),
            "time": _spread([metric(w, r) for r in ok if metric(w, r)]),
            "cpu": _spread([cpu_metric(w, r) for r in ok if cpu_metric(w, r)])}


def sidecar_rate(out: dict[str, Any], repeats: int) -> None:
    data = os.path.join(RESULTS, "tmp", "calls-fa_wrap")
    if not os.path.isdir(data):
        out["sidecar"] = {"error": "no recorded calls run to replay"}
        return
    log(f"sidecar ingest: replaying the calls workload's rings ({repeats}x)")
    proc = subprocess.run([PY, os.path.join(HERE, "ingest_replay.py"), data, str(repeats)],
                          capture_output=True, text=True, timeout=1800)
    try:
        out["sidecar"] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        out["sidecar"] = {"error": (proc.stderr or proc.stdout).strip()[-2000:]}
    ing = out["sidecar"].get("ingest", {})
    log(f"  ingest {ing.get('events_per_s', 0):,.0f} events/s")


def memory_check(out: dict[str, Any], plan: Plan) -> None:
    """Program-side memory: does the recorded program's RSS grow with the number of calls?
    The calls workload at its size and at 3x, baseline and full recording (wrap)."""
    w = WORKLOADS["calls"]
    sys.path.insert(0, WORKLOADS_DIR)
    import bench_calls

    n1 = plan.n_of(w) or bench_calls.FULL_N
    n3 = 3 * n1
    res = {}
    log(f"memory check: calls workload at n={n1} and n={n3} (baseline, wrap)")
    for key in ("baseline", "fa_wrap"):
        for n in (n1, n3):
            rec = protocol.measure(w, MODES[key], n)
            res[f"{key}@{5 * n + 2}"] = {"rss_kb": rec.get("rss_kb"), "rc": rec["rc"],
                                         "dropped": (rec.get("store") or {}).get(
                                             "dropped_events")}
    b1, b3 = res[f"baseline@{5 * n1 + 2}"]["rss_kb"], res[f"baseline@{5 * n3 + 2}"]["rss_kb"]
    f1, f3 = res[f"fa_wrap@{5 * n1 + 2}"]["rss_kb"], res[f"fa_wrap@{5 * n3 + 2}"]["rss_kb"]
    growth = None if None in (b1, b3, f1, f3) else ((f3 - f1) - (b3 - b1)) / 1024
    out["memory"] = {"runs": res, "calls_small": 5 * n1 + 2, "calls_large": 5 * n3 + 2,
                     "extra_growth_mb": growth,
                     "bounded": None if growth is None else growth <= 8.0,
                     "rule": "bounded if the recorded program's peak RSS grows by at most 8 MiB "
                             "more than the plain program's when the calls triple"}
    log(f"  extra RSS growth under recording: {growth} MiB")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="run.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small workloads, flowagent + "
                   "baseline + cProfile, 3 pairs (well under a minute)")
    p.add_argument("--pairs", type=int, default=None, help="pairs per mode (default 5, "
                   "quick 3)")
    p.add_argument("--smoke", action="store_true", help="every workload and mode once at the "
                   "small sizes (a check that all tools run; writes results/smoke.*)")
    p.add_argument("--only", action="append", default=[], help="run only this workload "
                   "(repeatable; writes results/only-NAMES.*, never latest.*)")
    p.add_argument("--cores", action="store_true", help="the tracer cores (wrap, profile, "
                   "monitor) beside python, cProfile and VizTracer on calls, handler and "
                   "flask at full size (writes results/cores-PYTHON.*)")
    p.add_argument("--real", action="store_true", help="real programs (docutils rst2html, "
                   "Pygments, a Flask app over HTTP) under every tool; --only picks among "
                   "rst2html, pygments, flask_http (writes results/real-PYTHON.*)")
    p.add_argument("--modes", default=None, help="with --real: a comma-separated subset of "
                   "the modes (cprofile, viztracer, pyinstrument, fa_wrap, fa_profile, "
                   "fa_monitor)")
    a = p.parse_args(argv)
    if a.real:
        import real

        paths = real.main(a.pairs or 3, a.only, machine_info(), log,
                          a.modes.split(",") if a.modes else None)
        log(f"done: {', '.join(paths)}")
        return 0
    if a.cores:
        a.only = list(CORES_WORKLOADS)
    plan = Plan(quick=a.quick, smoke=a.smoke,
                pairs=a.pairs or (1 if a.smoke else 3 if a.quick else 5))
    plan.workloads = [w for w in WORKLOADS.values() if (not a.only or w.key in a.only)
                      and (not a.quick or w.quick_n is not None)]
    if a.cores:
        plan.modes = CORES_MODES
    os.makedirs(os.path.join(RESULTS, "tmp"), exist_ok=True)
    prepare()
    started = time.time()
    out: dict[str, Any] = {"machine": machine_info(), "quick": a.quick, "smoke": a.smoke,
                           "pairs": plan.pairs,
                           "stem": f"cores-{sys.version_info.major}.{sys.version_info.minor}"
                           if a.cores else ("only-" + "-".join(sorted(a.only))) if a.only
                           else None,
                           "command": " ".join([os.path.relpath(PY, ROOT), "benchmarks/run.py",
                                                *(argv if argv is not None else sys.argv[1:])]),
                           "workloads": {}}
    kind = "smoke" if a.smoke else "quick" if a.quick else "full"
    log(f"{kind} run, {plan.pairs} pairs per mode, workloads: "
        f"{', '.join(w.key for w in plan.workloads)}")
    for w in plan.workloads:
        run_workload(plan, w, out)
    if "calls" in out["workloads"] and not a.cores:
        sidecar_rate(out, 1 if a.quick or a.smoke else 3)
        if not (a.quick or a.smoke):
            memory_check(out, plan)
    shutil.rmtree(os.path.join(RESULTS, "tmp"), ignore_errors=True)  # the replayed run
    out["machine"]["loadavg_end"] = os.getloadavg()
    out["machine"]["flowagent_source_sha256_end"] = source_sha()
    out["duration_s"] = time.time() - started
    paths = report.write(out, plan, partial=False)
    log(f"done in {out['duration_s']:.0f}s: {', '.join(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
