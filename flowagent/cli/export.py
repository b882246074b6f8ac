"""``flowagent export``: graphs and sessions in the standard formats.
"""

from __future__ import annotations

import sys

from ..errors import NotFoundError, UsageError
from .common import _names_data_dir, _run_id, _run_refs, _store

TYPE_CHECKING = False  # `flowagent run` imports as little as it can: no typing, no argparse
if TYPE_CHECKING:
    import argparse
    from typing import TextIO


def cmd_export(ns: argparse.Namespace, out: TextIO) -> int:
    from ..reports.export import FORMATS

    if ns.format in ("otlp", "otlp-json"):
        from .otlp import export_otlp

        return export_otlp(ns, _store(ns.data_dir, ns.store), _run_id, out)
    # Runs named by their data directories need no store of their own (unless one is named).
    store = _store(ns.data_dir, ns.store) if ns.store or ns.session or not ns.run \
        or not all(map(_names_data_dir, ns.run)) else None
    fmt = FORMATS[ns.format]
    if ns.aggregate and (ns.format != "speedscope" or ns.session):
        raise UsageError("--aggregate goes with --format speedscope and a run, not a session")
    if ns.session:
        g = store.session_graph(ns.session)
        if g is None:
            raise NotFoundError(f"no session {ns.session!r}; 'flowagent sessions' lists them")
    from ..reports import stitch

    refs = _run_refs(store, ns.run)
    if ns.session and len(refs) > 1:
        # The session with the requests it made to the other runs' services.
        at = [i for i, r in enumerate(refs) if r.run_id == g["run_id"]]
        if at:
            g = stitch.session(refs, at[0], ns.session) or g
    target: TextIO = open(ns.output, "w", encoding="utf-8") if ns.output else out
    try:
        if ns.session:
            target.write(fmt.session(g))  # type: ignore[misc]
        elif ns.aggregate:
            # One flame graph of every kept session: collapsed stacks as a sampled profile.
            from ..reports.export.collapsed import collapsed_stacks
            from ..reports.export.speedscope import merged_speedscope

            merged_speedscope(collapsed_stacks(stitch.sessions(refs)), target)
        elif fmt.merged is not None:
            from ..model.graph import from_aggregates, merge_all, to_contract

            graphs = (from_aggregates(a) for a in stitch.aggregates(refs))
            target.write(fmt.merged(to_contract(merge_all(graphs))))  # type: ignore[arg-type]
        else:
            # Trace formats: every kept session of the runs, streamed one at a time; a
            # request one run made to another is inside the session that made it.
            fmt.sessions(stitch.sessions(refs), target)  # type: ignore[misc]
    finally:
        if ns.output:
            target.close()
    if ns.output:
        sys.stderr.write(f"flowagent: wrote {ns.output}\n")
    return 0
