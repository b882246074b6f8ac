"""``flowagent export --format otlp|otlp-json``: a run's kept sessions as OpenTelemetry spans.

Kept apart from the text formats of :data:`flowagent.reports.export.FORMATS`: the protobuf encoding is
binary, and both need the run's service name, which the text formats do not.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from ..errors import NotFoundError, UsageError
from ..reports.export.otlp import require_proto, run_service_name, with_row, write_otlp, \
    write_otlp_json


def export_otlp(ns: Any, store: Any, run_id_of: Callable[[Any, str | None], str],
                out: TextIO) -> int:
    if ns.aggregate:
        raise UsageError("--aggregate goes with --format speedscope, not otlp")
    require_proto()  # before any file is created
    if ns.format == "otlp" and not ns.output and out.isatty():
        raise UsageError("--format otlp writes binary protobuf: give -o FILE (or use "
                         "--format otlp-json for text)")
    if ns.session:
        graph = store.session_graph(ns.session)
        if graph is None:
            raise NotFoundError(f"no session {ns.session!r}; 'flowagent sessions' lists them")
        runs = [graph["run_id"]]
        sessions: Iterator[dict[str, Any]] = iter([with_row(graph, store.session(ns.session))])
    else:
        runs = [run_id_of(store, r) for r in (ns.run or [None])]
        sessions = (with_row(g, store.session(g["session_id"]))
                    for r in runs for g in store.iter_session_graphs(r))
    service = ns.service or run_service_name(store.run(runs[0]) or {})
    if ns.format == "otlp":
        target = open(ns.output, "wb") if ns.output else out.buffer  # type: ignore[attr-defined]
        try:
            spans = write_otlp(sessions, target, service)
        finally:
            if ns.output:
                target.close()
            else:
                target.flush()
    else:
        text = open(ns.output, "w", encoding="utf-8") if ns.output else out
        try:
            spans = write_otlp_json(sessions, text, service)
        finally:
            if ns.output:
                text.close()
    if ns.output:
        sys.stderr.write(f"flowagent: wrote {ns.output} ({spans} spans)\n")
    return 0
