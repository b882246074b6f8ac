"""Export formats: pure functions from the store's plain dicts to standard file formats.

:data:`FORMATS` is the one table the CLI and the viewer read: for each format, its file
extension, its media type and which inputs it accepts. A format accepts

* ``session``: one session graph → text;
* ``merged``: the merged architecture graph → text;
* ``sessions``: a stream of session graphs written to an open text file (the trace formats,
  which put many sessions on one timeline or one flame graph).

Callers read ``fmt.session is not None`` (or :attr:`ExportFormat.inputs`) rather than
checking format names.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TextIO

from flowagent.reports.export import chrome, collapsed, dot, jsonfmt, mermaid, speedscope
from flowagent.model.contract import MergedGraph, SessionGraph

SessionExport = Callable[[SessionGraph], str]
MergedExport = Callable[[MergedGraph], str]
StreamExport = Callable[[Iterable[SessionGraph], TextIO], object]


@dataclass(frozen=True, slots=True)
class ExportFormat:
    name: str
    extension: str  # with the dot: ".dot"
    media_type: str
    session: SessionExport | None = None
    merged: MergedExport | None = None
    sessions: StreamExport | None = None

    @property
    def inputs(self) -> frozenset[str]:
        """Which of ``"session"``, ``"merged"``, ``"sessions"`` this format accepts."""
        return frozenset(
            kind for kind in ("session", "merged", "sessions") if getattr(self, kind) is not None
        )


def _one_session(write: StreamExport) -> SessionExport:
    """A streaming writer used on a single session, returning the text."""

    def export(g: SessionGraph) -> str:
        buffer = io.StringIO()
        write([g], buffer)
        return buffer.getvalue()

    return export


FORMATS: dict[str, ExportFormat] = {
    "json": ExportFormat(
        "json", ".json", "application/json",
        session=lambda g: jsonfmt.dumps(jsonfmt.session_json(g)) + "\n",
        merged=lambda g: jsonfmt.dumps(jsonfmt.merged_json(g)) + "\n",
    ),
    "dot": ExportFormat(
        "dot", ".dot", "text/vnd.graphviz", session=dot.session_dot, merged=dot.merged_dot
    ),
    "mermaid": ExportFormat(
        "mermaid", ".mmd", "text/vnd.mermaid",
        session=mermaid.session_mermaid, merged=mermaid.merged_mermaid,
    ),
    "chrome": ExportFormat(
        "chrome", ".trace.json", "application/json",
        session=_one_session(chrome.write_chrome_trace), sessions=chrome.write_chrome_trace,
    ),
    "speedscope": ExportFormat(
        "speedscope", ".speedscope.json", "application/json",
        session=_one_session(speedscope.write_speedscope), sessions=speedscope.write_speedscope,
    ),
    "collapsed": ExportFormat(
        "collapsed", ".collapsed.txt", "text/plain",
        session=_one_session(collapsed.write_collapsed), sessions=collapsed.write_collapsed,
    ),
}

__all__ = ["FORMATS", "ExportFormat"]
