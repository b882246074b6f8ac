"""Writes ``mods/m00.py`` .. ``mods/m49.py``: 16 functions and a 4-method class each.

Deterministic and idempotent: a file is only rewritten when its content would change, so
the interpreter's ``.pyc`` cache stays valid across benchmark runs (as it would for a real
installed package)."""

from __future__ import annotations

import os

N_MODULES = 50
HERE = os.path.dirname(os.path.abspath(__file__))


def module_source(m: int) -> str:
    lines = [f'"""Generated module {m} of the start-up workload."""', "",
             "from __future__ import annotations", "", "import json", "import re", "",
             f"_PATTERN = re.compile(r'[a-z]+{m}')",
             f"_TABLE = {{k: k * {m + 1} for k in range(32)}}",
             ""]
    for f in range(16):
        nxt = f"f{f + 1:02d}(x + 1)" if f < 15 else "x"
        lines += [
            "",
            f"def f{f:02d}(x: int, *, scale: int = {f + 1}) -> int:",
            f'    """Function {f} of module {m}: a little arithmetic and a dict lookup."""',
            f"    if x < 0:",
            f"        raise ValueError('negative input')",
            f"    base = _TABLE.get(x % 32, 0) + scale",
            f"    if x % 3 == 0 and {f} % 2:",
            f"        base += len(json.dumps({{'x': x, 'm': {m}}}))",
            f"    return (base + ({nxt} if x < 0 else 0)) % 1000003",
            "",
        ]
    lines += [
        "",
        f"class Widget{m}:",
        f'    """A class with a few methods."""',
        "",
        "    def __init__(self, name: str, size: int = 1) -> None:",
        "        self.name = name",
        "        self.size = size",
        "",
        "    def area(self) -> int:",
        "        return self.size * self.size",
        "",
        "    @property",
        "    def label(self) -> str:",
        "        return f'{self.name}:{self.size}'",
        "",
        "    @classmethod",
        "    def make(cls, spec: dict) -> 'Widget" + str(m) + "':",
        "        return cls(spec.get('name', 'w'), int(spec.get('size', 1)))",
        "",
    ]
    return "\n".join(lines) + "\n"


def generate(n: int = N_MODULES) -> str:
    mods = os.path.join(HERE, "mods")
    os.makedirs(mods, exist_ok=True)
    files = {"__init__.py": '"""Generated modules of the start-up workload."""\n'}
    files.update({f"m{m:02d}.py": module_source(m) for m in range(n)})
    for name, text in files.items():
        path = os.path.join(mods, name)
        try:
            with open(path) as f:
                if f.read() == text:
                    continue
        except FileNotFoundError:
            pass
        with open(path, "w") as f:
            f.write(text)
    return mods


if __name__ == "__main__":
    print(generate())
