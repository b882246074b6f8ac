"""About a million small pure-Python calls: ints in, ints out, functions calling each other.

Each iteration makes exactly five calls (unit -> step -> mul, add; unit -> mix), so the
count is known without tracing: 5 * n + 2 (main and run included).
"""

from __future__ import annotations

import time

FULL_N = 200_000  # 5 * 200_000 + 2 = 1_000_002 calls


def add(a: int, b: int) -> int:
    return a + b


def mul(a: int, b: int) -> int:
    return a * b % 1_000_003


def mix(x: int) -> int:
    return x ^ (x >> 3)


def step(x: int, i: int) -> int:
    return add(mul(x, 31), i)


def unit(x: int, i: int) -> int:
    return mix(step(x, i))


def run(n: int) -> int:
    x = 1
    for i in range(n):
        x = unit(x, i)
    return x


def main(n: int | None = None) -> int:
    n = FULL_N if n is None else n
    c0 = time.process_time_ns()
    t0 = time.perf_counter_ns()
    result = run(n)
    elapsed = time.perf_counter_ns() - t0
    cpu = time.process_time_ns() - c0
    print(f"workload=calls calls={5 * n + 2} result={result} elapsed_ns={elapsed} "
          f"cpu_ns={cpu}", flush=True)
    return result
