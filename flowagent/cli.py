"""Command line: ``flowagent run|runs|sessions|trace|export|sidecar``.

The single exit point is :func:`main`: a :class:`FlowagentError` becomes one line on stderr
and exit status 2; ``flowagent run`` exits with the program's own status.
"""

from __future__ import annotations

import os
import sys

from .errors import FlowagentError, NotFoundError, UsageError

TYPE_CHECKING = False  # `flowagent run` imports as little as it can: no typing, no argparse
if TYPE_CHECKING:
    import argparse
    from typing import Any, TextIO


def _parser(**kwargs: Any) -> argparse.ArgumentParser:
    """An ArgumentParser whose errors are UsageErrors (one line, exit 2). argparse is imported
    here, by the commands that need it, not by ``flowagent run``."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise UsageError(f"{message} (see 'flowagent {self.prog.split()[-1]} --help')"
                             if " " in self.prog else f"{message} (see 'flowagent --help')")

    return Parser(**kwargs)


# ---------------------------------------------------------------------------------------
# run

# Our options: option -> (setting, value name or None for a flag, the flag's value, help).
# One table for the parser below and for `flowagent run --help`.
RUN_OPTIONS: dict[str, tuple[str, str | None, object, str]] = {
    "--include": ("include", "GLOB", None,
                  "record modules matching this dotted-name glob (repeatable)"),
    "--exclude": ("exclude", "GLOB", None,
                  "never record modules matching this glob (repeatable)"),
    "--data-dir": ("data_dir", "DIR", None, "where runs are stored (.flowagent)"),
    "--store": ("store", "URL", None,
                "store to write into: a path, sqlite:///PATH or postgresql://... "
                "(the data directory's flowagent.db)"),
    "--backend": ("backend", "NAME", None, "auto, wrap, profile or monitor (auto)"),
    "--ring-size": ("ring_size", "SIZE", None, "bytes per process ring, e.g. 16MiB"),
    "--flush-interval-ms": ("flush_interval_ms", "MS", None,
                            "how often recorded calls are flushed to the ring (50)"),
    "--sample-rate": ("sample_rate", "FRACTION", None, "fraction of sessions recorded (1.0)"),
    "--max-data-size": ("max_data_size", "SIZE", None,
                        "data directory limit, oldest runs pruned first (2GiB; 0: none)"),
    "--cpu-time": ("cpu_time", None, True,
                   "also measure each call's CPU time (thread CPU clock)"),
    "--shape-every-call": ("shape_every_call", None, True,
                           "describe every call's shapes, not a budgeted sample"),
    "--no-nested": ("nested", None, False,
                    "do not record functions defined inside functions"),
    "--verbose": ("verbose", None, True,
                  "debug lines: backend choice, where each setting came from"),
    "--otlp-endpoint": ("otlp_endpoint", "URL", None,
                        "send each finished session as OpenTelemetry spans to this OTLP/HTTP "
                        "receiver (needs the otlp extra)"),
    "--service": ("service", "NAME", None,
                  "service name of this run (default: the script, module or program name)"),
}
_RUN_SHORT = {"-v": "--verbose"}
_REPEATABLE = {"include", "exclude"}
_RUN_USAGE = "flowagent run [OPTIONS] (SCRIPT | -m MODULE | -- PROGRAM) [ARGS...]"
# The kill switch's words, as config.py reads FLOWAGENT_ENABLED (tests/e2e/test_cli.py checks
# they agree): checked before config.py is even imported.
_OFF = ("0", "false", "no", "off")


def _takes_value(option: str) -> bool:
    spec = RUN_OPTIONS.get(_RUN_SHORT.get(option, option))
    return spec is not None and spec[1] is not None


def _run_help() -> None:
    p = _parser(prog="flowagent run", description="Run a program under the agent.",
                usage=_RUN_USAGE)
    for option, (_, metavar, _, text) in RUN_OPTIONS.items():
        short = [s for s, long in _RUN_SHORT.items() if long == option]
        if metavar is None:
            p.add_argument(*short, option, action="store_true", help=text)
        else:
            p.add_argument(*short, option, metavar=metavar, help=text)
    p.print_help()


def split_run_argv(argv: list[str]) -> tuple[list[str], str, str, list[str]]:
    """Split ``run`` arguments into (our options, target kind, target, program args).

    Our options end at the first positional argument, ``-m MODULE`` or ``--``: everything
    after belongs to the program, even if it looks like one of our options.
    """
    opts: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            if i + 1 >= len(argv):
                raise UsageError("'--' must be followed by a program to run")
            return opts, "program", argv[i + 1], argv[i + 2:]
        if a == "-m":
            if i + 1 >= len(argv):
                raise UsageError("-m needs a module name, e.g. 'flowagent run -m pkg.main'")
            return opts, "module", argv[i + 1], argv[i + 2:]
        if a.startswith("-m") and len(a) > 2 and not a.startswith("--"):
            return opts, "module", a[2:], argv[i + 1:]
        if a.startswith("-") and a != "-":
            opts.append(a)
            if _takes_value(a):
                if i + 1 >= len(argv):
                    raise UsageError(f"{a} needs a value")
                opts.append(argv[i + 1])
                i += 1
            i += 1
            continue
        return opts, "script", a, argv[i + 1:]
    if any(o in ("-h", "--help") for o in opts):
        _run_help()
        raise SystemExit(0)
    raise UsageError("nothing to run: give a script, '-m module' or '-- program' "
                     "(e.g. 'flowagent run app.py')")


def parse_run_options(opts: list[str]) -> dict[str, object]:
    """Our options, as :func:`split_run_argv` found them, as command-line settings for
    :func:`~flowagent.config.load_config` (which checks their values)."""
    settings: dict[str, Any] = {}
    i = 0
    while i < len(opts):
        arg = opts[i]
        i += 1
        name, eq, value = arg.partition("=")
        if name in ("-h", "--help"):
            _run_help()
            raise SystemExit(0)
        spec = RUN_OPTIONS.get(_RUN_SHORT.get(name, name))
        if spec is None:
            raise UsageError(f"unrecognized option {arg!r} (see 'flowagent run --help')")
        key, metavar, flag, _ = spec
        if metavar is None:
            if eq:
                raise UsageError(f"{name} takes no value (see 'flowagent run --help')")
            settings[key] = flag
            continue
        if not eq:
            value = opts[i]  # split_run_argv made sure it is there
            i += 1
        if key in _REPEATABLE:
            settings.setdefault(key, []).append(value)
        else:
            settings[key] = value
    return settings


def cmd_run(argv: list[str]) -> int:
    from .launcher import exec_plain, reserve_std_fds

    reserve_std_fds()
    opts, kind, name, args = split_run_argv(argv)
    settings = parse_run_options(opts)

    if os.environ.get("FLOWAGENT_ENABLED", "").strip().lower() in _OFF:
        # The production switch, taken before anything else is imported or read (a config
        # file too: a switched-off flowagent never stops a program): exec the program as is.
        exec_plain(kind, name, args)
    from .config import load_config
    from .launcher import resolve_target, run

    try:
        cwd = os.getcwd()
    except OSError as exc:  # deleted while the shell stood in it: the program may not care
        sys.stderr.write(f"flowagent: error: the working directory is unreadable "
                         f"({exc.strerror}); running the program without recording\n")
        exec_plain(kind, name, args)
    cfg = load_config(cwd, os.environ, settings)
    if not cfg.enabled:
        exec_plain(kind, name, args)
    target = resolve_target(kind, name, args, cwd)
    return run(cfg, target, cwd)


# ---------------------------------------------------------------------------------------
# reading commands

def _store(data_dir: str | None, store: str | None = None):
    from .config import load_config
    from .store.api import open_store, store_url

    cfg = load_config(os.getcwd(), os.environ, {k: v for k, v in (
        ("data_dir", data_dir), ("store", store)) if v})
    return open_store(store_url(cfg.data_dir, cfg.store), readonly=True)


def _run_id(store: Any, run: str | None) -> str:
    if run:
        if run == "latest" or store.run(run) is None:
            matches = [r["run_id"] for r in store.runs() if r["run_id"].startswith(run)]
            if run == "latest":
                matches = [store.latest_run()] if store.latest_run() else []
            if len(matches) != 1:
                raise NotFoundError(f"no run {run!r} in the store; 'flowagent runs' lists them")
            return matches[0]
        return run
    latest = store.latest_run()
    if latest is None:
        raise NotFoundError("the store has no runs yet; record one with 'flowagent run app.py'")
    return latest


def _run_refs(store: Any, specs: list[str] | None) -> list[Any]:
    """The runs ``--run`` names, each with its store: a run id (or prefix, or ``latest``) of
    the data directory in use, a data directory (its latest run), or ``DIR:RUN``."""
    from .reports.stitch import RunRef
    from .store.api import db_path, open_store

    refs = []
    for spec in specs or [None]:
        where, run = store, spec
        # a run id of the store in use wins over a directory of the same name in the cwd
        if _names_data_dir(spec) and (store is None or store.run(spec) is None):
            path, run = (spec, None) if os.path.isdir(spec) else spec.rpartition(":")[::2]
            where = open_store(db_path(path), readonly=True)
        refs.append(RunRef.of(where, _run_id(where, run)))
    return refs


def _names_data_dir(spec: str | None) -> bool:
    return bool(spec) and (os.path.isdir(spec) or os.path.isdir(spec.rpartition(":")[0]))


def _print_json(obj: Any, out: TextIO) -> None:
    """The --json output of every reading command."""
    import json

    json.dump(obj, out, indent=2, default=str)
    out.write("\n")


def _iso(ns: int | None) -> str:
    if not ns:
        return "-"
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _ms(ns: int | None) -> str:
    if ns is None:
        return "-"
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1_000_000:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e3:.1f} us"


def cmd_runs(ns: argparse.Namespace, out: TextIO) -> int:
    import json

    store = _store(ns.data_dir, ns.store)
    runs = store.runs()
    if ns.json:
        _print_json(runs, out)
        return 0
    if not runs:
        out.write("no runs yet; record one with 'flowagent run app.py'\n")
        return 0
    out.write(f"{'RUN':<24} {'STARTED (UTC)':<19} {'EXIT':>4} {'SESSIONS':>8} {'CALLS':>8} "
              f"{'ERRORS':>6} {'DROPPED':>7}  COMMAND\n")
    for r in runs:
        cmd = " ".join(json.loads(r["argv"] or "[]"))
        exit_code = "-" if r["exit_code"] is None else str(r["exit_code"])
        out.write(f"{r['run_id']:<24} {_iso(r['started_ns']):<19} {exit_code:>4} "
                  f"{r['sessions']:>8} {r['calls']:>8} {r['errors']:>6} "
                  f"{r['dropped_events']:>7}  {cmd}\n")
    return 0


def cmd_sessions(ns: argparse.Namespace, out: TextIO) -> int:
    store = _store(ns.data_dir, ns.store)
    run_id = _run_id(store, ns.run)
    rows = store.sessions(run_id, result=ns.result, limit=ns.limit, offset=0)
    if ns.json:
        _print_json(rows, out)
        return 0
    out.write(f"{'SESSION':<20} {'RESULT':<10} {'START (UTC)':<19} {'DURATION':>11} "
              f"{'CALLS':>6}  ROOT\n")
    for s in rows:
        out.write(f"{s['session_id']:<20} {s['result'] or 'open':<10} {_iso(s['started_ns']):<19} "
                  f"{_ms(s['duration_ns']):>11} {s['calls']:>6}  {s['name'] or '?'}\n")
    total = store.count_sessions(run_id)
    if total > len(rows):
        out.write(f"({len(rows)} of {total} sessions shown; --limit N shows more)\n")
    return 0


_MARKS = {"success": ("✓", "+"), "error": ("✗", "x"), "partial": ("~", "~"),
          "incomplete": ("…", "?")}


def _fmt_in(shape: dict[str, str] | None) -> str:
    if shape is None:
        return "(...)"  # shapes not sampled for this call (the shape budget)
    return "(" + ", ".join(f"{k}: {v}" for k, v in shape.items()) + ")"


def cmd_trace(ns: argparse.Namespace, out: TextIO) -> int:
    store = _store(ns.data_dir, ns.store)
    g = store.session_graph(ns.session_id)
    if g is None:
        raise NotFoundError(f"no session {ns.session_id!r}; 'flowagent sessions' lists them")
    if ns.json:
        from .reports.export.jsonfmt import session_json

        _print_json(session_json(g), out)
        return 0
    utf = (getattr(out, "encoding", None) or "").lower().replace("-", "") == "utf8"
    idx = 0 if utf else 1
    branch, last, pipe, blank = ("├─ ", "└─ ", "│  ", "   ") if utf else ("|- ", "`- ", "|  ", "   ")
    arrow = "→" if utf else "->"
    out.write(f"session {g['session_id']}  {g['name']}  {g['result_type']}"
              f"{'' if g['complete'] else ' (incomplete)'}\n")
    children: dict[Any, list[dict]] = {}
    for n in g["nodes"]:
        children.setdefault(n["parent_id"], []).append(n)
    roots = children.get(None, [])

    def show(n: dict, prefix: str, is_last: bool) -> None:
        mark = _MARKS.get(n["result_type"], ("?", "?"))[idx]
        dur = _ms(n["timestamp_end"] - n["timestamp_start"])
        outcome = n["exception_type"] if n["result_type"] == "error" else n["output_shape"]
        out.write(f"{prefix}{last if is_last else branch}{mark} {n['function_name']}  {dur}  "
                  f"{_fmt_in(n['input_shape'])} {arrow} {outcome or '?'}\n")
        kids = children.get(n["id"], [])
        for i, k in enumerate(kids):
            show(k, prefix + (blank if is_last else pipe), i == len(kids) - 1)

    for i, r in enumerate(roots):
        show(r, "", i == len(roots) - 1)
    return 0


def cmd_export(ns: argparse.Namespace, out: TextIO) -> int:
    from .reports.export import FORMATS

    if ns.format in ("otlp", "otlp-json"):
        from .otlpcmd import export_otlp

        return export_otlp(ns, _store(ns.data_dir, ns.store), _run_id, out)
    # Runs named by their data directories need no store of their own (unless one is named).
    store = _store(ns.data_dir, ns.store) if ns.store or ns.session or not ns.run \
        or not all(map(_names_data_dir, ns.run)) else None
    fmt = FORMATS[ns.format]
    if ns.aggregate and (ns.format != "speedscope" or ns.session):
        raise UsageError("--aggregate goes with --format speedscope and a run, not a session")
    if ns.session:
        g = store.session_graph(ns.session)
        if g is None:
            raise NotFoundError(f"no session {ns.session!r}; 'flowagent sessions' lists them")
    from .reports import stitch

    refs = _run_refs(store, ns.run)
    if ns.session and len(refs) > 1:
        # The session with the requests it made to the other runs' services.
        at = [i for i, r in enumerate(refs) if r.run_id == g["run_id"]]
        if at:
            g = stitch.session(refs, at[0], ns.session) or g
    target: TextIO = open(ns.output, "w", encoding="utf-8") if ns.output else out
    try:
        if ns.session:
            target.write(fmt.session(g))  # type: ignore[misc]
        elif ns.aggregate:
            # One flame graph of every kept session: collapsed stacks as a sampled profile.
            from .reports.export.collapsed import collapsed_stacks
            from .reports.export.speedscope import merged_speedscope

            merged_speedscope(collapsed_stacks(stitch.sessions(refs)), target)
        elif fmt.merged is not None:
            from .model.graph import from_aggregates, merge_all, to_contract

            graphs = (from_aggregates(a) for a in stitch.aggregates(refs))
            target.write(fmt.merged(to_contract(merge_all(graphs))))  # type: ignore[arg-type]
        else:
            # Trace formats: every kept session of the runs, streamed one at a time; a
            # request one run made to another is inside the session that made it.
            fmt.sessions(stitch.sessions(refs), target)  # type: ignore[misc]
    finally:
        if ns.output:
            target.close()
    if ns.output:
        sys.stderr.write(f"flowagent: wrote {ns.output}\n")
    return 0


def _table(out: TextIO, title: str, header: list[str], rows: list[list[Any]],
           widths: list[int]) -> None:
    out.write(f"\n{title}\n")
    fmt = "  ".join(f"{{:{'<' if i == len(widths) - 1 or w < 0 else '>'}{abs(w)}}}"
                    for i, w in enumerate(widths))
    out.write(fmt.format(*header).rstrip() + "\n")
    for r in rows:
        out.write(fmt.format(*(str(c) for c in r)).rstrip() + "\n")


def cmd_stats(ns: argparse.Namespace, out: TextIO) -> int:
    from .reports.stats import report

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
    from .reports.diff import diff

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
    from .reports.stubs import FunctionShapes, generate_stubs
    from .reports.stats import shape_variants, shapes_and_drift

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


def cmd_control(ns: argparse.Namespace, out: TextIO) -> int:
    from .config import load_config
    from .sidecar import control
    from .store.api import open_store, store_url

    cfg = load_config(os.getcwd(), os.environ, {k: v for k, v in (
        ("data_dir", ns.data_dir), ("store", getattr(ns, "store", None))) if v})
    store = open_store(store_url(cfg.data_dir, cfg.store), readonly=True)
    run_id = _run_id(store, ns.run)
    run = store.run(run_id)
    if run and run.get("ended_ns"):
        raise UsageError(f"run {run_id} has ended; control applies to a run in progress")
    if ns.sample_rate is not None and not 0.0 <= ns.sample_rate <= 1.0:
        raise UsageError("--sample-rate takes a fraction between 0 and 1")
    paused = True if ns.pause else False if ns.resume else None
    state = control.write(os.path.join(cfg.data_dir, "runs", run_id), paused, ns.sample_rate)
    out.write(f"run {run_id}: {_one_line_json(state)}\n")
    return 0


def cmd_sidecar(ns: argparse.Namespace, out: TextIO) -> int:
    """Store what a run's rings still hold after its sidecar died, or when it never started
    (the run then has no row in the store yet: it is made now)."""
    from .config import load_config
    from .sidecar.__main__ import run as run_sidecar
    from .store.api import kind_of, open_store, sqlite_path, store_url

    cfg = load_config(os.getcwd(), os.environ, {k: v for k, v in (
        ("data_dir", ns.data_dir), ("store", getattr(ns, "store", None))) if v})
    db = store_url(cfg.data_dir, cfg.store)
    rings = os.path.join(cfg.data_dir, "runs", ns.resume, "rings")
    never_started = os.path.isdir(rings) and not (
        (kind_of(db) != "sqlite" or os.path.exists(sqlite_path(db)))
        and open_store(db, readonly=True).run(ns.resume) is not None)
    run_id = ns.resume if never_started else _run_id(open_store(db, readonly=True), ns.resume)
    run_dir = os.path.join(cfg.data_dir, "runs", run_id)
    summary = run_sidecar(run_dir, db, run_id, 0.02, resume=not never_started, follow=False)
    if never_started:
        store = open_store(db, data_dir=cfg.data_dir)
        store.set_run_status(run_id, "sidecar-failed")
        store.close()
    out.write(_one_line_json(summary) + "\n")
    return 0


def _one_line_json(obj: Any) -> str:
    import json

    return json.dumps(obj)


def _read_parser() -> argparse.ArgumentParser:
    p = _parser(prog="flowagent", description="Record how a Python program really flows.")
    p.add_argument("--version", action="store_true")
    sub = p.add_subparsers(dest="command", parser_class=type(p))
    sub.add_parser("run", help="run a program under the agent (see 'flowagent run --help')",
                   add_help=False)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data-dir", metavar="DIR")
        sp.add_argument("--store", metavar="URL",
                        help="store to read: a path, sqlite:///PATH or postgresql://... "
                             "(default: the data directory's flowagent.db)")

    sp = sub.add_parser("runs", help="list recorded runs")
    common(sp)
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("sessions", help="list the sessions of a run")
    common(sp)
    sp.add_argument("--run", metavar="RUN", help="run id or prefix (default: latest)")
    sp.add_argument("--result", choices=("success", "error", "partial", "incomplete"))
    sp.add_argument("--limit", type=int, default=200)
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("trace", help="show one session as a call tree")
    common(sp)
    sp.add_argument("session_id")
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("export", help="write graphs in standard formats")
    common(sp)
    sp.add_argument("--format", "-f", required=True,
                    choices=("json", "dot", "mermaid", "chrome", "speedscope", "collapsed",
                             "otlp", "otlp-json"))
    sp.add_argument("--run", action="append", metavar="RUN",
                    help="run id, data directory or DIR:RUN (repeatable: runs are merged "
                         "and requests between their services stitched); default: latest")
    sp.add_argument("--session", metavar="ID", help="export one session instead")
    sp.add_argument("--aggregate", action="store_true",
                    help="speedscope only: one sampled profile of all sessions (a merged "
                         "flame graph) instead of one evented profile per thread")
    sp.add_argument("-o", "--output", metavar="FILE")
    sp.add_argument("--service", metavar="NAME",
                    help="otlp only: service.name of the spans (default: the program's name)")
    sp = sub.add_parser("stats", help="profiles, flow variants, error clusters, paths")
    common(sp)
    sp.add_argument("--run", metavar="RUN")
    sp.add_argument("--top", type=int, default=15, help="rows per table (15)")
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("diff", help="what changed between two runs")
    common(sp)
    sp.add_argument("run_a", metavar="RUN_A")
    sp.add_argument("run_b", metavar="RUN_B")
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("stubs", help="write .pyi stubs with TypedDicts from observed shapes")
    common(sp)
    sp.add_argument("--run", metavar="RUN")
    sp.add_argument("-o", "--output", metavar="DIR", required=True)
    sp = sub.add_parser("control", help="pause/resume a running recording, change sampling")
    common(sp)
    sp.add_argument("--run", metavar="RUN", help="default: latest")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--pause", action="store_true")
    g.add_argument("--resume", action="store_true")
    sp.add_argument("--sample-rate", type=float, metavar="FRACTION")
    sp = sub.add_parser("sidecar", help="re-drain the rings of a run (after a sidecar crash)")
    common(sp)
    sp.add_argument("--resume", metavar="RUN", required=True)
    from .viewcmd import add_parser as add_view_parser

    add_view_parser(sub)
    from .reports.html import add_parser as add_report_parser

    add_report_parser(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "run":
            from .launcher import exit_like

            exit_like(cmd_run(argv[1:]))
        from .viewcmd import cmd_view
        from .reports.html import cmd_report

        ns = _read_parser().parse_args(argv)
        if ns.version:
            from . import __version__

            print(f"flowagent {__version__}")
            sys.exit(0)
        handlers = {"runs": cmd_runs, "sessions": cmd_sessions, "trace": cmd_trace,
                    "export": cmd_export, "stats": cmd_stats, "diff": cmd_diff, "stubs": cmd_stubs, "control": cmd_control, "view": cmd_view, "report": cmd_report,
                    "sidecar": cmd_sidecar}
        if ns.command not in handlers:
            _read_parser().print_help()
            sys.exit(0 if not argv else 2)
        sys.exit(handlers[ns.command](ns, sys.stdout))
    except FlowagentError as exc:
        sys.stderr.write(f"flowagent: error: {exc}\n")
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:
        # A database that opened but turns out damaged further in (a corrupt page met by a
        # query) is the same one clear line as one that does not open.
        from .store.api import damage_error

        damaged = damage_error(exc)
        if damaged is None:
            raise
        sys.stderr.write(f"flowagent: error: {damaged}\n")
        sys.exit(damaged.exit_code)


if __name__ == "__main__":
    main()
