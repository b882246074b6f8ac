"""Work handed to threads, a thread pool, run_in_executor and to_thread from inside recorded
calls and inside a web request; a thread that outlives the call that started it; a failure
in the pool re-raised in the caller."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from flask import Flask

import work

POOL = ThreadPoolExecutor(2)
app = Flask(__name__)


def fan_out():
    threads = [threading.Thread(target=work.crunch, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(POOL.map(work.crunch, range(3)))


def outside():
    return POOL.submit(work.crunch, 10).result()


async def in_executor():
    loop = asyncio.get_running_loop()
    a = await loop.run_in_executor(None, work.crunch, 1)
    b = await asyncio.to_thread(work.crunch, 2)
    return a + b


def fire_and_forget():
    threading.Thread(target=work.later, args=(5,)).start()


def boom():
    return POOL.submit(work.crunch, None).result()


@app.route("/report")
def report():
    return {"total": fan_out()}


def main():
    print(fan_out(), outside(), asyncio.run(in_executor()))
    fire_and_forget()
    try:
        boom()
    except TypeError as e:
        print("caught", e)
    print(app.test_client().get("/report").get_json()["total"])


main()
print(outside())
