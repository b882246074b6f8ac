"""Real programs nobody here wrote, under every tool, side by side in one run:
``python benchmarks/run.py --real [--pairs N]`` (writes ``results/real-PYTHON.{md,json}``).

* ``rst2html``: docutils (pinned in requirements.txt) turning its own reStructuredText
  specification (``docs/ref/rst/restructuredtext.txt`` from the docutils sdist, downloaded
  once into ``benchmarks/.cache``) into HTML: ``python -m docutils SPEC OUT``.
* ``pygments``: Pygments highlighting a large Python file (the standard library's
  ``_pydecimal.py``, ~6,000 lines) as a full HTML page: ``python -m pygments -f html ...``.
* ``flask_http``: a Flask app (``real_flask_app.py``, written to the run's directory) served
  by werkzeug's HTTP server, one request at a time over real sockets, driven by this process
  (a second process to the server); the time is the client's, for the whole request mix.

Modes: plain Python, cProfile, VizTracer restricted to the library's own files (with the frames
that lead into them, without which it records nothing; its calls in the library's files are
counted, so a restriction that records nothing shows), pyinstrument (sampling), and flowagent recording the library
(``--include LIB --include 'LIB.*'``) with each tracer core (``wrap``, ``profile``, and on
Python 3.12+ ``monitor``). Every mode runs in interleaved pairs with plain Python (plain, mode,
plain, mode, ...); the ratio is per pair, the table shows the median. *Calls* is what the mode
recorded (flowagent: calls stored in the run; cProfile: calls it counted in the library's
files; VizTracer: function entries in its trace), and *ns per call* is the median added time
per pair divided by those calls.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import pstats
import re
import runpy
import shutil
import socketserver
import statistics
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
CACHE = os.path.join(HERE, ".cache")
PY = sys.executable
DOCUTILS = "0.21.2"  # as pinned in requirements.txt: the spec comes from the same release
SPEC = f"docutils-{DOCUTILS}/docs/ref/rst/restructuredtext.txt"
REQUESTS = 600

APP = '''
import sys, threading
from flask import Flask, abort, jsonify, request
from werkzeug.serving import make_server

app = Flask(__name__)
PRODUCTS = {i: {"id": i, "name": f"product {i}", "price": round(i * 1.37, 2),
                "tags": [f"t{i % 7}", f"t{i % 11}"]} for i in range(200)}
CART = []


@app.get("/products/<int:pid>")
def product(pid):
    if pid not in PRODUCTS:
        abort(404)
    return jsonify(PRODUCTS[pid])


@app.get("/products")
def products():
    tag = request.args.get("tag")
    return jsonify([p for p in PRODUCTS.values() if tag is None or tag in p["tags"]][:20])


@app.post("/cart")
def add():
    item = request.get_json()
    if not isinstance(item, dict) or item.get("id") not in PRODUCTS:
        return jsonify(error="unknown product"), 400
    CART.append(item)
    return jsonify(items=len(CART), total=sum(PRODUCTS[i["id"]]["price"] for i in CART))


@app.get("/quit")
def quit():
    threading.Thread(target=server.shutdown).start()
    return "bye"


server = make_server("127.0.0.1", 0, app)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(server.server_port))
import os
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
server.serve_forever()
'''


@dataclass
class Program:
    key: str
    label: str
    libs: tuple[str, ...]           # top-level packages recorded / restricted to
    target: list[str] = field(default_factory=list)  # ["-m", mod, ...] or [script, ...]
    server: bool = False

    def lib_dirs(self) -> list[str]:
        site = sysconfig.get_paths()["purelib"]
        return [os.path.join(site, lib) for lib in self.libs]


def _spec() -> str:
    """The docutils spec, from the pinned sdist (downloaded once into the cache)."""
    path = os.path.join(CACHE, SPEC)
    if os.path.exists(path):
        return path
    os.makedirs(CACHE, exist_ok=True)
    sdist = os.path.join(CACHE, f"docutils-{DOCUTILS}.tar.gz")
    if not os.path.exists(sdist):
        subprocess.run([PY, "-m", "pip", "download", "--quiet", "--no-binary", ":all:",
                        "--no-deps", f"docutils=={DOCUTILS}", "-d", CACHE], check=True)
    with tarfile.open(sdist) as tar:  # the spec includes files from docs/ (its header)
        docs = [m for m in tar.getmembers() if m.name.startswith(f"docutils-{DOCUTILS}/docs/")]
        tar.extractall(CACHE, members=docs, filter="data")
    return path


def programs(tmp: str) -> dict[str, Program]:
    big = os.path.join(os.path.dirname(os.__file__), "_pydecimal.py")
    app = os.path.join(tmp, "real_flask_app.py")
    with open(app, "w") as f:
        f.write(APP)
    return {
        "rst2html": Program("rst2html", "docutils: rst2html on the reStructuredText spec",
                            ("docutils",), ["-m", "docutils", _spec(),
                                            os.path.join(tmp, "spec.html")]),
        "pygments": Program("pygments", "Pygments: _pydecimal.py to a full HTML page",
                            # to stdout: an -o after -m is taken by VizTracer as its own
                            ("pygments",), ["-m", "pygments", "-f", "html", "-O", "full", big]),
        "flask_http": Program("flask_http", f"Flask app over HTTP, {REQUESTS} requests",
                              ("flask", "werkzeug"), [app], server=True),
    }


def _tool(name: str) -> str:
    path = os.path.join(os.path.dirname(PY), name)
    return path if os.path.exists(path) else (shutil.which(name) or name)


MODES = ["cprofile", "viztracer", "pyinstrument", "fa_wrap", "fa_profile"] + (
    ["fa_monitor"] if sys.version_info >= (3, 12) else [])
LABELS = {"plain": "plain Python", "cprofile": "cProfile",
          "viztracer": "VizTracer (library files)", "pyinstrument": "pyinstrument",
          "fa_wrap": "flowagent wrap", "fa_profile": "flowagent profile",
          "fa_monitor": "flowagent monitor"}


def command(mode: str, prog: Program, run: str) -> list[str]:
    t = prog.target
    if mode == "plain":
        return [PY, *t]
    if mode == "cprofile":
        return [PY, "-m", "cProfile", "-o", os.path.join(run, "prof.out"), *t]
    if mode == "viztracer":
        # VizTracer stops at the first frame outside its include list and ignores everything
        # below it: the chain from its own entry to the library (its "<string>" for -m,
        # runpy, the script) must be listed too, or it records nothing at all.
        entry = ["<string>", "<frozen runpy>", runpy.__file__] if t[0] == "-m" else [t[0]]
        if prog.server:  # werkzeug's server reaches the app through the standard library's
            entry += [socketserver.__file__, http.server.__file__]
        return [_tool("viztracer"), "--quiet", "--tracer_entries", "5000000",
                "--ignore_c_function", "--include_files", *entry, *prog.lib_dirs(),
                "-o", os.path.join(run, "trace.json"), *(t if t[0] == "-m" else ["--", *t])]
    if mode == "pyinstrument":
        return [_tool("pyinstrument"), "-o", os.path.join(run, "profile.txt"), *t]
    backend = mode.removeprefix("fa_")
    includes = [a for lib in prog.libs for a in ("--include", lib, "--include", f"{lib}.*")]
    return [PY, "-m", "flowagent", "run", "--backend", backend, "--data-dir",
            os.path.join(run, "data"), *includes, *t]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith("FLOWAGENT_") and k != "PYTHONDONTWRITEBYTECODE"}


def _serve_and_load(argv: list[str], run: str) -> tuple[float, subprocess.CompletedProcess]:
    """Start the server under ``argv``, drive the request mix, stop it; the client's time."""
    port_file = os.path.join(run, "port")
    proc = subprocess.Popen([*argv, port_file], cwd=run, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(port_file):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise RuntimeError(f"server did not start: {err[-2000:]}")
        time.sleep(0.01)
    with open(port_file) as f:
        port = int(f.read())
    statuses: dict[int, int] = {}
    t0 = time.perf_counter()
    for i in range(REQUESTS):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        kind = i % 6
        if kind < 3:
            conn.request("GET", f"/products/{(i * 7) % 230}")  # some are 404
        elif kind == 3:
            conn.request("GET", f"/products?tag=t{i % 7}")
        else:
            conn.request("POST", "/cart", body=json.dumps({"id": (i * 13) % 210, "n": 1}),
                         headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
        conn.close()
    elapsed = time.perf_counter() - t0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/quit")
    conn.getresponse().read()
    conn.close()
    out, err = proc.communicate(timeout=600)
    done = subprocess.CompletedProcess(argv, proc.returncode, out,
                                       err + f"\nstatuses={sorted(statuses.items())}")
    return elapsed, done


def measure(mode: str, prog: Program, tmp: str) -> dict[str, Any]:
    run = tempfile.mkdtemp(prefix=f"{mode}-", dir=tmp)
    argv = command(mode, prog, run)
    try:
        if prog.server:
            seconds, proc = _serve_and_load(argv, run)
        else:
            t0 = time.perf_counter()
            proc = subprocess.run(argv, cwd=run, env=_env(), capture_output=True, text=True,
                                  timeout=1800)
            seconds = time.perf_counter() - t0
        rec: dict[str, Any] = {"seconds": seconds, "rc": proc.returncode}
        if proc.returncode != 0:
            rec["error"] = (proc.stderr or proc.stdout)[-1500:]
        rec["calls"] = recorded_calls(mode, prog, run, proc.stderr)
        if prog.server:
            rec["statuses"] = proc.stderr.rpartition("statuses=")[2].strip()
        return rec
    finally:
        shutil.rmtree(run, ignore_errors=True)


def recorded_calls(mode: str, prog: Program, run: str, stderr: str) -> int | None:
    """What the mode recorded: flowagent's stored calls, cProfile's calls of functions in the
    library's files, VizTracer's function entries in the library's files."""
    dirs = tuple(d + os.sep for d in prog.lib_dirs())
    if mode.startswith("fa_"):
        m = re.search(r"flowagent: run \S+: \d+ sessions, (\d+) calls", stderr)
        return int(m.group(1)) if m else None
    if mode == "cprofile":
        path = os.path.join(run, "prof.out")
        if not os.path.exists(path):
            return None
        stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
        return sum(v[1] for (file, _l, _n), v in stats.items() if file.startswith(dirs))
    if mode == "viztracer":
        path = os.path.join(run, "trace.json")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            events = json.load(f).get("traceEvents", [])
        # Complete events ("X") of Python functions carry "name (file:line)".
        return sum(1 for e in events if e.get("ph") == "X" and
                   any(d in e.get("name", "") for d in dirs))
    return None


def run_program(prog: Program, pairs: int, tmp: str, log: Any, modes: list[str],
                progress: Any = None) -> dict[str, Any]:
    """Every mode of ``modes`` against plain Python; ``progress(out)`` after each mode, so
    a run cut short keeps the modes it finished."""
    out: dict[str, Any] = {"label": prog.label, "modes": {}}
    log(f"{prog.key}: warm-up")
    measure("plain", prog, tmp)
    base_runs: list[dict] = []
    for mode in modes:
        log(f"{prog.key}: {mode} ({pairs} pairs)")
        measure(mode, prog, tmp)  # warm-up (bytecode caches, the tool's own imports)
        runs = []
        for _ in range(pairs):
            b = measure("plain", prog, tmp)
            m = measure(mode, prog, tmp)
            base_runs.append(b)
            runs.append({"plain": b, "mode": m})
        ok = [r for r in runs if r["mode"]["rc"] == 0 and r["plain"]["rc"] == 0]
        entry: dict[str, Any] = {"runs": runs, "errors": [
            r[k].get("error") or f"exit status {r[k]['rc']}" for r in runs
            for k in ("plain", "mode") if r[k]["rc"] != 0]}
        if ok:
            ratios = [r["mode"]["seconds"] / r["plain"]["seconds"] for r in ok]
            added = statistics.median(r["mode"]["seconds"] - r["plain"]["seconds"] for r in ok)
            calls = [r["mode"]["calls"] for r in ok if r["mode"]["calls"]]
            entry.update(ratio=statistics.median(ratios), ratio_min=min(ratios),
                         ratio_max=max(ratios), seconds=statistics.median(
                             r["mode"]["seconds"] for r in ok),
                         added_s=added, calls=statistics.median(calls) if calls else None)
            if calls:
                entry["ns_per_call"] = added * 1e9 / statistics.median(calls)
        out["modes"][mode] = entry
        log(f"  {mode}: ratio {entry.get('ratio', float('nan')):.2f}, "
            f"calls {entry.get('calls')}")
        out["plain_seconds"] = statistics.median(r["seconds"] for r in base_runs)
        if progress is not None:
            progress(out)
    return out


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [f"# Real programs, Python {m['python']}", "",
             f"{m['date']}; {m['cores']} cores; load average {m['loadavg_start']} at the "
             f"start, {m['loadavg_end']} at the end; {res['pairs']} pairs per mode.", ""]
    for prog in res["programs"].values():
        lines += [f"## {prog['label']}", "",
                  f"plain Python: {prog['plain_seconds']:.3f} s (median)", "",
                  "| mode | median s | ratio (min–max) | calls recorded | ns per call |",
                  "|---|---|---|---|---|"]
        for mode, e in prog["modes"].items():
            if "ratio" not in e:
                lines.append(f"| {LABELS[mode]} | failed: "
                             f"{((e['errors'] or ['?'])[0].strip().splitlines() or ['?'])[-1][:80]} "
                             "| | | |")
                continue
            calls = f"{e['calls']:,.0f}" if e.get("calls") else "—"
            per = f"{e['ns_per_call']:,.0f}" if e.get("ns_per_call") else "—"
            lines.append(f"| {LABELS[mode]} | {e['seconds']:.3f} | {e['ratio']:.2f}x "
                         f"({e['ratio_min']:.2f}–{e['ratio_max']:.2f}) | {calls} | {per} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(pairs: int, only: list[str], machine: dict[str, Any], log: Any,
         modes: list[str] | None = None) -> list[str]:
    """Runs the programs (``only``: a subset) under ``modes`` (default :data:`MODES`)."""
    unknown = [m for m in modes or () if m not in MODES]
    if unknown:
        raise SystemExit(f"real.py: unknown mode {unknown[0]!r}; choose among {', '.join(MODES)}")
    tmp = tempfile.mkdtemp(prefix="fa-real-")
    try:
        progs = programs(tmp)
        res: dict[str, Any] = {"machine": machine, "pairs": pairs, "programs": {}}
        paths: list[str] = []
        for key, prog in progs.items():
            if only and key not in only:
                continue

            def progress(out: dict[str, Any], key: str = key) -> None:
                # After each mode: a long run cut short keeps what it measured.
                nonlocal paths
                res["programs"][key] = out
                paths = _write(res)

            run_program(prog, pairs, tmp, log, modes or MODES, progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


def _write(res: dict[str, Any]) -> list[str]:
    res["machine"]["loadavg_end"] = os.getloadavg()
    stem = os.path.join(RESULTS, f"real-{sys.version_info.major}.{sys.version_info.minor}")
    os.makedirs(RESULTS, exist_ok=True)
    with open(stem + ".json", "w") as f:
        json.dump(res, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(markdown(res))
    return [stem + ".md", stem + ".json"]
