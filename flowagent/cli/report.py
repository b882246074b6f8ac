"""``flowagent report -o run.html``: one self-contained HTML file of a run, built by
:mod:`flowagent.reports.html` and written whole (through a temporary file) or not at all.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

from .common import _run_id, _store


def add_parser(sub: Any) -> None:
    from ..reports.html import ENTRIES, WORST

    sp = sub.add_parser("report", help="write one self-contained HTML file of a run "
                                       "(map, flows, stats, worst sessions)")
    sp.add_argument("--data-dir", metavar="DIR")
    sp.add_argument("--store", metavar="URL", help="store to read (default: the data "
                    "directory's flowagent.db)")
    sp.add_argument("--run", metavar="RUN", help="run id or prefix (default: latest)")
    sp.add_argument("-o", "--output", metavar="FILE", required=True,
                    help="the HTML file to write (e.g. run.html)")
    sp.add_argument("--entries", type=int, default=ENTRIES, metavar="N",
                    help=f"entry points whose flows are included ({ENTRIES})")
    sp.add_argument("--sessions", type=int, default=WORST, metavar="N",
                    help=f"slowest and failed sessions included, each ({WORST})")


def cmd_report(ns: argparse.Namespace, out: TextIO) -> int:
    from ..reports.html import ReportError, build, render

    store = _store(ns.data_dir, ns.store)
    run_id = _run_id(store, ns.run)
    html = render(build(store, run_id, entries=ns.entries, worst=ns.sessions))
    target = os.path.abspath(ns.output)
    if os.path.isdir(target):
        raise ReportError(f"{ns.output} is a directory; give a file name such as run.html")
    tmp = f"{target}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(html)
        os.replace(tmp, target)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ReportError(f"cannot write {ns.output}: {exc.strerror or exc}; "
                          "choose a writable path with -o") from exc
    out.write(f"flowagent: report of run {run_id} written to {ns.output} "
              f"({len(html.encode('utf-8')) / 2**20:.1f} MiB); open it in a browser\n")
    return 0
