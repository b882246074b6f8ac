"""A request-handler simulation: ~25-35 nested calls per request over dicts, lists and
dataclasses; about 5% of requests raise below the handler (bad quantity, unknown product)
and are turned into error responses."""

from __future__ import annotations

import random
import time

from .handler import handle

FULL_N = 2000


def make_requests(n: int) -> list[dict]:
    rnd = random.Random(1234)
    out = []
    for i in range(n):
        uid = rnd.randrange(1, 500)
        items = [{"sku": f"SKU-{rnd.randrange(200):03d}", "qty": rnd.randrange(1, 5)}
                 for _ in range(rnd.randrange(3, 6))]
        roll = rnd.random()
        if roll < 0.025:
            items[-1]["qty"] = 0                 # ValidationError, handled: 400
        elif roll < 0.05:
            items[-1]["sku"] = "SKU-missing"     # KeyError, handled: 404
        out.append({"request_id": i, "user_id": uid, "token": f"tok-{uid}", "items": items,
                    "coupon": "SAVE5" if rnd.random() < 0.2 else None})
    return out


def checksum(responses: list[dict]) -> int:
    acc = 0
    for r in responses:
        acc = (acc * 31 + r["status"] + int(r.get("prices", {}).get("total", 0) * 100)) % 2**61
    return acc


def main(n: int | None = None) -> int:
    n = FULL_N if n is None else n
    requests = make_requests(n)
    log: list = []
    c0 = time.process_time_ns()
    t0 = time.perf_counter_ns()
    responses = [handle(r, log) for r in requests]
    elapsed = time.perf_counter_ns() - t0
    cpu = time.process_time_ns() - c0
    result = checksum(responses)
    print(f"workload=handler calls=? result={result} elapsed_ns={elapsed} cpu_ns={cpu}",
          flush=True)
    return result
