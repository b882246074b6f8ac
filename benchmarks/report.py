"""Writes the results: markdown table, JSON (everything, raw runs included) and a PNG chart."""

from __future__ import annotations

import json
import os
from typing import Any

from modes import MODES, WORKLOADS, Plan

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _x(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}x"


def _num(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "—" if v is None else fmt.format(v)


def _ratio(r: dict | None) -> str:
    if not r:
        return "—"
    d = 3 if r["median"] < 1.5 else 2 if r["median"] < 20 else 1
    return f"{r['median']:.{d}f}x ({r['min']:.{d}f}–{r['max']:.{d}f})"


def _met(t: dict | None) -> str:
    if not t or t.get("met") is None:
        return ""
    unit = "x" if t["kind"] == "ratio" else " ms"
    return f"{'met' if t['met'] else '**missed**'} (≤ {t['limit']:g}{unit})"


def _noise(n: dict | None) -> str:
    if not n:
        return "—"
    return f"±{n['mad_pct']:.1f}% (p10–p90 {n['p10_pct']:+.0f}%…{n['p90_pct']:+.0f}%)"


def _summaries(out: dict[str, Any]) -> list[tuple[dict, dict]]:
    rows = []
    for entry in out["workloads"].values():
        for m in entry["modes"].values():
            rows.append((entry, m["summary"]))
    return rows


def results_table(out: dict[str, Any]) -> list[str]:
    lines = ["| workload | mode | time measured | ratio to baseline, median (min–max) | "
             "CPU ratio | whole-process ratio | baseline → mode | overhead per call | "
             "program RSS (baseline → mode) | target |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for entry, s in _summaries(out):
        inner = entry["metric"] == "inner"
        added = (f"{_num(s['ns_per_call'])} ns" if inner and s["ns_per_call"] is not None
                 else f"{s['added_ms']:+,.1f} ms" if s["added_ms"] is not None
                 else "—")
        rss = (f"{_num(s['baseline_rss_mb'], '{:.1f}')} → "
               f"{_num(s['program_rss_mb'], '{:.1f}')} MB"
               if s["program_rss_mb"] is not None else "—")
        lines.append(
            f"| {entry['workload']} | {MODES[s['mode']].label} | "
            f"{'inside main()' if inner else 'whole process'} | {_ratio(s['ratio'])} | "
            f"{_x((s['cpu_ratio'] or {}).get('median'))} | "
            f"{_x((s['process_ratio'] or {}).get('median')) if inner else '(same)'} | "
            f"{_num(s['baseline_ms'], '{:,.1f}')} → {_num(s['mode_ms'], '{:,.1f}')} ms | "
            f"{added} | {rss} | {_met(s.get('target'))} |")
    return lines


def flowagent_table(out: dict[str, Any]) -> list[str]:
    lines = ["| workload | mode | calls (counted) | events produced | stored | dropped | "
             "batches (frames) | payload bytes/call | frame bytes/call | whole process "
             "(baseline → mode) | largest process RSS |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for entry, s in _summaries(out):
        st = s.get("store")
        if st is None:
            continue
        wi = s.get("wire") or {}
        exact = "" if wi.get("exact", True) else " (est.)"
        lines.append(
            f"| {entry['workload']} | {MODES[s['mode']].label} | "
            f"{_num(entry['reference'].get('calls'))} | {_num(st.get('produced_events'))} | "
            f"{_num(st.get('stored_events'))} | {_num(st.get('dropped_events'))} | "
            f"{_num(wi.get('batches'))} | "
            f"{_num(wi.get('payload_bytes_per_event'), '{:.2f}')}{exact} | "
            f"{_num(wi.get('frame_bytes_per_event'), '{:.2f}')} | "
            f"{_num(s['process_baseline_ms'], '{:,.0f}')} → "
            f"{_num(s['process_mode_ms'], '{:,.0f}')} ms | "
            f"{_num(s['tree_rss_mb'], '{:.0f}')} MB |")
    return lines


def targets_table(out: dict[str, Any]) -> list[str]:
    lines = ["| target | where | measured (wall) | | same on CPU time | |",
             "|---|---|---|---|---|---|"]
    for entry, s in _summaries(out):
        t = s.get("target")
        if not t:
            continue
        if t["kind"] == "ratio":
            v = "—" if t["value"] is None else f"{t['value']:.3f}x"
            c = (s.get("cpu_ratio") or {}).get("median")
            cv = "—" if c is None else f"{c:.3f}x"
        else:
            v = "—" if t["value"] is None else f"{t['value']:+.1f} ms"
            c = s.get("added_cpu_ms")
            cv = "—" if c is None else f"{c:+.1f} ms CPU"
        cmet = "" if c is None else ("met" if c <= t["limit"] else "**missed**")
        lines.append(f"| {t['text']} | {entry['workload']}: {MODES[s['mode']].label} | {v} | "
                     f"{_met(t)} | {cv} | {cmet} |")
    sc = out.get("sidecar") or {}
    ing = sc.get("ingest") or {}
    if ing:
        rate = ing.get("events_per_s") or 0
        lines.append(f"| sidecar ≥ 1,000,000 events/s | replay of the calls workload's rings "
                     f"({_num(ing.get('events'))} events) | {rate:,.0f} events/s | "
                     f"{'met' if rate >= 1e6 else '**missed**'} | | |")
    for entry, s in _summaries(out):
        wi = s.get("wire")
        if s["mode"] == "fa_wrap" and wi and wi.get("payload_bytes_per_event") is not None:
            b = wi["payload_bytes_per_event"]
            lines.append(f"| ≤ 8 bytes per call on the wire | {entry['workload']}: wrap | "
                         f"{b:.2f} B/call | {'met' if b <= 8 else '**missed**'} | | |")
    mem = out.get("memory")
    if mem and mem.get("extra_growth_mb") is not None:
        lines.append(f"| program-side memory bounded | calls, {mem['calls_small']:,} vs "
                     f"{mem['calls_large']:,} calls (wrap) | {mem['extra_growth_mb']:+.1f} MiB "
                     f"extra growth | {'met' if mem['bounded'] else '**missed**'} | | |")
    return lines


def markdown(out: dict[str, Any], plan: Plan, partial: bool) -> str:
    m = out["machine"]
    kind = " (smoke: one pair, small sizes)" if out.get("smoke") else (
        " (quick)" if out["quick"] else "")
    L = ["# flowagent overhead benchmarks" + kind, ""]
    if partial:
        L += ["**Partial results: the run is still going.**", ""]
    L += [f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}; {m['platform']}",
          f"- Python {m['python']} ({m['implementation']}); flowagent {m['flowagent_version']} "
          f"(source sha256 {m['flowagent_source_sha256']}"
          + (f"; **changed during the run**, at the end {m['flowagent_source_sha256_end']}"
             if m.get("flowagent_source_sha256_end") not in (None, m["flowagent_source_sha256"])
             else "") + ")",
          f"- Date: {m['date']}; load average at start "
          f"{', '.join(f'{x:.2f}' for x in m['loadavg_start'])}"
          + (f", at end {', '.join(f'{x:.2f}' for x in m['loadavg_end'])}"
             if "loadavg_end" in m else ""),
          f"- Command: `{out['command']}`; {out['pairs']} interleaved pairs per mode after a "
          f"warm-up" + (f"; took {out['duration_s'] / 60:.1f} min" if "duration_s" in out
                        else ""),
          "- Ratio = mode / baseline per pair (fresh processes, A B A B ...); the time is the one "
          "measured inside the workload's `main()` (whole process for the start-up rows). "
          "Overhead per call = median (mode − baseline) / calls into the workload package.",
          ""]
    L += ["## Targets", ""] + targets_table(out) + [""]
    L += ["## All results", ""] + results_table(out) + [""]
    L += ["## flowagent: events and wire", "",
          "Events produced / stored / dropped come from the run's store (`runs` and `processes` "
          "tables); bytes per call from the ring files (sum of frame payloads / events; frame "
          "bytes add the 16-byte frame header and padding).", ""] + flowagent_table(out) + [""]
    sc = out.get("sidecar")
    if sc:
        L += ["## Sidecar ingest rate", ""]
        if "error" in sc:
            L += [f"Not measured: {sc['error']}", ""]
        else:
            ing, dec = sc["ingest"], sc["decode_only"]
            L += [f"Replaying the calls workload's ring through "
                  f"`flowagent.sidecar.ingest.Ingestor` into a fresh SQLite store: "
                  f"**{ing['events_per_s']:,.0f} events/s** ({ing['events']:,} events in "
                  f"{ing['seconds']:.2f} s, median of {len(ing['all_seconds'])}). Decoding alone "
                  f"(zstd + msgpack + columns, no trees, no SQLite): "
                  f"{dec['events_per_s']:,.0f} events/s.", ""]
    mem = out.get("memory")
    if mem:
        L += ["## Program-side memory", "", mem["rule"] + ".", "",
              "| run | program peak RSS | dropped events |", "|---|---|---|"]
        for k, v in mem["runs"].items():
            L.append(f"| {k} calls | {_num((v['rss_kb'] or 0) / 1024, '{:.1f}')} MiB | "
                     f"{_num(v.get('dropped'))} |")
        L += [""]
    L += ["## Modes", "", "| mode | what runs |", "|---|---|"]
    used = {mk for e in out["workloads"].values() for mk in e["modes"]} | {"baseline"}
    for key, mode in MODES.items():
        if key in used:
            L.append(f"| {mode.label} | {mode.what} |")
    L += ["", "## Workloads", "",
          "Baseline noise: the spread of all the workload's baseline runs (median absolute "
          "deviation / median, and the 10th–90th percentile range relative to the median), for "
          "the measured time and for CPU time. A target finer than this noise cannot be "
          "judged from one run of the suite.", "",
          "| workload | what | size | calls into the package | checksum | baseline runs | "
          "baseline noise (time) | baseline noise (CPU) |", "|---|---|---|---|---|---|---|---|"]
    for key, e in out["workloads"].items():
        ref = e["reference"]
        nz = e.get("noise") or {}
        L.append(f"| {key} | {WORKLOADS[key].label} | {e['n'] or 'full'} | "
                 f"{_num(ref.get('calls'))} | {ref.get('result')} | {nz.get('runs', '—')} | "
                 f"{_noise(nz.get('time'))} | {_noise(nz.get('cpu'))} |")
    problems = [(e["workload"], mk, p) for e in out["workloads"].values()
                for mk, m in e["modes"].items()
                for pr in m["pairs"] for r in pr.values() for p in r.get("problems", [])]
    if problems:
        L += ["", "## Problems", ""] + [f"- {w} / {m}: {p}" for w, m, p in problems]
    return "\n".join(L) + "\n"


def chart(out: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [e for e in out["workloads"].values() if e["modes"]]
    if not entries:
        return
    heights = [max(1.2, 0.32 * len(e["modes"]) + 0.6) for e in entries]
    fig, axes = plt.subplots(len(entries), 1, figsize=(10, sum(heights) + 1.2),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    colors = {"flowagent": "#1f77b4", "peer": "#999999"}
    for ax, e in zip(axes[:, 0], entries):
        labels, med, lo, hi, cols = [], [], [], [], []
        for mk, m in e["modes"].items():
            r = m["summary"]["ratio"]
            if not r:
                continue
            labels.append(MODES[mk].label)
            med.append(r["median"])
            lo.append(r["median"] - r["min"])
            hi.append(r["max"] - r["median"])
            cols.append(colors.get(MODES[mk].family, "#1f77b4"))
        y = list(range(len(labels)))
        # Bars start at 1x (the baseline), so a mode faster than baseline (noise) goes left.
        ax.barh(y, [v - 1.0 for v in med], left=1.0, xerr=[lo, hi], color=cols, capsize=2)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", lw=0.8)
        for i, v in enumerate(med):
            ax.text(v, i, f" {v:.2f}x", va="center", fontsize=7)
        what = "inside main()" if e["metric"] == "inner" else "whole process"
        ax.set_title(f"{e['workload']}: {WORKLOADS[e['workload']].label} ({what})",
                     fontsize=9, loc="left")
    m = out["machine"]
    fig.suptitle(f"flowagent overhead: median ratio to baseline (min–max), log scale\n"
                 f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['date']}",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out: dict[str, Any], plan: Plan, partial: bool) -> list[str]:
    os.makedirs(RESULTS, exist_ok=True)
    stem = os.path.join(RESULTS, out.get("stem") or ("smoke" if out.get("smoke") else
                        "quick" if out["quick"] else "latest"))
    paths = [stem + ".md", stem + ".json"]
    with open(stem + ".md", "w") as f:
        f.write(markdown(out, plan, partial))
    with open(stem + ".json", "w") as f:
        json.dump(out, f, indent=1, default=str)
    if not partial:
        try:
            chart(out, stem + ".png")
            paths.append(stem + ".png")
        except Exception as exc:  # the table and JSON matter more than the picture
            out["chart_error"] = repr(exc)
    return paths
