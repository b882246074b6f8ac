"""Downloads in the export formats, generated from the store on each request.

The format must be a key of :data:`flowagent.reports.export.FORMATS` (anything else, such as
``../../x``, is a 404) and ids are looked up in the store; the download's file name is built
from the id the store returned, reduced to safe characters. Nothing is read from disk but the
database.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from typing import IO

from flask import Blueprint, Response, abort, request

from flowagent.reports.export import FORMATS, ExportFormat
from flowagent.reports.export.mermaid import session_sequence_mermaid
from flowagent.model.graph import from_aggregates, merge_all, to_contract

from .data import get_store, merged_contract, run_or_404, session_or_404

bp = Blueprint("exports", __name__, url_prefix="/export")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
SPOOL_BYTES = 8 * 1024 * 1024


def _format(kind: str) -> ExportFormat:
    name = request.args.get("format") or "json"
    fmt = FORMATS.get(name)
    if fmt is None or kind not in fmt.inputs:
        abort(404, description=f"no export format {name!r} for a {kind}; formats: "
                               + ", ".join(f.name for f in FORMATS.values() if kind in f.inputs))
    return fmt


def _download(body: str | Iterator[bytes], fmt: ExportFormat, stem: str) -> Response:
    filename = _UNSAFE.sub("_", stem).strip("._") or "flowagent"
    media = fmt.media_type + ("; charset=utf-8" if not fmt.media_type.endswith("json") else "")
    response = Response(body, mimetype=None, content_type=media)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}{fmt.extension}"'
    return response


def _chunks(spool: IO[str]) -> Iterator[bytes]:
    try:
        spool.seek(0)
        while chunk := spool.read(64 * 1024):
            yield chunk.encode("utf-8")
    finally:
        spool.close()


@bp.get("/sessions/<session_id>")
def session(session_id: str) -> Response:
    fmt = _format("session")
    row = session_or_404(session_id)
    graph = get_store().session_graph(session_id)
    assert fmt.session is not None and graph is not None
    return _download(fmt.session(graph), fmt, f"session-{row['session_id']}")  # type: ignore


@bp.get("/sessions/<session_id>/sequence.mmd")
def session_sequence(session_id: str) -> Response:
    """The session as a Mermaid ``sequenceDiagram`` (the sequence page's download)."""
    row = session_or_404(session_id)
    graph = get_store().session_graph(session_id) or {"nodes": [], "edges": []}
    filename = _UNSAFE.sub("_", f"session-{row['session_id']}-sequence").strip("._")
    response = Response(session_sequence_mermaid(graph), content_type="text/plain; charset=utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}.mmd"'
    return response


@bp.get("/runs/<run_id>")
def run(run_id: str) -> Response:
    """A run: its merged graph (json, dot, mermaid) or all its kept sessions (trace formats)."""
    name = request.args.get("format") or "json"
    kind = "merged" if FORMATS.get(name) and FORMATS[name].merged else "sessions"
    fmt = _format(kind)
    run = run_or_404(run_id)
    stem = f"run-{run['run_id']}"
    if fmt.merged is not None:
        return _download(fmt.merged(merged_contract(run)), fmt, stem)  # type: ignore[arg-type]
    assert fmt.sessions is not None
    # A run can hold thousands of session trees: write to a spooled file (memory, then disk
    # past a few MiB) rather than building one huge string.
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+", encoding="utf-8")
    fmt.sessions(get_store().iter_session_graphs(run["run_id"]), spool)  # type: ignore
    return _download(_chunks(spool), fmt, stem)  # type: ignore[arg-type]


@bp.get("/merged")
def merged() -> Response:
    """The architecture graph merged over the given runs (``?run=A&run=B``), or all runs."""
    fmt = _format("merged")
    store = get_store()
    run_ids = request.args.getlist("run") or [r["run_id"] for r in store.runs()]
    for run_id in run_ids:
        run_or_404(run_id)
    contract = to_contract(merge_all(from_aggregates(store.aggregates(r)) for r in run_ids))
    assert fmt.merged is not None
    return _download(fmt.merged(contract), fmt, "merged")  # type: ignore[arg-type]
