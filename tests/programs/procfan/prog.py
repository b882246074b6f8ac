"""One Flask request served over real HTTP on 127.0.0.1 fans its work out to a thread, a
thread pool, a process pool (spawn), a forkserver child and a subprocess."""

import multiprocessing as mp
import subprocess
import sys
import threading
import urllib.request
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from flask import Flask
from werkzeug.serving import make_server

import work

app = Flask(__name__)


def in_thread():
    t = threading.Thread(target=work.crunch, args=(1,))
    t.start()
    t.join()


def in_pools():
    with ThreadPoolExecutor(1) as threads:
        a = threads.submit(work.crunch, 2).result()
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as procs:
        b = procs.submit(work.crunch, 3).result()
    return a + b


def in_child_process():
    p = mp.get_context("forkserver").Process(target=work.crunch, args=(4,))
    p.start()
    p.join()
    return p.exitcode


def in_subprocess():
    out = subprocess.run([sys.executable, "-c", "import work; print(work.crunch(5))"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


@app.route("/fan")
def fan():
    in_thread()
    return {"pools": in_pools(), "exit": in_child_process(), "sub": in_subprocess()}


def main():
    server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/fan"
        with urllib.request.urlopen(url, timeout=120) as r:
            print(r.status, r.read().decode().strip())
    finally:
        server.shutdown()
        serving.join()


if __name__ == "__main__":
    main()
