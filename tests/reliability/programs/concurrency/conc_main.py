"""Drives conc_app concurrently (this driver is not recorded: run with --include conc_app).

argv: SCENARIO REQUESTS. Prints `requests N` (the sessions the store must hold) and `ok`.
"""

import asyncio
import concurrent.futures
import multiprocessing
import os
import sys
import threading
import time

scenario, n = sys.argv[1], int(sys.argv[2])
if scenario.startswith("gevent"):
    from gevent import monkey

    monkey.patch_all()

import conc_app


def arg(i):
    return i if i % 2 else f"s{i}"


def run_some(start, count):
    for i in range(start, start + count):
        conc_app.handle(arg(i))


def threads():
    per = n // 8
    ts = [threading.Thread(target=run_some, args=(k * per, per)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return per * 8


def asyncio_tasks():
    async def everything():
        # The coroutines are created here, outside any recorded call: one session each.
        await asyncio.gather(*(conc_app.ahandle(arg(i)) for i in range(n)))

    asyncio.run(everything())
    return n


def thread_pool():
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(conc_app.handle, map(arg, range(n))))
    return n


def process_pool(method):
    ctx = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=ctx) as pool:
        list(pool.map(conc_app.handle, map(arg, range(n)), chunksize=8))
    return n


def fork_while_threads_record():
    """Threads record without pause while the main thread forks: no deadlock in the children
    (locks held at fork) nor at anyone's exit."""
    def busy(k):
        for _ in range(1000):
            conc_app.handle(arg(k))

    ts = [threading.Thread(target=busy, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    children = 0
    for i in range(10):
        pid = os.fork()
        if pid == 0:
            for j in range(5):
                conc_app.handle(arg(j))
            os._exit(0)
        children += 1
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    for t in ts:
        t.join()
    return 4 * 1000 + children * 5


def daemon_threads_at_exit():
    """Daemon threads still recording while the interpreter exits."""
    def forever(k):
        while True:
            conc_app.handle(arg(k))
            time.sleep(0.001)

    for k in range(4):
        threading.Thread(target=forever, args=(k,), daemon=True).start()
    run_some(0, n)
    time.sleep(0.05)
    return -1  # unknown: the daemons' sessions are cut at exit


def gevent_greenlets():
    import gevent

    gevent.joinall([gevent.spawn(conc_app.ghandle, arg(i)) for i in range(n)])
    return n


def gevent_hubs():
    """How many gevent hubs exist once the program has idled a little: one per thread that
    ran gevent code. Plainly only the main thread's."""
    import gc

    import gevent
    import gevent.hub

    gevent.sleep(0.3)
    print("gevent hubs:", sum(isinstance(o, gevent.hub.Hub) for o in gc.get_objects()))
    return 0


SCENARIOS = {
    "threads": threads, "asyncio": asyncio_tasks, "thread-pool": thread_pool,
    "process-pool-fork": lambda: process_pool("fork"),
    "process-pool-spawn": lambda: process_pool("spawn"),
    "fork-with-threads": fork_while_threads_record, "daemon-exit": daemon_threads_at_exit,
    "gevent": gevent_greenlets, "gevent-hubs": gevent_hubs,
}

if __name__ == "__main__":
    print("main", os.getpid())
    print("requests", SCENARIOS[scenario]())
    print("ok")
