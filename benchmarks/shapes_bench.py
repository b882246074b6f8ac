"""How long ``shape_of`` takes on the values recorded programs pass around, old versus new.

Runs the working tree's :mod:`flowagent.agent.shapes` and the same module as committed at a git
revision (``--baseline``, default ``HEAD``) side by side, in one process, on the same values:
the arguments and results of ``benchmarks/workloads/bench_handler`` (request dicts, lists of
item dicts, dataclasses nested three deep, the audit log of tuples) and of ``demo/shop``
(frozen dataclasses, named tuples, plain objects as ``self``), plus scalars, a mapping and a
tree whose nodes point back to their parent. Each value is described many times in a row, as
the recorder does for the arguments of a hot function, so per-class and per-key-set caches
are warm. The ``handler workload`` row shapes every argument and result of 40 requests of the
handler workload in call order (the real mix); the ``cold`` rows give every call a dict with
keys, or an instance of a class, never seen before: the worst case for the caches.

Prints ns per shape for both versions and the ratio old/new (higher is better), and checks
that both return the same shape for every value (a difference is listed, not hidden). Then,
where the C accelerator is built, what the recorder pays once a structure is known: the
structural fingerprint its shape cache is keyed by, beside ``shape_of`` on the same values.

    .venv/bin/python benchmarks/shapes_bench.py [--baseline REV] [--rounds N] [--loops N]

``--instructions`` measures instead what the recorder pays per request of the handler
workload, in instructions (``valgrind --tool=callgrind``, which load does not move): the
workload run in process (no launcher, no sidecar) plainly, recorded by the ``wrap`` core with
shapes of every call, and with the shape budget, N1 and N2 requests each; the figure is
(I(N2) − I(N1)) / (N2 − N1), start-up cancelled out (``PYTHONHASHSEED=0``, the instrumented
code cache warmed by an unmeasured run). ``--before DIR`` measures another checkout (built in
place for this Python) in the same run, for a before/after table.

    .venv312/bin/python benchmarks/shapes_bench.py --instructions [--before /path/to/main]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gc
import importlib.util
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import types
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks" / "workloads"), str(ROOT / "demo")]

import bench_handler
from bench_handler import handler
from bench_handler.models import Cart, Line, Product, User
from shop.cart import Cart as ShopCart
from shop.cart import LineItem
from shop.catalog import Catalog

from flowagent.agent import shapes as current

ShapeOf = typing.Callable[[object], str]


def load_baseline(rev: str) -> types.ModuleType:
    """``flowagent/agent/shapes.py`` as committed at ``rev``, imported under its own name."""
    source = subprocess.run(
        ["git", "show", f"{rev}:flowagent/agent/shapes.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    spec = importlib.util.spec_from_loader("shapes_baseline", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module.__name__] = module  # dataclass-style lookups of the module by name
    exec(compile(source, f"{rev}:flowagent/agent/shapes.py", "exec"), module.__dict__)  # noqa: S102
    return module


@dataclasses.dataclass
class Node:
    """A tree node with a parent pointer: nested dataclasses and a cycle through a list."""

    name: str
    children: list[Node] = dataclasses.field(default_factory=list)
    parent: Node | None = None


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self) -> None:
        self.a = 1
        self.b = "x"


def handler_values() -> dict[str, object]:
    """Arguments and results of the handler workload's functions, built by its own code."""
    raw = bench_handler.make_requests(1)[0]
    req = handler.parse_request(raw)
    user = User(7, "user7", "gold")
    products = [Product(f"SKU-{i:03d}", 1.5 + i, ["a", "b"]) for i in range(4)]
    cart = Cart(user, [Line(p, 2) for p in products], "SAVE5")
    prices = {"subtotal": 12.0, "discount": 0.6, "tax": 2.28, "total": 13.68}
    response = handler.build_response(req, cart, prices)
    log = [(i, 200) for i in range(500)]
    return {
        "int": 42,
        "str": "tok-42",
        "None": None,
        "raw request": raw,
        "parsed request": req,
        "items list[dict]": raw["items"],
        "item dict": raw["items"][0],
        "User": user,
        "Line": cart.lines[0],
        "Cart (nested)": cart,
        "prices dict": prices,
        "response": response,
        "error response": handler.error_response(req, 404, "unknown product"),
        "log list[tuple]": log,
        "tuple(int, int)": (3, 200),
    }


def handler_workload_values(requests: int = 40) -> list[object]:
    """Every argument and return value of every call of the handler workload, in call order.

    Captured with a profile hook over ``requests`` requests (list comprehensions and other
    code objects the agent does not record are left out): the real mix a recorder shapes, of
    scalars, request dicts, dataclasses and lists of them, in the proportions the workload has.
    """
    package = str(Path(bench_handler.__file__).parent)
    values: list[object] = []

    def capture(frame: types.FrameType, event: str, arg: object) -> None:
        code = frame.f_code
        if not code.co_filename.startswith(package) or code.co_name.startswith("<"):
            return
        if event == "call":
            names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
            values.extend(frame.f_locals[name] for name in names)
        elif event == "return":
            values.append(arg)

    log: list[object] = []
    batch = bench_handler.make_requests(requests)
    sys.setprofile(capture)
    try:
        for raw in batch:
            handler.handle(raw, log)
    finally:
        sys.setprofile(None)
    return values


def demo_values() -> dict[str, object]:
    catalog = Catalog.default()
    product = catalog.get("KIT-PAN-01")
    cart = ShopCart("alice")
    cart.add(product, 2)
    root = Node("root")
    root.children = [Node(f"c{i}", parent=root) for i in range(3)]
    return {
        "self: Catalog": catalog,
        "frozen dataclass": product,
        "NamedTuple": LineItem("KIT-PAN-01", "Cast iron pan", 3499, 2),
        "cart.to_dict()": cart.to_dict(),
        "list[Product]": catalog.list(),
        "mapping dict[str, int]": {f"SKU-{i}": i for i in range(40)},
        "__slots__ object": Slotted(),
        "OrderedDict": collections.OrderedDict(a=1, b="x"),
        "tree with parent links": root,
    }


def cold_dicts(n: int) -> list[dict[str, int]]:
    """Records whose key sets are all different: every call misses a key-set cache."""
    return [{f"k{i}_a": 1, f"k{i}_b": 2, f"k{i}_c": 3} for i in range(n)]


def cold_classes(n: int) -> list[object]:
    """Instances of as many distinct dataclasses: every call misses a per-class cache."""
    return [dataclasses.make_dataclass(f"C{i}", [("x", int), ("y", str)])(1, "a") for i in range(n)]


def _round(shape_of: ShapeOf, values: list[object]) -> float:
    """ns per call for one pass over ``values``, with the garbage collector held off."""
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for v in values:
            shape_of(v)
        return (time.perf_counter_ns() - t0) / len(values)
    finally:
        gc.enable()


def compare(old: ShapeOf, new: ShapeOf, make_values: typing.Callable[[], list[object]],
            rounds: int) -> tuple[float, float]:
    """Best ns per call of each version over ``rounds`` short rounds, old and new alternating.

    On a shared machine most rounds are disturbed by other processes; the least disturbed
    round of each version is the comparable figure, and alternating gives both the same
    chances. ``make_values`` is called for every round (fresh values for the cold rows).
    """
    best_old = best_new = math.inf
    for _ in range(rounds):
        best_old = min(best_old, _round(old, make_values()))
        best_new = min(best_new, _round(new, make_values()))
    return best_old, best_new


# The --instructions child: the handler workload run in process, plainly or recorded.
CHILD = """
import sys
mode, n, workloads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.path.insert(0, workloads)
if mode != "plain":
    from flowagent.agent import backends, bootstrap, recorder
    from flowagent.agent.select import Selector
    bootstrap.install_helpers()
    backend, _ = backends.choose("wrap")
    recorder.S.on = True
    if mode == "every":
        recorder.shape_every_call()
    backend.install(Selector(("bench_handler", "bench_handler.*"), (), ()), True)
import bench_handler
from bench_handler.handler import handle
log = []
for raw in bench_handler.make_requests(n):
    handle(raw, log)
if mode != "plain":
    assert recorder.S.buffered >= 30 * n, recorder.S.buffered
"""

MODES = {"plain": "plain Python", "every": "shapes of every call", "budget": "shape budget"}


def instructions(root: Path, mode: str, n: int, tmp: str) -> int:
    """Instructions of one child run under callgrind (``root`` first on the path)."""
    # Instrumented code cached apart for each checkout (and from any other run's cache), and
    # warmed by an unmeasured run: the measured runs load it, neither rewrites the workload.
    cache = os.path.join(tmp, "cache", str(abs(hash(str(root)))))
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONHASHSEED": "0", "XDG_CACHE_HOME": cache,
           "PYTHONPYCACHEPREFIX": os.path.join(cache, "pyc")}
    child = [sys.executable, "-c", CHILD, mode, str(n), str(ROOT / "benchmarks" / "workloads")]
    warm = [*child[:4], "5", *child[5:]]
    subprocess.run(warm, cwd=root, env=env, check=True, timeout=600, capture_output=True)
    out = os.path.join(tmp, "callgrind.out")
    proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *child],
                          cwd=root, env=env, timeout=1800, capture_output=True, text=True)
    found = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"callgrind failed for {mode} n={n}: {proc.stderr[-500:]}")
    return int(found.group(1))


def instructions_table(before: Path | None, n1: int, n2: int) -> int:
    roots = [("after", ROOT)] + ([("before", before)] if before else [])
    per: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in MODES:
            for label, root in roots:
                if mode == "plain" and label == "before":
                    continue  # the program alone: the same in both
                i1, i2 = instructions(root, mode, n1, tmp), instructions(root, mode, n2, tmp)
                per[label, mode] = (i2 - i1) / (n2 - n1)
                print(f"{label:6s} {mode:6s} {per[label, mode]:10,.0f} instructions per request",
                      file=sys.stderr)
    plain = per["after", "plain"]
    py = sys.version.split()[0]
    print(f"Handler workload in process, wrap core, Python {py}: instructions per request "
          f"((I({n2}) - I({n1})) / {n2 - n1}), ratio to plain Python")
    print("| mode | " + " | ".join(label for label, _ in roots) + " | ratio to plain |")
    print("|---|" + "---:|" * (len(roots) + 1))
    for mode, name in MODES.items():
        cells = [f"{per[label, mode] / 1000:.1f}k" if (label, mode) in per else ""
                 for label, _ in roots]
        ratios = " → ".join(f"{per[label, mode] / plain:.2f}x" for label, _ in reversed(roots)
                            if (label, mode) in per)
        print(f"| {name} | " + " | ".join(cells) + f" | {ratios} |")
    for label, _ in reversed(roots):
        print(f"every call / budget, {label}: "
              f"{per[label, 'every'] / per[label, 'budget']:.3f}x")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="HEAD", help="git revision of the old shapes.py")
    parser.add_argument("--rounds", type=int, default=40, help="rounds per value (best is kept)")
    parser.add_argument("--loops", type=int, default=200, help="calls per round")
    parser.add_argument("--instructions", action="store_true",
                        help="instructions per request of the handler workload (callgrind)")
    parser.add_argument("--before", type=Path, default=None,
                        help="with --instructions: another checkout measured in the same run")
    parser.add_argument("--n1", type=int, default=200, help="with --instructions: requests")
    parser.add_argument("--n2", type=int, default=600, help="with --instructions: requests")
    args = parser.parse_args()
    if args.instructions:
        return instructions_table(args.before and args.before.resolve(), args.n1, args.n2)

    old = load_baseline(args.baseline)
    warm = {**handler_values(), **demo_values()}
    workload = handler_workload_values()
    mismatches = [(name, o, n) for name, value in warm.items()
                  if (o := old.shape_of(value)) != (n := current.shape_of(value))]
    mismatches += [("handler workload", o, n) for o, n in
                   zip(map(old.shape_of, workload), map(current.shape_of, workload)) if o != n]

    rows: list[tuple[str, float, float]] = []
    def timed(name: str, make_values: typing.Callable[[], list[object]], rounds: int) -> None:
        rows.append((name, *compare(old.shape_of, current.shape_of, make_values, rounds)))

    for name, value in warm.items():
        same = [value] * args.loops
        timed(name, lambda same=same: same, args.rounds)
    timed(f"handler workload, {len(workload)} values", lambda: workload, max(1, args.rounds // 4))
    # Cold rows: fresh values every round, so that nothing about them is cached beforehand.
    timed("cold: new key sets", lambda: cold_dicts(args.loops // 4), max(1, args.rounds // 5))
    timed("cold: new dataclasses", lambda: cold_classes(args.loops // 4), max(1, args.rounds // 5))

    width = max(len(r[0]) for r in rows)
    print(f"shape_of, ns per shape: {args.baseline} vs working tree (Python {sys.version.split()[0]})")
    print(f"{'value':<{width}}  {'old':>8}  {'new':>8}  {'old/new':>7}")
    for name, t_old, t_new in rows:
        print(f"{name:<{width}}  {t_old:8.0f}  {t_new:8.0f}  {t_old / t_new:7.2f}")
    warm_rows = rows[: len(warm)]
    geo = math.exp(sum(math.log(o / n) for _, o, n in warm_rows) / len(warm_rows))
    total_old = sum(o for _, o, _ in warm_rows)
    total_new = sum(n for _, _, n in warm_rows)
    print(f"{'geometric mean (warm)':<{width}}  {'':>8}  {'':>8}  {geo:7.2f}")
    print(f"{'sum over warm values':<{width}}  {total_old:8.0f}  {total_new:8.0f}  {total_old / total_new:7.2f}")
    fingerprint_column(warm, workload, args.rounds, args.loops)
    for name, old_shape, new_shape in mismatches:
        print(f"DIFFERENT SHAPE for {name}:\n  old {old_shape}\n  new {new_shape}")
    return 0


def fingerprint_column(warm: dict[str, object], workload: list[object], rounds: int,
                       loops: int) -> None:
    """What the recorder's C hot path pays instead of ``shape_of`` once a structure is known:
    the structural fingerprint (the shape cache's key; a table lookup follows), and how many
    values it refuses (those are described by ``shape_of`` every time)."""
    try:
        from flowagent.agent import _speedups
    except ImportError:
        print("(the C accelerator is not built: no fingerprint column)")
        return
    fingerprint = _speedups.fingerprint
    rows = []
    for name, value in warm.items():
        same = [value] * loops
        rows.append((name, min(_round(fingerprint, same) for _ in range(rounds)),
                     min(_round(current.shape_of, same) for _ in range(rounds)),
                     fingerprint(value) is None))
    rows.append((f"handler workload, {len(workload)} values",
                 min(_round(fingerprint, workload) for _ in range(max(1, rounds // 4))),
                 min(_round(current.shape_of, workload) for _ in range(max(1, rounds // 4))),
                 False))
    refused = sum(fingerprint(v) is None for v in workload)
    width = max(len(r[0]) for r in rows)
    print(f"\nC fingerprint vs shape_of (working tree), ns per value; "
          f"{refused} of {len(workload)} workload values refused")
    print(f"{'value':<{width}}  {'fprint':>8}  {'shape_of':>8}  {'ratio':>7}")
    for name, t_fp, t_shape, no in rows:
        note = "  (refused: described each time)" if no else ""
        print(f"{name:<{width}}  {t_fp:8.0f}  {t_shape:8.0f}  {t_shape / t_fp:7.2f}{note}")


if __name__ == "__main__":
    sys.exit(main())
