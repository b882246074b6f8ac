"""Plain-versus-agent scenarios for what happens inside the recorded process: re-entrancy
(finalizers, signal handlers, thread switches), asynchronous exceptions, code that leaves
the process, transparency to the program's own introspection and tools, and names or
process events that could silently end recording. Run by ``test_plain_vs_agent.py``."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

from harness import AgentRun, Scenario

SCENARIOS: list[Scenario] = []


def scenario(name: str, prog: str, **kw: object) -> Scenario:
    klass = name.split("/", 1)[0]
    files = dict(kw.pop("files", {}))  # type: ignore[arg-type]
    files["prog.py"] = prog
    s = Scenario(name=name, klass=klass, files=files, **kw)  # type: ignore[arg-type]
    SCENARIOS.append(s)
    return s


# -- checks on what was recorded -------------------------------------------------------------

def recorded(complete: bool = True, **at_least: int) -> Callable[[AgentRun], None]:
    """At least this many calls of each named function were stored, nothing was lost
    without being counted and (``complete``) every session ended."""

    def check(run: AgentRun) -> None:
        calls = run.function_calls()
        for fn, n in at_least.items():
            assert calls.get(fn, 0) >= n, (f"{fn}: {calls.get(fn, 0)} calls recorded, "
                                           f"expected >= {n}; recorded {calls}")
        acc = run.accounting()
        assert acc is not None, "nothing stored"
        assert acc["produced"] == acc["stored"] + acc["dropped"], acc
        if complete:
            open_ = [x for x in acc["sessions"] if not x["complete"]]
            assert not open_, f"{len(open_)} sessions never ended: {open_[:3]}"

    return check


def _files_and_error(data: bytes) -> bytes:
    """A traceback reduced to the files its frames are in and the exception's type: no
    frame of the agent may show, the program fails the same way."""
    files = sorted(set(re.findall(rb'File "([^"]+)"', data)))
    last = data.strip().splitlines()[-1].split(b":")[0] if data.strip() else b""
    return b"\n".join(files) + b"\n" + last


def no_addresses(data: bytes) -> bytes:
    return re.sub(rb"0x[0-9a-f]+", b"0x?", data)


# == crash: re-entrancy from finalizers, signal handlers, thread switches ===================

scenario("crash/del-cycle", """
    class Node:
        def __init__(self): self.me = self
        def __del__(self): pass
    def work(d): Node(); return {"x": d["x"] + 1}
    def session(n):
        d = {"x": 0}
        for _ in range(n): d = work(d)
        return d["x"]
    print("ok", sum(session(200) for _ in range(400)))
""", check=recorded(session=400, work=1000))

scenario("crash/del-calls-recorded", """
    def helper(n): return n * 2
    class Node:
        def __init__(self): self.me = self
        def __del__(self): helper(3)
    def work(i): Node(); return [i]
    def session():
        return sum(len(work(i)) for i in range(50))
    print("ok", sum(session() for _ in range(300)))
""", check=recorded(session=300, work=15000))

scenario("crash/weakref-callbacks", """
    import weakref
    def on_gone(ref): note(1)
    def note(x): return x
    class Obj:
        def __init__(self): self.me = self
    refs = []
    def make(i):
        o = Obj(); refs.append(weakref.ref(o, on_gone)); return i
    def session(k): return sum(make(i) for i in range(k))
    print("ok", sum(session(40) for _ in range(300)))
""", check=recorded(session=300, make=12000))

scenario("crash/gc-callbacks-record", """
    import gc
    def seen(phase): return phase
    def on_gc(phase, info): seen(phase)
    gc.callbacks.append(on_gc)
    class C:
        def __init__(self): self.me = self
    def work(i): C(); return {"i": i}
    def session(): return [work(i)["i"] for i in range(100)]
    print("ok", sum(len(session()) for _ in range(200)))
    gc.callbacks.remove(on_gc)
""", check=recorded(session=200, work=20000))

scenario("crash/finalizer-closes-generator", """
    def gen(n):
        try:
            for i in range(n):
                yield inner(i)
        finally:
            inner(-1)
    def inner(i): return i
    class Holder:
        def __init__(self):
            self.me = self
            self.g = gen(10)
            next(self.g)
    def session():
        for _ in range(20): Holder()
        return 1
    print("ok", sum(session() for _ in range(300)))
""", check=recorded(session=300, complete=False))  # a generator closed after its session ended

scenario("crash/signal-handler-records", """
    import signal
    hits = []
    def in_handler(n): return n + 1
    def handler(signum, frame): hits.append(in_handler(signum))
    def gen(n):
        for i in range(n): yield leaf(i)
    def leaf(i): return i
    def work(i): return sum(gen(5)) + leaf(i)
    def session(): return sum(work(i) for i in range(200))
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
    total = sum(session() for _ in range(150))
    signal.setitimer(signal.ITIMER_REAL, 0)
    print("ok", total, bool(hits))
""", check=recorded(session=150, work=30000))

scenario("crash/thread-switch-storm", """
    import sys, threading
    sys.setswitchinterval(1e-6)
    def leaf(i): return i
    def gen(n):
        for i in range(n): yield leaf(i)
    def work(i): return sum(gen(3)) + leaf(i)
    def session(k): return sum(work(i) for i in range(k))
    out = []
    def run(): out.append(sum(session(100) for _ in range(40)))
    ts = [threading.Thread(target=run) for _ in range(6)]
    for t in ts: t.start()
    for t in ts: t.join()
    print("ok", sorted(out))
""", check=recorded(session=240, work=24000))

scenario("crash/del-raises", """
    class Bad:
        def __init__(self): self.me = self
        def __del__(self): raise ValueError("from del")
    def work():
        Bad()
        return 1
    def session(): return sum(work() for _ in range(3))
    import gc
    print(session())
    gc.collect()
    print("after")
""", normalize=no_addresses)

scenario("crash/async-generators-finalized", """
    import asyncio
    async def agen(n):
        try:
            for i in range(n):
                yield await leaf(i)
        finally:
            await leaf(-1)
    async def leaf(i): return i
    async def consume(k):
        async for v in agen(10):
            if v == k: break
        return k
    async def main():
        return sum(await asyncio.gather(*(consume(i % 5) for i in range(300))))
    print("ok", asyncio.run(main()))
""", check=recorded(consume=300))

scenario("crash/recursion-limit-in-recorded-code", """
    import sys
    sys.setrecursionlimit(400)
    def deep(n): return deep(n + 1)
    def after(i): return i
    def session():
        try:
            deep(0)
        except RecursionError:
            return "caught"
    for _ in range(20): r = session()
    print(r, sum(after(i) for i in range(100)))
""", check=recorded(after=100))

scenario("crash/contextvars-copied-contexts", """
    import contextvars
    v = contextvars.ContextVar("v", default=0)
    def leaf(i): v.set(i); return v.get()
    def run_in_copy(i): return contextvars.copy_context().run(leaf, i)
    def session(): return sum(run_in_copy(i) for i in range(100))
    print("ok", sum(session() for _ in range(100)), v.get())
""", check=recorded(session=100, run_in_copy=10000))

scenario("crash/asyncio-cancel-storm", """
    import asyncio
    async def leaf(i):
        await asyncio.sleep(0)
        return i
    async def work(i):
        total = 0
        for j in range(1000):
            total += await leaf(j)
        return total
    async def main():
        tasks = [asyncio.ensure_future(work(i)) for i in range(50)]
        for _ in range(5): await asyncio.sleep(0)
        for t in tasks[::2]: t.cancel()
        res = await asyncio.gather(*tasks, return_exceptions=True)
        return sum(1 for r in res if isinstance(r, asyncio.CancelledError))
    print("cancelled", asyncio.run(main()))
""")

scenario("crash/threads-and-gc-cycles", """
    import threading, gc
    gc.set_threshold(50)
    class Node:
        def __init__(self): self.me = self
        def __del__(self): pass
    def work(i): Node(); return i
    def session(k): return sum(work(i) for i in range(k))
    out = []
    def run(): out.append(sum(session(50) for _ in range(40)))
    ts = [threading.Thread(target=run) for _ in range(4)]
    for t in ts: t.start()
    for t in ts: t.join()
    print("ok", out)
""", check=recorded(session=160, work=8000))

# The agent's own flush allocates, so a collection (and the finalizers, weakref callbacks and
# gc callbacks it runs) can happen inside it, in the flusher thread or, for a synchronous or
# final flush, in the program's. Recorded code run there must neither hang the process (a
# session ending inside a flush asks for another flush) nor leave sessions announced in the
# last batch without their calls.

scenario("crash/finalizers-run-by-the-final-flush", """
    import gc
    gc.set_threshold(50)  # cycles left at exit are collected while the last batch is made
    class Node:
        def __init__(self): self.me = self
        def __del__(self): pass
    def work(i): Node(); return i
    print("ok", sum(work(i) for i in range(1000)))
""", check=recorded(work=1000))

_POOL_FLUSH = """
    import gc, multiprocessing as mp, signal
    {setup}
    def work(i):
        for _ in range(20): Node()
        return i
    def task(i): return sum(work(j) for j in range(50))
    if __name__ == "__main__":
        with mp.get_context("fork").Pool(2, initializer=start) as pool:
            print("ok", sum(pool.map(task, range(40))))
"""

scenario("crash/finalizer-ends-a-session-inside-the-flush", _POOL_FLUSH.format(setup="""
    class Node:
        def __init__(self): self.me = self
        def __del__(self): pass
    def start(): gc.set_threshold(1)  # a collection at almost every allocation of a flush
"""), check=recorded(task=40, work=2000), timeout=180)

scenario("crash/gc-callback-records-inside-the-flush", _POOL_FLUSH.format(setup="""
    class Node:
        def __init__(self): self.me = self
    def seen(phase): return phase
    def on_gc(phase, info): seen(phase)
    def start():
        gc.set_threshold(1)
        gc.callbacks.append(on_gc)
"""),
         # The pool terminates its workers while collections keep recording in them: the
         # last sessions of a worker may be cut off (stored as incomplete, and counted).
         check=recorded(complete=False, task=40, work=2000, seen=1), timeout=180,
         slow=True)  # a recorded gc callback at almost every allocation: slow

scenario("crash/weakref-callback-ends-a-session-inside-the-flush", _POOL_FLUSH.format(setup="""
    import weakref
    refs = set()
    def gone(ref): refs.discard(ref)
    class Node:
        def __init__(self):
            self.me = self
            refs.add(weakref.ref(self, gone))
    def start(): gc.set_threshold(1)
"""), check=recorded(task=40, work=2000), timeout=180, slow=True)

scenario("crash/signal-handler-ends-a-session-inside-a-flush", _POOL_FLUSH.format(setup="""
    class Node:
        def __init__(self): self.me = self
    def tick(n): return n
    def start():
        # Pool workers flush each finished session synchronously: a handler's session ends
        # while the worker's own flush is running.
        signal.signal(signal.SIGALRM, lambda s, f: tick(s))
        signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
"""), check=recorded(task=40, work=2000), timeout=180)

# == async-exc: exceptions from signal handlers and other threads ==========================

_TIMEOUTS = """
    import signal, time
    class Timeout({base}):
        pass
    def on_alarm(signum, frame):
        raise Timeout()
    signal.signal(signal.SIGALRM, on_alarm)
    def leaf(i): return i
    {extra}
    def spin():
        n = 0
        while True:
            n += {body}
    def guarded():
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.002)
            spin()
        except Timeout:
            return 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    def after(i): return i
    delivered = sum(guarded() for _ in range(60))
    print("timeouts delivered", delivered)
    print("after", sum(after(i) for i in range(200)))
"""


def _timeouts(name: str, base: str, body: str, extra: str = "") -> None:
    prog = _TIMEOUTS.format(base=base, body=body, extra=extra)
    scenario(name, prog, check=recorded(after=200, guarded=60), timeout=60,
             backends=("wrap", "wrap-pure", "profile"))
    # The program behaves identically under monitor; its recording can keep one call open:
    # sys.monitoring callbacks are Python functions, and a signal handler's exception can
    # land in one before its own handler runs (later sessions then nest under that call).
    scenario(name + "-monitor", prog, check=recorded(complete=False, after=200, guarded=60),
             timeout=60, backends=("monitor",))


_timeouts("async-exc/setitimer-timeout", "Exception", "leaf(1)")
_timeouts("async-exc/setitimer-builtin-timeouterror", "TimeoutError", "leaf(1)")
_timeouts("async-exc/setitimer-baseexception", "BaseException", "leaf(1)")
_timeouts("async-exc/setitimer-in-generator", "Exception", "sum(gen(3))", extra="""
    def gen(n):
        for i in range(n): yield leaf(i)
""")
_timeouts("async-exc/setitimer-in-shapes", "Exception", "len(shaped({'a': [1, 2], 'b': {'c': 'd'}}))",
          extra="""
    def shaped(d): return d
""")
_timeouts("async-exc/setitimer-in-methods", "Exception", "Obj().method(2)", extra="""
    class Obj:
        def __init__(self): self.x = 1
        def method(self, y): return self.x + leaf(y)
""")

scenario("async-exc/sigint-keyboardinterrupt", """
    import os, signal
    def leaf(i): return i
    def spin(k):
        n = 0
        for i in range(k):
            n += leaf(i)
            if i == k // 2: os.kill(os.getpid(), signal.SIGINT)
        return n
    def guarded():
        try:
            spin(2000)
        except KeyboardInterrupt:
            return 1
        return 0
    def after(i): return i
    print("interrupts", sum(guarded() for _ in range(100)))
    print("after", sum(after(i) for i in range(100)))
""", check=recorded(after=100, guarded=100))

_ASYNC_EXC = """
    import ctypes, threading, time
    class Stop({base}):
        pass
    def leaf(i): return i
    {extra}
    caught = []
    ready = threading.Event()
    def worker(k):
        try:
            ready.set()
            while True: {body}
        except Stop:
            caught.append(k)
    def after(i): return i
    for k in range(25):
        ready.clear()
        t = threading.Thread(target=worker, args=(k,))
        t.start()
        ready.wait()
        time.sleep(0.002)
        while t.is_alive():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(t.ident),
                                                       ctypes.py_object(Stop))
            t.join(0.05)
    print("stopped", len(caught))
    print("after", sum(after(i) for i in range(100)))
"""

scenario("async-exc/setasyncexc-thread", _ASYNC_EXC.format(base="Exception", body="leaf(1)",
                                                           extra=""),
         check=recorded(after=100, worker=25))
scenario("async-exc/setasyncexc-builtin-type", _ASYNC_EXC.format(
    base="TimeoutError", body="leaf(1)", extra=""), check=recorded(after=100, worker=25))
scenario("async-exc/setasyncexc-generator", _ASYNC_EXC.format(
    base="Exception", body="sum(gen(4))", extra="""
    def gen(n):
        for i in range(n): yield leaf(i)
"""), check=recorded(after=100, worker=25))

_WAIT_FOR = """
    import asyncio
    async def leaf(i):
        await asyncio.sleep(0)
        return i
    async def slow():
        n = 0
        while True: n += await leaf(1)
    async def guarded():
        try:
            await asyncio.wait_for(slow(), 0.003)
        except asyncio.TimeoutError:
            return 1
    async def main(): return sum([await guarded() for _ in range(40)])
    print("timeouts", asyncio.run(main()))
"""
scenario("async-exc/asyncio-wait-for-timeouts", _WAIT_FOR, check=recorded(guarded=40))

scenario("async-exc/signal-exception-uncaught", """
    import signal, sys
    class Timeout(Exception): pass
    def on_alarm(s, f): raise Timeout("too slow")
    signal.signal(signal.SIGALRM, on_alarm)
    def leaf(i): return i
    def spin():
        while True: leaf(1)
    signal.setitimer(signal.ITIMER_REAL, 0.01)
    try:
        spin()
    except Timeout as e:
        print("caught", e)
        sys.exit(3)
""")

# == resources: fork while threads record ====================================================

scenario("resources/fork-while-threads-record", """
    import os, threading
    def leaf(i): return i
    def work(k): return sum(leaf(i) for i in range(k))
    stop = threading.Event()
    def loop():
        while not stop.is_set(): work(100)
    ts = [threading.Thread(target=loop) for _ in range(3)]
    for t in ts: t.start()
    def child_work(): return 1
    codes = []
    for _ in range(15):
        pid = os.fork()
        if pid == 0:
            child_work()
            os._exit(7)
        codes.append(os.waitpid(pid, 0)[1] >> 8)
    stop.set()
    for t in ts: t.join()
    print("children", codes)
""", check=recorded(complete=False, child_work=15),
         # Three threads recording flat out outrun the flusher on a loaded machine: the
         # buffer fills and drops (counted: produced = stored + dropped is still checked),
         # and a dropped root leaves its thread's one session incomplete.
         normalize=lambda b: re.sub(rb"pid=\d+", b"pid=N", b))

scenario("resources/fork-single-threaded", """
    import os, warnings
    warnings.simplefilter("default")
    def child_work(i): return i
    def parent_work(i): return i
    for i in range(20):
        parent_work(i)
        pid = os.fork()
        if pid == 0:
            child_work(i)
            os._exit(0)
        os.waitpid(pid, 0)
    print("done")
""", check=recorded(child_work=20, parent_work=20))

# == leaves-process: code that runs elsewhere ================================================

# A worker that nothing records: no flowagent environment, no bootstrap on its path.
_WORKER = """
    import os, subprocess, sys
    def run_in_clean_worker(payload: bytes, code: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWAGENT_")}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in env.get("PYTHONPATH", "").split(os.pathsep)
            if p and not os.path.exists(os.path.join(p, "sitecustomize.py")))
        r = subprocess.run([sys.executable, "-c", code], input=payload, env=env,
                           capture_output=True)
        return r.stdout.decode() + (r.stderr.decode().strip().splitlines() or [""])[-1]
"""

_LOAD_AND_CALL = ("import sys, {mod}; f = {mod}.loads(sys.stdin.buffer.read()); "
                  "print(f(3))")
_DUMPS = {"cloudpickle": "cloudpickle.dumps", "dill": "(lambda f: dill.dumps(f, recurse=True))"}

for _mod in ("cloudpickle", "dill"):
    scenario(f"leaves-process/{_mod}-function-by-value", """
        from worker import run_in_clean_worker
        import MOD
        def helper(x): return x * 10
        def task(x):
            return [helper(i) for i in range(x)]
        print(task(2))
        print(run_in_clean_worker(DUMPS(task), LOAD))
    """.replace("DUMPS", _DUMPS[_mod]).replace("MOD", _mod).replace(
        "LOAD", repr(_LOAD_AND_CALL.format(mod=_mod))),
             files={"worker.py": _WORKER})

    scenario(f"leaves-process/{_mod}-closure-generator-class", """
        from worker import run_in_clean_worker
        import MOD
        class Acc:
            def __init__(self): self.items = []
            def add(self, x):
                self.items.append(x)
                return self
        def make(k):
            def gen(n):
                for i in range(n):
                    yield i * k
            def task(n):
                acc = Acc()
                for v in gen(n): acc.add(v)
                return acc.items
            return task
        print(make(2)(3))
        print(run_in_clean_worker(DUMPS(make(5)), LOAD))
    """.replace("DUMPS", _DUMPS[_mod]).replace("MOD", _mod).replace(
        "LOAD", repr(_LOAD_AND_CALL.format(mod=_mod))),
             files={"worker.py": _WORKER})

    scenario(f"leaves-process/{_mod}-coroutine-by-value", """
        from worker import run_in_clean_worker
        import MOD
        async def inner(x): return x + 1
        async def task(x): return [await inner(i) for i in range(x)]
        print(run_in_clean_worker(DUMPS(task), "import asyncio, sys, MOD; "
              "f = MOD.loads(sys.stdin.buffer.read()); print(asyncio.run(f(3)))"))
    """.replace("DUMPS", _DUMPS[_mod]).replace("MOD", _mod), files={"worker.py": _WORKER})

scenario("leaves-process/cloudpickle-into-recorded-worker", """
    import cloudpickle, subprocess, sys
    def task(x): return x * 3
    r = subprocess.run([sys.executable, "-c",
                        "import sys, cloudpickle; f = cloudpickle.loads(sys.stdin.buffer.read()); "
                        "print(f(4))"], input=cloudpickle.dumps(task), capture_output=True)
    print(r.stdout.decode(), r.returncode)
""")

scenario("leaves-process/imported-module-by-value", """
    from worker import run_in_clean_worker
    import cloudpickle, lib
    cloudpickle.register_pickle_by_value(lib)
    print(run_in_clean_worker(cloudpickle.dumps(lib.task), "import sys, cloudpickle; "
          "f = cloudpickle.loads(sys.stdin.buffer.read()); print(f(3))"))
""", files={"worker.py": _WORKER, "lib.py": """
    def helper(x): return x - 1
    def task(n): return [helper(i) for i in range(n)]
"""})

_OTHER_PYTHONS = {"3.10": "~/.pyenv/versions/3.10.13/bin/python3.10",
                  "3.9": "~/.pyenv/versions/3.9.18/bin/python3.9",
                  "2.7": "~/.pyenv/versions/2.7.18/bin/python2.7"}

for _v, _path in _OTHER_PYTHONS.items():
    scenario(f"leaves-process/python{_v}-child-is-untouched", """
        import os, subprocess, sys
        py = os.path.expanduser(PATH)
        if not os.path.exists(py):
            print("not installed")
            sys.exit(0)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
            + [os.path.abspath("usersite")])
        r = subprocess.run([py, "-c", "print('child says hi')"], env=env,
                           capture_output=True, text=True)
        print(r.returncode, r.stdout, r.stderr)
    """.replace("PATH", repr(_path)),
             files={"usersite/sitecustomize.py": "print('user sitecustomize ran')\n"})

scenario("leaves-process/own-sitecustomize-chained", """
    import sys
    print("sitecustomize" in sys.modules, getattr(sys.modules.get("sitecustomize"), "MARK", None))
""", files={"usersite/sitecustomize.py": "MARK = 'user'\nprint('user sitecustomize ran')\n"},
         shell='PYTHONPATH="$PYTHONPATH:$PWD/usersite" {cmd}',
         limitation="the launcher (and the sidecar) are Python processes too: a "
                    "sitecustomize on PYTHONPATH runs in them as well, so its output shows "
                    "twice; inside the program it runs once, after the agent's")

scenario("leaves-process/restricted-builtins-function-copy", """
    import types
    def f(x):
        return x + 1
    g = types.FunctionType(f.__code__, {"__builtins__": {}})
    try:
        print(g(1))
    except NameError as e:
        print("NameError", e)
""", backends=("wrap", "wrap-pure"),
         limitation="the rewritten body calls the recorder through builtins; a copy of a "
                    "recorded function run with builtins of its own that lack them fails "
                    "with NameError (profile and monitor are unaffected)")

scenario("leaves-process/marshal-function-code", """
    import marshal
    def f(x):
        return x + 1
    try:
        print(len(marshal.dumps(f.__code__)) > 0)
    except ValueError as e:
        print("ValueError", e)
""", backends=("wrap", "wrap-pure"),
         limitation="a recorded function's code object carries the constant that lets it "
                    "run where nothing records it when pickled by value; marshal cannot "
                    "write that constant (profile and monitor are unaffected)")

# == transparency: the program's view of itself and its tools ===============================

scenario("transparency/inspect-stack-bottom", """
    import inspect, os, sys
    def where():
        st = inspect.stack()
        return [(os.path.basename(f.filename), f.function) for f in st]
    def outer(): return where()
    print(outer())
    print(len(inspect.stack()), sys._getframe().f_back)
""", check=recorded(outer=1, where=1))

# The agent's audit hook is added before the program runs and hands on only what it watches:
# the program's own hook sees the events it would see plainly, and not the agent's addition.
_OWN_AUDIT_HOOK = """
    import copy, json, os, sys
    seen = []
    # (not builtins.id, open, os.listdir or sys.setprofile: the agent's own Python code raises
    # those, in the program's threads or its flusher's, and a hook the program adds sees them;
    # see RELIABILITY)
    WATCHED = {"sys.addaudithook", "exec", "compile", "os.fork"}
    def hook(event, args):
        if event in WATCHED:
            seen.append(event)
    def work(d):
        return copy.deepcopy(d)
    sys.addaudithook(hook)
    work({"a": [1, 2], "b": (3,)})
    id(seen)
    exec("x = 1")
    os.listdir(".")
    if hasattr(os, "fork"):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    with open("prog.py") as f:
        f.read(1)
    sys.addaudithook(lambda e, a: None)
    print(json.dumps(seen))
"""
scenario("transparency/own-audit-hook-sees-the-same", _OWN_AUDIT_HOOK)

scenario("transparency/main-module-attributes", """
    import sys, os
    def show():
        m = sys.modules["__main__"]
        return (m.__name__, os.path.basename(m.__file__), m.__package__, m.__spec__,
                type(m.__loader__).__name__, m.__cached__ if hasattr(m, "__cached__") else "-",
                sys.argv, os.path.basename(sys.path[0]), sys.flags.inspect,
                type(__builtins__).__name__)
    print(show())
""", args=("a", "--b", "c d"))

scenario("transparency/traceback-nested-uncaught", """
    def a(x): return b(x) + 1
    def b(x): return c(x) * 2
    def c(x): return {"k": 1}[x]
    a("missing")
""")

scenario("transparency/keyboardinterrupt-uncaught", """
    def inner(): raise KeyboardInterrupt
    def outer(): return inner()
    print("before", flush=True)
    outer()
""")

scenario("transparency/recursionerror-uncaught", """
    def deep(n): return deep(n + 1) + 1
    deep(0)
""", normalize=lambda b: _files_and_error(b))

scenario("transparency/recursion-depth-reached", """
    import sys
    def deep(n):
        try:
            return deep(n + 1)
        except RecursionError:
            return n
    print(deep(0))
""", backends=("wrap",),
         # From 3.12 the recursion limit counts Python frames only: the C helper adds none.
         limitation=None if sys.version_info >= (3, 12) else (
             "the recorder's helper is one more call at the deepest point, so a program "
             "recursing to the limit reaches a few frames less"))

scenario("transparency/excepthook-raises", """
    import sys
    def hook(t, v, tb): raise RuntimeError("hook failed")
    sys.excepthook = hook
    def fail(): raise ValueError("original")
    fail()
""")

scenario("transparency/excepthook-custom-output", """
    import sys, traceback
    def hook(t, v, tb):
        print("HOOK", t.__name__, v, [f.name for f in traceback.extract_tb(tb)])
    sys.excepthook = hook
    def fail(x): raise LookupError(x)
    def caller(): fail("z")
    caller()
""")

scenario("transparency/settrace-events", """
    import sys
    events = []
    def tracer(frame, event, arg):
        if frame.f_code.co_filename == __file__:
            events.append((event, frame.f_code.co_name, frame.f_lineno))
        return tracer
    def add(a, b):
        c = a + b
        return c
    def gen(n):
        for i in range(n):
            yield add(i, 1)
    sys.settrace(tracer)
    total = sum(gen(3))
    sys.settrace(None)
    print(total)
    for e in events: print(e)
""", backends=("profile",))

scenario("transparency/settrace-events-wrap", """
    import sys
    events = []
    def tracer(frame, event, arg):
        if frame.f_code.co_filename == __file__:
            events.append((event, frame.f_code.co_name, frame.f_lineno))
        return tracer
    def add(a, b):
        c = a + b
        return c
    sys.settrace(tracer)
    add(1, 2)
    sys.settrace(None)
    for e in events: print(e)
""", backends=("wrap", "wrap-pure"),
         limitation="the rewritten body's `with` statement sits on the def line: a tracer "
                    "sees a line event for the def line when the call ends (and under the "
                    "pure twin, the recorder's own Python frames)")

scenario("transparency/setprofile-events", """
    import sys
    events = []
    def prof(frame, event, arg):
        if frame.f_code.co_filename == __file__:
            events.append((event, frame.f_code.co_name,
                           getattr(arg, "__name__", None) if event.startswith("c_") else None))
    def add(a, b): return len([a, b])
    sys.setprofile(prof)
    add(1, 2)
    sys.setprofile(None)
    for e in events: print(e)
""", backends=("wrap", "profile"),
         limitation="a program's own profile function sees the recorder's calls: c_call "
                    "events for the rewritten body's C helpers (wrap with the C hot path; the "
                    "pure twin's frames are the recorder's file, not the program's); under "
                    "profile, the program's sys.setprofile displaces the recorder meanwhile")

scenario("transparency/coverage-api-branch", """
    import coverage, io
    cov = coverage.Coverage(branch=True, data_file=None, include=["*target.py"])
    cov.start()
    import target
    target.main()
    cov.stop()
    out = io.StringIO()
    pct = cov.report(show_missing=True, file=out)
    print(out.getvalue().replace(chr(13), ""))
    print(round(pct, 2))
""", files={"target.py": """
    def classify(x):
        if x > 0:
            return "pos"
        elif x < 0:
            return "neg"
        return "zero"
    def loop(n):
        out = []
        for i in range(n):
            if i % 2:
                out.append(classify(i))
        return out
    def main():
        return loop(4), classify(0)
"""})

scenario("transparency/coverage-run-branch-cli", """
    import subprocess, sys
    r = subprocess.run([sys.executable, "-m", "coverage", "run", "--branch",
                        "--include=target.py", "target.py"], capture_output=True, text=True)
    print(r.returncode, r.stdout, r.stderr[-500:])
    r = subprocess.run([sys.executable, "-m", "coverage", "report", "-m",
                        "--include=target.py"], capture_output=True, text=True)
    print(r.stdout)
""", limitation="coverage.py under wrap reports a generator's loop-exit arc as a partial "
                "branch (9->exit): the rewritten body leaves through its with statement, "
                "which sits on the def line; line percentages and other branches agree",
   backends=("wrap", "wrap-pure"), files={"target.py": """
    def classify(x):
        if x > 0:
            return "pos"
        elif x < 0:
            return "neg"
        return "zero"
    def gen(n):
        for i in range(n):
            if i % 3 == 0:
                yield classify(i - 1)
    print(list(gen(5)), classify(2))
"""})

scenario("transparency/coverage-run-branch-cli-profile", SCENARIOS[-1].files["prog.py"],
         files={"target.py": SCENARIOS[-1].files["target.py"]}, backends=("profile",))

scenario("transparency/warnings-stacklevel", """
    import warnings
    warnings.simplefilter("always")
    def deprecated(x):
        warnings.warn("old api", DeprecationWarning, stacklevel=2)
        return x
    def user(): return deprecated(1)
    user()
    def deeper(): warnings.warn("three", UserWarning, stacklevel=3)
    def mid(): deeper()
    mid()
""")

scenario("transparency/logging-locations", """
    import logging, sys
    logging.basicConfig(stream=sys.stdout, format="%(filename)s:%(lineno)d %(funcName)s %(message)s")
    log = logging.getLogger("x")
    def work(x):
        log.warning("working %s", x)
        return x
    class K:
        def meth(self): log.error("in meth"); return work(2)
    work(1); K().meth()
""")

scenario("transparency/getframe-and-locals", """
    import sys
    def callee(a, b=2, *args, **kw):
        f = sys._getframe()
        return (f.f_code.co_name, f.f_back.f_code.co_name, sorted(f.f_locals),
                sorted(locals()), f.f_code.co_varnames, f.f_code.co_argcount,
                f.f_lineno - f.f_code.co_firstlineno)
    def caller(): return callee(1, 3, 4, k=5)
    print(caller())
""")

scenario("transparency/signatures-and-introspection", """
    import inspect, functools, asyncio
    def plain(a, b: int = 1, *, c): "doc"; return a
    async def coro(x): return x
    def gen(): yield 1
    async def agen(): yield 1
    class C:
        @property
        def p(self): return 1
        @classmethod
        def cm(cls): return cls
        @staticmethod
        def sm(): return 2
    @functools.wraps(plain)
    def wrapper(*a, **k): return plain(*a, **k)
    print(inspect.signature(plain), plain.__doc__, plain.__name__, plain.__qualname__)
    print(inspect.iscoroutinefunction(coro), inspect.isgeneratorfunction(gen),
          inspect.isasyncgenfunction(agen), inspect.signature(wrapper))
    print(C().p, C.cm().__name__, C.sm(), plain.__defaults__, plain.__kwdefaults__)
    print(inspect.getsource(plain).strip())
""")

scenario("transparency/two-lambdas-one-line", """
    import os
    T = {}
    os.register_at_fork(before=lambda: T.setdefault("b", 1), after_in_parent=lambda: T.setdefault("a", 2))
    f, g = (lambda: "first"), (lambda: "second")
    def h(): return f() + g()
    pid = os.fork()
    if pid == 0: os._exit(0)
    os.waitpid(pid, 0)
    print(sorted(T.items()), h())
""")

scenario("transparency/doctest-line-numbers", """
    def add(a, b):
        '''
        >>> add(1, 2)
        3
        >>> add(2, 2)
        5
        '''
        return a + b
    import doctest
    doctest.testmod()
""")

scenario("transparency/unittest-failure-output", """
    import unittest
    def compute(x): return x * 2
    class T(unittest.TestCase):
        def test_ok(self): self.assertEqual(compute(2), 4)
        def test_bad(self): self.assertEqual(compute(2), 5)
    unittest.main()
""", normalize=lambda b: re.sub(rb"in \d+\.\d+s", b"in Xs", b))

scenario("transparency/thread-exception-output", """
    import threading
    def work(): raise ValueError("in thread")
    t = threading.Thread(target=work, name="worker-1")
    t.start(); t.join()
    print("main continues")
""")

scenario("transparency/generator-protocol", """
    def gen():
        try:
            x = yield 1
            while True:
                x = yield x * 2
        except ValueError as e:
            yield f"caught {e}"
        finally:
            print("closed")
    g = gen()
    print(next(g), g.send(5), g.send(7), g.throw(ValueError("v")), g.gi_running)
    g.close()
    def delegating():
        r = yield from gen()
        return r
    d = delegating(); print(next(d), d.send(3)); d.close()
""")

scenario("transparency/exception-chains-and-notes", """
    def low(): raise KeyError("k")
    def mid():
        try:
            low()
        except KeyError as e:
            raise ValueError("wrapped") from e
    def top():
        try:
            mid()
        except ValueError as e:
            e.add_note("a note")
            raise
    top()
""")

scenario("transparency/atexit-and-exit-code", """
    import atexit, sys
    def bye(): print("bye", flush=True)
    atexit.register(bye)
    def main(): sys.exit(main_code())
    def main_code(): return 4
    main()
""")

scenario("transparency/builtins-namespace", """
    import builtins
    print(sorted(n for n in dir(builtins) if n.startswith("__fa")))
""", limitation="the rewritten bodies (wrap) and every backend's helpers are found through "
               "builtins under __fa_* names; a program listing builtins sees them")

# == loss: names and process events that must not stop recording ============================

def _nonutf8_dir(root):
    import os
    os.mkdir(os.path.join(os.fsencode(root), b"lib\xff"))
    with open(os.path.join(os.fsencode(root), b"lib\xff", b"badmod.py"), "w") as f:
        f.write("def inside(x):\n    return x + 1\n")


scenario("loss/module-path-not-utf8", """
    import os, sys
    sys.path.insert(0, os.path.join(os.getcwd(), os.fsdecode(b"lib\\xff")))
    import badmod
    def before(i): return i
    def after(i): return badmod.inside(i)
    print(sum(before(i) for i in range(50)))
    print(sum(after(i) for i in range(50)))
""", setup=_nonutf8_dir, env={"FLOWAGENT_INCLUDE": "__main__,badmod"},
         check=recorded(before=50, after=50, inside=50),
         normalize=lambda b: b)

scenario("loss/thread-name-lone-surrogate", """
    import threading
    def work(i): return i
    def run(): return sum(work(i) for i in range(100))
    t = threading.Thread(target=run, name="bad\\udcffname"); t.start(); t.join()
    def later(i): return i
    print(sum(later(i) for i in range(100)))
""", check=recorded(run=1, work=100, later=100))

scenario("loss/dict-key-not-utf8", """
    def take(d): return len(d)
    def later(i): return i
    print(take({"k\\udcff": 1, "ok": 2}), sum(later(i) for i in range(50)))
""", check=recorded(take=1, later=50))

scenario("loss/argv-not-utf8", """
    import sys
    def work(a): return len(a)
    print(work(sys.argv[1]) > 0)
""", args=("caf\\udcff",), check=recorded(work=1))

for _how in ("execv", "execl", "execvp", "execve"):
    _call = {"execv": "os.execv(sys.executable, [sys.executable, '-c', 'print(\"after exec\")'])",
             "execl": "os.execl(sys.executable, sys.executable, '-c', 'print(\"after exec\")')",
             "execvp": "os.execvp(sys.executable, [sys.executable, '-c', 'print(\"after exec\")'])",
             "execve": "os.execve(sys.executable, [sys.executable, '-c', 'print(\"after exec\")'], "
                       "dict(os.environ))"}[_how]
    scenario(f"loss/os-{_how}-flushes-first", """
        import os, sys
        def before(i): return i
        def session(): return sum(before(i) for i in range(300))
        print(session(), flush=True)
        CALL
    """.replace("CALL", _call), check=recorded(before=300))

scenario("loss/profile-displaced-by-setprofile", """
    import sys
    def work(i): return i
    def mine(frame, event, arg): pass
    before = sum(work(i) for i in range(50))
    old = sys.getprofile()
    sys.setprofile(mine)
    sys.setprofile(old)
    print(before, sum(work(i) for i in range(50)))
""", check=recorded(work=100))

scenario("loss/profile-cleared-by-setprofile-none", """
    import sys, os
    def work(i): return i
    before = sum(work(i) for i in range(50))
    sys.setprofile(None)           # not restoring what was there: clearing it
    os.listdir(".")                # anything audited: the recorder takes the thread back
    print(before, sum(work(i) for i in range(50)))
""", check=recorded(work=100))

scenario("loss/profile-replaced-then-cleared", """
    import sys, json
    def work(i): return i
    seen = []
    def mine(frame, event, arg):
        if event == "call": seen.append(frame.f_code.co_name)
    before = sum(work(i) for i in range(50))
    sys.setprofile(mine)
    sum(work(i) for i in range(5))
    sys.setprofile(None)
    json.loads(open(__file__).read(0) or "1")   # an open() in between
    print(before, sum(work(i) for i in range(50)), seen.count("work"))
""", check=recorded(work=100))

scenario("loss/profile-cleared-in-a-thread", """
    import sys, threading, os
    def work(i): return i
    def job():
        sum(work(i) for i in range(20))
        sys.setprofile(None)
        os.listdir(".")
        sum(work(i) for i in range(20))
    t = threading.Thread(target=job); t.start(); t.join()
    print(sum(work(i) for i in range(10)))
""", check=recorded(work=50))

scenario("loss/profile-displaced-by-cprofile-enable-disable", """
    import cProfile
    def work(i): return i
    def batch(): return sum(work(i) for i in range(50))
    batch()
    p = cProfile.Profile()
    p.enable(); batch(); p.disable()
    p.enable(); batch(); p.disable()
    print(batch())
""", check=recorded(batch=2, work=100))

scenario("loss/profile-displaced-by-cprofile", """
    import cProfile, io, pstats
    def work(i): return i
    def batch(): return sum(work(i) for i in range(50))
    batch()
    p = cProfile.Profile()
    p.runcall(batch)
    print(batch())
""", check=recorded(batch=2))
