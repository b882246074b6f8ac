"""Start-up workload: import a generated mid-size package (50 modules x 20 functions, about
10 000 lines; see ``generate.py``) and call one function of each module.

This is what flowagent instruments at import time, so it measures the import hook's cost
(selection, source rewriting, compiling without the ``.pyc`` cache) against plain imports.
"""

from __future__ import annotations

import importlib
import time

N_MODULES = 50


def main(n: int | None = None) -> int:
    n = N_MODULES if n is None else n
    c0 = time.process_time_ns()
    t0 = time.perf_counter_ns()
    acc = 0
    for i in range(n):
        mod = importlib.import_module(f"bench_startup.mods.m{i:02d}")
        acc = (acc * 31 + mod.f00(i)) % 2**61
    elapsed = time.perf_counter_ns() - t0
    cpu = time.process_time_ns() - c0
    # one call of f00 per module, plus main itself
    print(f"workload=startup calls={n + 1} result={acc} elapsed_ns={elapsed} "
          f"cpu_ns={cpu}", flush=True)
    return acc
