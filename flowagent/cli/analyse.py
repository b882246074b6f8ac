"""``flowagent stats``, ``diff`` and ``stubs``: the reports of :mod:`flowagent.reports` as text.
"""

from __future__ import annotations

import os

from .common import _ms, _print_json, _run_id, _store

TYPE_CHECKING = False  # `flowagent run` imports as little as it can: no typing, no argparse
if TYPE_CHECKING:
    import argparse
    from typing import Any, TextIO


def _table(out: TextIO, title: str, header: list[str], rows: list[list[Any]],
           widths: list[int]) -> None:
    out.write(f"\n{title}\n")
    fmt = "  ".join(f"{{:{'<' if i == len(widths) - 1 or w < 0 else '>'}{abs(w)}}}"
                    for i, w in enumerate(widths))
    out.write(fmt.format(*header).rstrip() + "\n")
    for r in rows:
        out.write(fmt.format(*(str(c) for c in r)).rstrip() + "\n")


def cmd_stats(ns: argparse.Namespace, out: TextIO) -> int:
    from ..reports.stats import report

    store = _store(ns.data_dir, ns.store)
    run_id = _run_id(store, ns.run)
    rep = report(store, run_id)
    if ns.json:
        _print_json(rep, out)
        return 0
    run, loss, d = rep["run"], rep["loss"], rep["session_durations"]
    out.write(f"run {run_id}: {run.get('sessions', 0)} sessions, {run.get('calls', 0)} calls, "
              f"{run.get('errors', 0)} errors\n")
    out.write(f"events: {loss['produced_events']} produced, {loss['dropped_events']} dropped, "
              f"{loss['corrupt_frames']} corrupt frames, {loss['agent_errors']} agent errors, "
              f"{loss['sampled_out']} sessions sampled out, {loss['incomplete_sessions']} "
              f"incomplete\n")
    out.write(f"session durations: p50 {_ms(d['p50_ns'])}, p95 {_ms(d['p95_ns'])}, "
              f"p99 {_ms(d['p99_ns'])}\n")
    top = ns.top
    _table(out, "FUNCTIONS (by total time)",
           ["CALLS", "ERR", "TOTAL", "SELF", "P50", "P95", "P99", "FUNCTION"],
           [[f["calls"], f["errors"], _ms(f["total_ns"]), _ms(f["self_ns"]), _ms(f["p50_ns"]),
             _ms(f["p95_ns"]), _ms(f["p99_ns"]), f["function"]] for f in rep["functions"][:top]],
           [7, 4, 10, 10, 9, 9, 9, -1])
    _table(out, "FLOW VARIANTS", ["COUNT", "SHARE", "FAILED", "P50", "P95", "ROOT", "EXAMPLE"],
           [[v["count"], f"{v['share']:.0%}", v["failed"], _ms(v["duration"]["p50_ns"]),
             _ms(v["duration"]["p95_ns"]), v["root"], v["examples"][0] if v["examples"] else "-"]
            for v in rep["variants"][:top]], [6, 5, 6, 9, 9, -40, -1])
    _table(out, "ERROR CLUSTERS", ["COUNT", "HANDLED", "EXCEPTION", "RAISED IN / PATH"],
           [[c["count"], "yes" if c["handled"] else "no", c["exception"],
             " > ".join(c["path"])] for c in rep["error_clusters"][:top]], [6, 7, -20, -1])
    _table(out, "FREQUENT PATHS", ["COUNT", "PATH"],
           [[p["count"], " > ".join(p["path"])] for p in rep["frequent_paths"][:top]], [6, -1])
    _table(out, "SHAPE DRIFT", ["IO", "CHANGE", "FUNCTION", "WHERE", "BEFORE -> AFTER",
                                "FIRST SESSION"],
           [[e["io"], e["kind"], e["function"], e["path"] or "(whole)",
             f"{e['before'] or '-'} -> {e['after'] or '-'}", e["session"]]
            for e in rep["drift"][:top]], [3, -11, -30, -16, -40, -1])
    _table(out, "PROCESSES", ["PID", "EVENTS", "CPU", "MAX RSS", "ARGV"],
           [[p["pid"], p["events"], "-" if p["cpu_s"] is None else f"{p['cpu_s']:.2f} s",
             "-" if p["max_rss_bytes"] is None else f"{p['max_rss_bytes'] / 2**20:.1f} MiB",
             " ".join(p["argv"])] for p in rep["processes"]], [8, 7, 8, 9, -1])
    return 0


def _mix_change(a: dict, b: dict, keys: list[str]) -> str:
    """``error 10/30 (33%) -> 30/30 (100%)`` for each shifted key of a result or status mix."""
    def share(m: dict, k: str) -> str:
        return f"{m.get(k, 0)}/{m['calls']} ({m.get(k, 0) / m['calls']:.0%})"
    return ", ".join(f"{k} {share(a, k)} -> {share(b, k)}" for k in keys)


def cmd_diff(ns: argparse.Namespace, out: TextIO) -> int:
    from ..reports.diff import diff

    store = _store(ns.data_dir, ns.store)
    d = diff(store, _run_id(store, ns.run_a), _run_id(store, ns.run_b))
    if ns.json:
        _print_json(d, out)
        return 0
    out.write(f"diff {d['run_a']} ({d['sessions']['a']} sessions) -> {d['run_b']} "
              f"({d['sessions']['b']} sessions)\n")
    lines = (
        [f"+ function {f}" for f in d["functions"]["new"]]
        + [f"- function {f}" for f in d["functions"]["removed"]]
        + [f"+ call {e['from']} -> {e['to']}" for e in d["edges"]["new"]]
        + [f"- call {e['from']} -> {e['to']}" for e in d["edges"]["removed"]]
        + [f"~ calls {s['from']} -> {s['to']}: {s['per_session_a']} -> {s['per_session_b']} "
           "per session" for s in d["frequency_shifts"]]
        + [f"+ {s['io']}put shape of {s['function']}: {s['shape']}" for s in d["shapes"]["new"]]
        + [f"- {s['io']}put shape of {s['function']}: {s['shape']}" for s in d["shapes"]["gone"]]
        + [f"+ error {e['exception']} in {e['function']} "
           f"({'handled' if e['handled'] else 'unhandled'}, {e['count']}x)"
           for e in d["errors"]["new"]]
        + [f"- error {e['exception']} in {e['function']}" for e in d["errors"]["gone"]]
        + [f"! {t['function']} {t['change']}: p50 {_ms(t['p50_a_ns'])} -> {_ms(t['p50_b_ns'])} "
           f"(x{t['ratio']})" for t in d["timing"]]
        + [f"! results of {r['function']}: {_mix_change(r['a'], r['b'], r['changed'])}"
           for r in d["result_shifts"]]
        + [f"! status of {r['function']}: " + _mix_change(
            *(dict(r[side]["status"], calls=r[side]["calls"]) for side in "ab"), r["changed"])
           for r in d["status_shifts"]]
        + [f"! results of flow variant {v['variant'][:12]} ({v['root']}): "
           f"{_mix_change(v['a'], v['b'], v['changed'])}" for v in d["variant_result_shifts"]]
    )
    out.write("\n".join(lines) + "\n" if lines else "no differences\n")
    return 0


def cmd_stubs(ns: argparse.Namespace, out: TextIO) -> int:
    from ..reports.stubs import FunctionShapes, generate_stubs
    from ..reports.stats import shape_variants, shapes_and_drift

    store = _store(ns.data_dir, ns.store)
    run_id = _run_id(store, ns.run)
    fns = {f["name"]: f for f in store.functions(run_id).values()}
    fn_names = {fid: f["name"] for fid, f in store.functions(run_id).items()}
    calls = {fn_names[n.fid]: n.calls for n in store.node_stats(run_id) if n.fid in fn_names}
    merged, _ = shapes_and_drift(shape_variants(store, run_id))
    items = []
    for name, m in merged.items():
        fn = fns.get(name)
        if fn is None or fn["module"] in ("__main__", "__mp_main__", "<request>"):
            continue
        items.append(FunctionShapes(fn["module"], fn["qualname"], list(fn["params"]),
                                    fn["kind"] or "function", m["inputs"], m["output"],
                                    calls.get(name, 0)))
    stubs = generate_stubs(items)
    packages = {m.rsplit(".", 1)[0] for m in stubs if "." in m}
    for module, text in sorted(stubs.items()):
        parts = module.split(".")
        path = os.path.join(ns.output, *parts[:-1],
                            "__init__.pyi" if module in packages else parts[-1] + ".pyi")
        if module in packages:
            path = os.path.join(ns.output, *parts, "__init__.pyi")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        out.write(f"{path}\n")
    if not stubs:
        out.write("no recorded module functions to write stubs for\n")
    return 0
