"""One self-contained HTML file of a run (written by ``flowagent report -o run.html``).

The file holds the architecture map (every collapse level, laid out in the browser by the
same code as the viewer's), the flows of the busiest entry points, the statistics and the
worst sessions (slowest and failed) with their sequence diagrams. Everything is inline (data
as JSON, scripts, styles, the ELK layout worker as a blob), so it opens from disk, from a CI
artifact or a mail attachment, with no server and no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import FlowagentError

ENTRIES = 10          # flows of the busiest entry points
WORST = 10            # slowest sessions, and as many failed ones
SEQUENCE_CALLS = 150  # calls drawn per sequence diagram
# Scripts in the order they load; vendor files first. The ELK worker goes in as text.
SCRIPTS = ("vendor/cytoscape.min.js", "vendor/elk-api.js", "js/common.js", "js/svgdraw.js",
           "js/mapdraw.js", "js/flowdraw.js", "js/seqdraw.js", "js/report.js")


def build(store: Any, run_id: str, *, entries: int = ENTRIES, worst: int = WORST
          ) -> dict[str, Any]:
    """Everything the report shows, as plain data."""
    from flowagent_viewer import flowview, graphview
    from flowagent_viewer.statsview import page_stats

    from . import stats
    from .export._sequence import sequence
    from ..model.graph import from_aggregates, to_contract
    from ..store import queries

    run = store.run(run_id) or {"run_id": run_id}
    report = stats.report(store, run_id)
    contract = to_contract(from_aggregates(store.aggregates(run_id)))
    views = {level: graphview.view_graph(contract, level=level) for level in graphview.LEVELS}
    roots = queries.session_roots(store, run_id)
    entry_list = flowview.entries(report, roots)
    flows = [f for f in (flowview.flow(store, run_id, e["entry"], report)
                         for e in entry_list[:max(entries, 0)]) if f]
    picked: dict[str, dict[str, Any]] = {}
    for why, rows in (("slowest", store.sessions(run_id, order="duration", limit=worst)),
                      ("failed", store.sessions(run_id, result="error", order="duration",
                                                limit=worst))):
        for row in rows:
            item = picked.setdefault(row["session_id"], dict(row, why=[]))
            item["why"].append(why)
    sessions = []
    for item in sorted(picked.values(), key=lambda r: -(r.get("duration_ns") or 0)):
        graph = store.session_graph(item["session_id"]) or {"nodes": []}
        item["sequence"] = sequence(graph, limit=SEQUENCE_CALLS).as_dict()
        sessions.append(item)
    page = page_stats(report, dict(run, live=False), "self")
    return {
        "run": run, "auto_level": graphview.auto_level(contract), "views": views,
        "entries": entry_list, "flows": flows, "sessions": sessions,
        "stats": {"functions": page["functions"][:30] if "functions" in page else [],
                  "clusters": report["error_clusters"][:20],
                  "variants": report["variants"][:20],
                  "session_durations": report["session_durations"],
                  "loss": report["loss"]},
    }


def _inline_script(text: str) -> str:
    # Inside <script>, only "</script" (any case) and "<!--" can end or confuse the element;
    # "<\/" means the same as "</" wherever it can occur in JavaScript (strings, regexes).
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def render(data: dict[str, Any]) -> str:
    """The report as one HTML document."""
    import jinja2

    import flowagent_viewer
    from flowagent_viewer import fmt

    root = Path(flowagent_viewer.__file__).parent
    static = root / "static"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(root / "templates")),
                             autoescape=True)
    for name in ("duration", "timestamp", "number", "mark"):
        env.filters[name] = getattr(fmt, name)
    env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    scripts = [_inline_script((static / s).read_text(encoding="utf-8")) for s in SCRIPTS]
    worker = _inline_script((static / "vendor/elk-worker.min.js").read_text(encoding="utf-8"))
    return env.get_template("report.html").render(
        data=data, run=data["run"], css=(static / "style.css").read_text(encoding="utf-8"),
        scripts=scripts, worker=worker)


class ReportError(FlowagentError):
    """The report could not be written."""
