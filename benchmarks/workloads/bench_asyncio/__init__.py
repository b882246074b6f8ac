"""Many concurrent asyncio tasks (2000 by default) whose awaits call into this package:
each task fetches (yields to the loop), parses, enriches with a second await, scores
synchronously and stores; tasks interleave at every await."""

from __future__ import annotations

import asyncio
import time

FULL_N = 2000


async def fetch(i: int) -> dict:
    await asyncio.sleep(0)
    return {"id": i, "values": [i % 7, i % 11, i % 13], "tag": "even" if i % 2 == 0 else "odd"}


def parse(raw: dict) -> tuple[int, list[int]]:
    return raw["id"], [v * 2 for v in raw["values"]]


def score(values: list[int]) -> int:
    return sum(weight(v, k) for k, v in enumerate(values))


def weight(v: int, k: int) -> int:
    return v * (k + 1)


async def enrich(ident: int, values: list[int]) -> list[int]:
    await asyncio.sleep(0)
    return values + [ident % 5]


async def store(results: dict, ident: int, value: int) -> None:
    await asyncio.sleep(0)
    results[ident] = value


async def job(i: int, results: dict) -> int:
    ident, values = parse(await fetch(i))
    values = await enrich(ident, values)
    value = score(values)
    await store(results, ident, value)
    return value


async def run_all(n: int) -> int:
    results: dict[int, int] = {}
    values = await asyncio.gather(*(job(i, results) for i in range(n)))
    return sum(values) * 31 + sum(results.values())


def main(n: int | None = None) -> int:
    n = FULL_N if n is None else n
    c0 = time.process_time_ns()
    t0 = time.perf_counter_ns()
    result = asyncio.run(run_all(n))
    elapsed = time.perf_counter_ns() - t0
    cpu = time.process_time_ns() - c0
    # per task: job, fetch, parse, enrich, score, 4 x weight, store = 10; plus run_all, main
    print(f"workload=asyncio calls={10 * n + 2} result={result} elapsed_ns={elapsed} "
          f"cpu_ns={cpu}", flush=True)
    return result
