"""Viewer benchmark: time to first render of the viewer's pages and the static report at scale.

    .venv/bin/python benchmarks/viewer_bench.py [--sessions 100000] [--big-session 10000]
                                                [--functions 1000] [--keep DIR] [--no-browser]

Builds a store the way the sidecar lays it out (rows written directly with SQLiteStore in
writer mode): one run of ``--sessions`` request sessions over a layered program of
``--functions`` functions in 30 modules, with handled and unhandled errors, plus one session
of ``--big-session`` calls (a loop and a deep recursion). Then times, with Flask's test client,
the server-side render of each page and the writing of the static report, and, when Chromium is
installed, the time until each page is usable in a real browser (first paint of the readable
map, the flows tree, the sequence diagram; tree rows present) and until the static report is
drawn from disk. Prints a markdown table.
Not a test: numbers depend on the machine; compare runs on the same one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

from flowagent.store.api import db_path

from flowagent.store.sqlite import SQLiteStore

RUN_ID = "20260101-000000-bench"
PK = "benchpk00001"
PID = 4242
MAIN_THREAD = 140000000000001
PACKAGES = ("app.api", "app.services", "app.domain", "app.storage", "app.util")
SUCCESS, ERROR, PARTIAL = 0, 1, 2


class _Ids:
    """Interned shape texts (the store's ``shapes`` table)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    def __call__(self, text: str) -> int:
        return self.store.shape_id(text)


def _program(n_functions: int, rng: random.Random) -> list[dict[str, Any]]:
    """Functions of a layered program: api → services → domain → storage → util."""
    per_module = max(1, n_functions // 30)
    fns: list[dict[str, Any]] = []
    for layer, pkg in enumerate(PACKAGES):
        for m in range(6):
            module = f"{pkg}.{['users', 'orders', 'billing', 'catalog', 'search', 'audit'][m]}"
            cls = f"{module.rsplit('.', 1)[1].capitalize()}{['Service', 'Repo', 'Model', 'Store', 'Helper'][layer]}"
            for i in range(per_module):
                if i < per_module * 2 // 3:
                    qual, kind = f"{cls}.{['get', 'list', 'create', 'update', 'delete', 'validate', 'load', 'save', 'render', 'check', 'find', 'count'][i % 12]}{i // 12 or ''}", "method"
                    params = ["self", "key", "options"]
                else:
                    qual, kind = f"{['parse', 'format', 'normalize', 'encode', 'hash', 'retry'][i % 6]}_{module.rsplit('.', 1)[1]}{i}", "function"
                    params = ["value"]
                fns.append({"name": f"{module}:{qual}", "module": module, "qualname": qual,
                            "kind": kind, "params": params, "layer": layer})
    # Real programs have locality: a domain's api calls its own service, which calls its own
    # model and repository, plus a few shared utilities; now and then a call crosses domains.
    domain = lambda g: g["module"].rsplit(".", 1)[1]  # noqa: E731
    for f in fns:
        lower = [g for g in fns if g["layer"] == f["layer"] + 1]
        own = [g for g in lower if domain(g) == domain(f)] or lower
        same = [g for g in fns if g["module"] == f["module"] and g is not f
                and g["layer"] == f["layer"] and g["qualname"] > f["qualname"]]
        callees = rng.sample(own, min(len(own), rng.randint(1, 3))) if lower else []
        if lower and rng.random() < 0.15:
            callees.append(rng.choice(lower))
        if f["layer"] < 3 and rng.random() < 0.3:
            callees.append(rng.choice([g for g in fns if g["layer"] == 4]))
        if same and rng.random() < 0.3:
            callees.append(rng.choice(same))
        f["callees"] = callees
    return fns


def build_store(data_dir: str, *, sessions: int = 100_000, big_session: int = 10_000,
                functions: int = 330, seed: int = 7) -> dict[str, Any]:
    """Write a realistic store into ``data_dir``; returns ids useful to the caller."""
    rng = random.Random(seed)
    os.makedirs(data_dir, exist_ok=True)
    store = SQLiteStore(db_path(data_dir))
    shape = _Ids(store)
    fns = _program(functions, rng)
    routes = [f"<request>:{verb} /api/v1/{noun}{suffix}" for verb, noun, suffix in (
        (v, n, s) for v in ("GET", "POST") for n in ("users", "orders", "invoices", "items", "search")
        for s in ("", "/<int:id>"))]
    api = [f for f in fns if f["layer"] == 0]
    route_fns = [{"name": r, "module": "<request>", "qualname": r.split(":", 1)[1],
                  "kind": "request", "params": [], "layer": -1, "callees": rng.sample(api, 2)}
                 for r in routes]
    big_root = {"name": "app.jobs:nightly_rebuild", "module": "app.jobs",
                "qualname": "nightly_rebuild", "kind": "function", "params": [], "layer": -1,
                "callees": []}
    walk = {"name": "app.jobs:walk_tree", "module": "app.jobs", "qualname": "walk_tree",
            "kind": "function", "params": ["node", "depth"], "layer": -1, "callees": []}
    everything = route_fns + fns + [big_root, walk]
    fid = {f["name"]: i + 1 for i, f in enumerate(everything)}
    t_base = 1_767_225_600_000_000_000  # 2026-01-01
    in_shapes = {f["name"]: shape(json.dumps([{"self": "Service", "key": "int", "options":
                                               "dict[str, str]", "value": "str",
                                               "node": "Node", "depth": "int"}[p]
                                              for p in f["params"]])) for f in everything}
    out_shape = [shape(s) for s in ("None", "dict{id:int,name:str}", "list[Row]", "int", "str",
                                    "HTTP 200", "HTTP 404", "HTTP 500")]
    exc_shapes = [shape("ValueError"), shape("KeyError"), shape("app.errors.NotFound")]

    # Session templates: call trees walked from a route, reused with shifted timestamps.
    templates = []
    for k in range(400):
        root = rng.choice(route_fns)
        calls: list[list[int]] = []  # [cid, parent, fid, caller_fid, in, out, res, exc, t0, t1]

        def visit(f: dict[str, Any], parent: int, caller: int, t: int, depth: int,
                  calls: list[list[int]] = calls) -> int:
            cid = len(calls) + 1
            row = [cid, parent, fid[f["name"]], caller, in_shapes[f["name"]],
                   rng.choice(out_shape[:5]), SUCCESS, 0, t, 0]
            calls.append(row)
            t += rng.randint(2_000, 20_000)
            if depth < 6 and len(calls) < 14:
                for g in f["callees"]:
                    if rng.random() < 0.75:
                        t = visit(g, cid, fid[f["name"]], t, depth + 1) + rng.randint(500, 5_000)
            row[9] = t
            return t

        visit(root, 0, 0, 0, 0)
        calls[0][5] = out_shape[5]
        if k % 10 == 0 and len(calls) > 3:  # an error raised at a leaf
            leaf = calls[-1]
            leaf[6], leaf[7], leaf[5] = ERROR, rng.choice(exc_shapes), 0
            handled = k % 20 == 0
            p = leaf[1]
            by = {c[0]: c for c in calls}
            while p:
                c = by[p]
                if handled and c[1] and by[c[1]][1] == 0:  # caught just below the handler
                    c[6] = PARTIAL
                    handled = False
                    up: list[int] | None = by[c[1]]
                    while up:
                        up[6] = PARTIAL
                        up = by.get(up[1])
                    break
                c[6], c[7], c[5] = ERROR, leaf[7], 0
                p = c[1]
            if calls[0][6] == ERROR:
                calls[0][6], calls[0][7], calls[0][5] = ERROR, 0, out_shape[7]
        templates.append(calls)

    agg_nodes: dict[int, list[int]] = {}
    agg_edges: dict[tuple[int, int, int], list[int]] = {}
    agg_shapes: dict[tuple[int, str, int], int] = {}
    agg_paths: dict[str, int] = {}
    names = {v: k for k, v in fid.items()}

    def account(calls: list[list[int]], weight: int) -> None:
        by = {c[0]: c for c in calls}
        child_time: dict[int, int] = {}
        for c in calls:
            if c[1]:
                child_time[c[1]] = child_time.get(c[1], 0) + c[9] - c[8]
        for c in calls:
            dur = c[9] - c[8]
            n = agg_nodes.setdefault(c[2], [0, 0, 0, 0, 0, dur, dur, 0])
            n[0] += weight
            n[1] += weight * (c[6] == ERROR)
            n[2] += weight * (c[6] == PARTIAL)
            n[3] += weight * dur
            n[4] += weight * max(dur - child_time.get(c[0], 0), 0)
            n[5], n[6] = min(n[5], dur), max(n[6], dur)
            n[7] += weight * (c[1] == 0)
            if c[1]:
                e = agg_edges.setdefault((by[c[1]][2], c[2], c[6]), [0, 0])
                e[0] += weight
                e[1] += weight * dur
            agg_shapes[(c[2], "in", c[4])] = agg_shapes.get((c[2], "in", c[4]), 0) + weight
            if c[5]:
                agg_shapes[(c[2], "out", c[5])] = agg_shapes.get((c[2], "out", c[5]), 0) + weight
        leaves = {c[0] for c in calls} - {c[1] for c in calls}
        for leaf in leaves:
            path: list[str] = []
            node: list[int] | None = by[leaf]
            while node:
                path.append(names[node[2]])
                node = by.get(node[1])
            key = json.dumps(path[::-1])
            agg_paths[key] = agg_paths.get(key, 0) + weight

    uses = [0] * len(templates)
    with store.transaction() as db:
        db.execute("INSERT OR REPLACE INTO runs(run_id, started_ns, ended_ns, argv, cwd, status, "
                   "exit_code, backend, processes) VALUES(?,?,?,?,?,?,?,?,1)",
                   (RUN_ID, t_base, t_base + 3_600 * 10**9, json.dumps(["bench_app.py"]),
                    "/srv/bench", "finished", 0, "wrap"))
        db.execute("INSERT OR REPLACE INTO processes(run_id, pk, pid, ppid, info, started_ns, "
                   "closed) VALUES(?,?,?,?,?,?,1)",
                   (RUN_ID, PK, PID, 1, json.dumps({"threads": {
                       str(MAIN_THREAD): "MainThread", str(MAIN_THREAD + 1): "worker-1"}}),
                    t_base))
        db.executemany("INSERT OR REPLACE INTO functions(run_id, fid, name, module, qualname, "
                       "file, line, kind, params) VALUES(?,?,?,?,?,?,?,?,?)",
                       [(RUN_ID, fid[f["name"]], f["name"], f["module"], f["qualname"],
                         f"/srv/bench/{f['module'].replace('.', '/')}.py", 10 + i, f["kind"],
                         json.dumps(f["params"])) for i, f in enumerate(everything)])
        session_rows, session_calls = [], []
        t = t_base
        for s in range(1, sessions + 1):
            k = rng.randrange(len(templates))
            uses[k] += 1
            tpl = templates[k]
            t += rng.randint(5_000, 60_000)
            head = tpl[0]
            thread = MAIN_THREAD + (s % 2)
            errors = sum(1 for c in tpl if c[6] == ERROR)
            result = ("success", "error", "partial")[head[6]]
            session_rows.append((s, f"{PK}-{s}", RUN_ID, names[head[2]], head[2], PID, PK,
                                 "MainThread" if thread == MAIN_THREAD else "worker-1", result,
                                 1, t + head[8], t + head[9], head[9] - head[8], len(tpl),
                                 errors, f"v{k:04d}", 1))
            session_calls.append((f"{PK}-{s}", [(*c[:8], t + c[8], t + c[9], thread)
                                                 for c in tpl]))
        db.executemany("INSERT INTO main.sessions(sid, session_id, run_id, name, root_fid, pid, pk, "
                       "thread, result, complete, started_ns, ended_ns, duration_ns, calls, "
                       "errors, variant, tree_kept) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       session_rows)
        for session_id, rows in session_calls:
            store.add_calls(session_id, rows)
        for k, n in enumerate(uses):
            if n:
                account(templates[k], n)

        # The big session: a loop over records (5 calls each) then a deep recursion.
        big: list[list[int]] = [[1, 0, fid[big_root["name"]], 0, in_shapes[big_root["name"]],
                                 out_shape[0], SUCCESS, 0, 0, 0]]
        clock = 1_000
        helpers = [f for f in fns if f["layer"] >= 2][:5]
        depth_budget = 400
        loop_calls = big_session - 1 - depth_budget
        while len(big) < 1 + loop_calls:
            parent = len(big) + 1
            big.append([parent, 1, fid[helpers[0]["name"]], big[0][2],
                        in_shapes[helpers[0]["name"]], out_shape[1], SUCCESS, 0, clock, 0])
            for h in helpers[1:]:
                if len(big) >= 1 + loop_calls:
                    break
                clock += 800
                big.append([len(big) + 1, parent, fid[h["name"]], fid[helpers[0]["name"]],
                            in_shapes[h["name"]], out_shape[3], SUCCESS, 0, clock,
                            clock + 600])
            clock += 900
            big[parent - 1][9] = clock
            clock += 200
        parent, chain = 1, []
        for d in range(big_session - len(big)):
            cid = len(big) + 1
            big.append([cid, parent, fid[walk["name"]],
                        fid[walk["name"]] if d else big[0][2], in_shapes[walk["name"]],
                        out_shape[3], SUCCESS, 0, clock, 0])
            chain.append(big[-1])
            parent = cid
            clock += 150
        for c in reversed(chain):  # the recursion unwinds: innermost ends first
            clock += 100
            c[9] = clock
        big[0][9] = clock + 1_000
        big_id = sessions + 1
        start = t + 10**9
        db.execute("INSERT INTO main.sessions(sid, session_id, run_id, name, root_fid, pid, pk, "
                   "thread, result, complete, started_ns, ended_ns, duration_ns, calls, errors, "
                   "variant, tree_kept) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (big_id, f"{PK}-{big_id}", RUN_ID, big_root["name"], big[0][2], PID, PK,
                    "MainThread", "success", 1, start, start + big[0][9], big[0][9], len(big),
                    0, "vbig", 1))
        store.add_calls(f"{PK}-{big_id}", [(*c[:8], start + c[8], start + c[9], MAIN_THREAD)
                                           for c in big])
        account(big, 1)

        db.executemany("INSERT OR REPLACE INTO graph_nodes(run_id, fid, calls, errors, partials, "
                       "total_ns, self_ns, min_ns, max_ns, roots) VALUES(?,?,?,?,?,?,?,?,?,?)",
                       [(RUN_ID, f, *v) for f, v in agg_nodes.items()])
        db.executemany("INSERT OR REPLACE INTO graph_edges(run_id, caller_fid, callee_fid, result, "
                       "count, total_ns) VALUES(?,?,?,?,?,?)",
                       [(RUN_ID, a, b, r, *v) for (a, b, r), v in agg_edges.items()])
        db.executemany("INSERT OR REPLACE INTO shape_counts(run_id, fid, io, shape_sid, count, "
                       "first_session) VALUES(?,?,?,?,?,?)",
                       [(RUN_ID, f, io, sh, n, f"{PK}-1") for (f, io, sh), n in agg_shapes.items()])
        db.executemany("INSERT OR REPLACE INTO paths(run_id, path, count) VALUES(?,?,?)",
                       [(RUN_ID, p, n) for p, n in agg_paths.items()])
        total_calls = sum(len(templates[k]) * n for k, n in enumerate(uses)) + len(big)
        total_errors = sum(sum(1 for c in templates[k] if c[6] == ERROR) * n
                           for k, n in enumerate(uses))
        db.execute("UPDATE runs SET sessions=?, calls=?, errors=?, produced_events=? "
                   "WHERE run_id=?", (sessions + 1, total_calls, total_errors, total_calls,
                                      RUN_ID))
    store.close()
    return {"run_id": RUN_ID, "big_session": f"{PK}-{big_id}", "small_session": f"{PK}-1",
            "functions": len(everything), "sessions": sessions + 1, "calls": total_calls}


# -- measuring ---------------------------------------------------------------------------------

def _time(fn, repeat: int = 5) -> float:
    """Median wall time in ms over ``repeat`` runs (after one warm-up)."""
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def measure_flask(data_dir: str, ids: dict[str, Any]) -> dict[str, float]:
    from flowagent_viewer import create_app

    client = create_app({"DATA_DIR": data_dir}).test_client()
    run = ids["run_id"]

    def get(url: str):
        def go() -> None:
            r = client.get(url)
            assert r.status_code == 200, (url, r.status_code)
        return go

    return {
        "session page, 10 000 calls": _time(get(f"/sessions/{ids['big_session']}")),
        "session page, 10 000 calls: whole tree loaded":
            _time(get(f"/api/sessions/{ids['big_session']}/tree")),
        "session page, 10 calls": _time(get(f"/sessions/{ids['small_session']}")),
        "architecture page (auto level)": _time(get(f"/runs/{run}/graph")),
        "architecture page, function level": _time(get(f"/runs/{run}/graph?level=function")),
        "sessions list, first page": _time(get(f"/?run={run}")),
        "sessions list, page 1 000": _time(get(f"/?run={run}&page=1000")),
        "sessions list, slowest first": _time(get(f"/?run={run}&order=duration")),
        "sessions list, result=error": _time(get(f"/?run={run}&result=error")),
        "sessions list, root filter": _time(get(f"/?run={run}&root=orders")),
        "sessions list, function search": _time(get(f"/?run={run}&q=AuditHelper"), repeat=3),
        "stats page": _time(get(f"/runs/{run}/stats")),
        "flows page (busiest entry)": _time(get(f"/runs/{run}/flows"), repeat=3),
        "sequence page, 10 000 calls": _time(get(f"/sessions/{ids['big_session']}/sequence")),
    }


def measure_report(data_dir: str, ids: dict[str, Any]) -> tuple[float, str]:
    """Wall time of ``flowagent report`` (ms) and the file it wrote."""
    out = os.path.join(data_dir, "report.html")
    t0 = time.perf_counter()
    import subprocess

    subprocess.run([sys.executable, "-m", "flowagent", "report", "--data-dir", data_dir,
                    "--run", ids["run_id"], "-o", out], check=True, capture_output=True,
                   timeout=1800)
    return (time.perf_counter() - t0) * 1000, out


def measure_browser(data_dir: str, ids: dict[str, Any], report: str | None = None
                    ) -> dict[str, float] | None:
    """Time until usable in headless Chromium (None when Chromium or Playwright is absent)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    import re
    import subprocess

    server = subprocess.Popen([sys.executable, "-m", "flowagent.cli.view", "--data-dir", data_dir,
                               "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"(http://\S+)", server.stdout.readline()).group(1).rstrip("/")  # type: ignore
        out: dict[str, float] = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync"])
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            page.set_default_timeout(300_000)  # 1 000 functions on a loaded machine
            run = ids["run_id"]
            page.goto(f"{url}/runs/{run}/graph")  # warm the cache for the vendored assets
            page.wait_for_function("() => window.FA && FA.graphReady === true")
            for label, path, ready in (
                ("session page, 10 000 calls", f"/sessions/{ids['big_session']}",
                 "() => document.querySelectorAll('#tree .row').length > 0"),
                ("session page, 10 000 calls: whole tree loaded", f"/sessions/{ids['big_session']}",
                 "() => window.FA && FA.treeLoaded === true"),
                ("architecture page (auto level)", f"/runs/{run}/graph",
                 "() => window.FA && FA.graphReady === true"),
                ("architecture page, function level", f"/runs/{run}/graph?level=function",
                 "() => window.FA && FA.graphReady === true"),
                ("sessions list, first page", f"/?run={run}",
                 "() => document.querySelectorAll('#sessions-body tr').length > 0"),
                ("flows page (busiest entry)", f"/runs/{run}/flows",
                 "() => window.FA && FA.flowReady === true"),
                ("sequence page, 10 000 calls", f"/sessions/{ids['big_session']}/sequence",
                 "() => window.FA && FA.sequenceReady === true"),
            ):
                samples = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    page.goto(url + path)
                    page.wait_for_function(ready, timeout=120_000)
                    samples.append((time.perf_counter() - t0) * 1000)
                out[label] = statistics.median(samples)
            if report:  # the static report, opened from disk
                samples = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    page.goto("file://" + report)
                    page.wait_for_function("() => window.FA && FA.reportReady && FA.graphReady",
                                           timeout=300_000)
                    samples.append((time.perf_counter() - t0) * 1000)
                out["static report (flowagent report), first paint"] = statistics.median(samples)
            browser.close()
        return out
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--big-session", type=int, default=10_000)
    ap.add_argument("--functions", type=int, default=1000)
    ap.add_argument("--keep", metavar="DIR", help="build the store in DIR and keep it")
    ap.add_argument("--no-browser", action="store_true")
    a = ap.parse_args()
    data_dir = a.keep or tempfile.mkdtemp(prefix="flowagent-viewer-bench-")
    try:
        t0 = time.perf_counter()
        if a.keep and os.path.exists(db_path(data_dir)):
            store = SQLiteStore(db_path(data_dir), readonly=True)
            big = store.db.execute("SELECT session_id FROM sessions ORDER BY calls DESC "
                                   "LIMIT 1").fetchone()[0]
            ids = {"run_id": RUN_ID, "big_session": big, "small_session": f"{PK}-1",
                   "functions": len(store.functions(RUN_ID)),
                   "sessions": store.count_sessions(RUN_ID),
                   "calls": store.run(RUN_ID)["calls"]}  # type: ignore[index]
            store.close()
        else:
            ids = build_store(data_dir, sessions=a.sessions, big_session=a.big_session,
                              functions=a.functions)
        build_s = time.perf_counter() - t0
        flask = measure_flask(data_dir, ids)
        report_ms, report = measure_report(data_dir, ids)
        flask["static report (flowagent report), written"] = report_ms
        browser = None if a.no_browser else measure_browser(data_dir, ids, report)
        print(f"\nstore: {ids['sessions']:,} sessions, {ids['calls']:,} calls, "
              f"{ids['functions']} functions (built in {build_s:.1f} s)\n")
        print("| page | server render (Flask test client, median) | usable in Chromium (median) |")
        print("|---|---:|---:|")
        labels = [*flask, *(k for k in browser or {} if k not in flask)]
        for label in labels:
            f = f"{flask[label]:.1f} ms" if label in flask else "–"
            b = f"{browser[label]:.0f} ms" if browser and label in browser else "–"
            print(f"| {label} | {f} | {b} |")
        if browser is None and not a.no_browser:
            print("\n(Chromium or Playwright not found: browser timings skipped)")
    finally:
        if not a.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
