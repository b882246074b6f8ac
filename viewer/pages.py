"""The HTML pages: runs and sessions, one session, the architecture graph, statistics.

Pages are rendered on the server (Jinja autoescapes every name and shape); each page's script
only adds interaction and live refresh, reading its initial data from a JSON block that
Flask's ``tojson`` escapes for embedding.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from flowagent.reports.export import FORMATS
from flowagent.reports.export._sequence import sequence as sequence_model
from flowagent.store import queries

from . import compareview, distributed, flowview, graphview, sessionview, statsview
from .data import get_store, latest_run_id, merged_contract, run_or_404, run_report, \
    session_or_404, with_totals
from .sessionlist import ORDERS, PAGE_SIZES, list_sessions, parse_filters

bp = Blueprint("pages", __name__)
RUNS_SHOWN = 20


def _formats(kind: str) -> list[dict[str, str]]:
    return [{"name": f.name, "extension": f.extension} for f in FORMATS.values()
            if kind in f.inputs]


@bp.get("/")
def index() -> str:
    store = get_store()
    runs = store.runs()
    run_id = request.args.get("run") or (runs[0]["run_id"] if runs else None)
    run = run_or_404(run_id) if run_id else None
    shown = [run if run and r["run_id"] == run["run_id"] else with_totals(store, r)
             for r in runs[:RUNS_SHOWN]]
    listing = roots = pager = None
    if run is not None:
        listing = list_sessions(store, run["run_id"], parse_filters(request.args))
        roots = queries.session_roots(store, run["run_id"])
        pager = _pager(run["run_id"], listing)
    return render_template("index.html", runs=shown, all_runs=runs, run=run, listing=listing,
                           roots=roots, pager=pager, orders=ORDERS, page_sizes=PAGE_SIZES,
                           results=("success", "error", "partial", "incomplete"),
                           run_formats=_formats("merged") + _formats("sessions"))


def _pager(run_id: str, listing: dict) -> dict[str, str | None]:
    """Links to other pages of the same listing, built from the parsed filters only."""
    f = listing["filters"]
    keep = {k: f[k] for k in ("result", "root", "q", "order") if f[k]}
    if f["min_ms"]:
        keep["min_ms"] = f["min_ms"]
    keep["per_page"] = f["per_page"]

    def link(page: int) -> str:
        return url_for("pages.index", run=run_id, page=page, **keep)

    page, pages = listing["page"], listing["pages"]
    return {
        "first": link(1) if page > 1 else None,
        "prev": link(page - 1) if page > 1 else None,
        "next": link(page + 1) if listing["has_more"] else None,
        "last": link(pages) if pages and page < pages and not listing["matched_capped"] else None,
    }


@bp.get("/runs/<run_id>")
def run_page(run_id: str) -> Response:
    run = run_or_404(run_id)
    return redirect(url_for("pages.index", run=run["run_id"]))


@bp.get("/sessions/<session_id>")
def session(session_id: str) -> str:
    row = session_or_404(session_id)
    graph = distributed.session_graph(session_id, row)
    run = run_or_404(row["run_id"])
    rows = sessionview.tree_rows(graph)
    threads = sorted({r.thread_name for r in rows})
    return render_template("session.html", session=row, run=run, rows=rows, threads=threads,
                           runs=distributed.selected_runs(row["run_id"])[1:],
                           related=distributed.related_runs(session_id, row["run_id"]),
                           errors=sum(1 for r in rows if r.result == "error"),
                           child_limit=sessionview.CHILD_LIMIT,
                           formats=_formats("session"))


GRAPH_ARGS = ("level", "errors", "module", "min_freq", "focus", "compare")


def _passed_on(keys: tuple[str, ...]) -> dict[str, Any]:
    """Known query arguments only: anything else could collide with url_for's own."""
    return {k: request.args[k] for k in keys if k in request.args}


@bp.get("/graph")
def graph_latest() -> Response:
    run_id = latest_run_id()
    if run_id is None:
        return redirect(url_for("pages.index"))
    return redirect(url_for("pages.graph", run_id=run_id, **_passed_on(GRAPH_ARGS)))


@bp.get("/runs/<run_id>/graph")
def graph(run_id: str) -> str:
    run = run_or_404(run_id)
    contract = merged_contract(run)
    opts = graphview.options_from(request.args, contract)
    other = compareview.other_run(run)
    view = compareview.compared_view(run, other, opts) if other else \
        graphview.view_graph(contract, **opts)
    return render_template("graph.html", run=run, view=view, opts=opts,
                           runs=[r for r in get_store().runs() if r["run_id"] != run["run_id"]],
                           compare=other["run_id"] if other else "",
                           modules=graphview.modules(contract),
                           focus=(request.args.get("focus") or "")[:2000],
                           formats=_formats("merged"))


@bp.get("/stats")
def stats_latest() -> Response:
    run_id = latest_run_id()
    if run_id is None:
        return redirect(url_for("pages.index"))
    return redirect(url_for("pages.stats", run_id=run_id, **_passed_on(("sort",))))


@bp.get("/runs/<run_id>/stats")
def stats(run_id: str) -> str:
    run = run_or_404(run_id)
    data = statsview.page_stats(run_report(run), run, request.args.get("sort"))
    return render_template("stats.html", run=run, stats=data, sorts=list(statsview.SORTS),
                           spark_w=statsview.SPARK_W, spark_h=statsview.SPARK_H)


@bp.get("/runs/<run_id>/flows")
def flows(run_id: str) -> str:
    """One entry point's flows as a tree (the most frequent entry unless ``?entry=``)."""
    run = run_or_404(run_id)
    report = run_report(run)
    entries = flowview.entries(report, queries.session_roots(get_store(), run_id))
    wanted = (request.args.get("entry") or "")[:2000] or (entries[0]["entry"] if entries else "")
    flow = flowview.flow(get_store(), run["run_id"], wanted, report) if wanted else None
    return render_template("flows.html", run=run, entries=entries, entry=wanted, flow=flow)


@bp.get("/sessions/<session_id>/sequence")
def sequence(session_id: str) -> str:
    """The session as a sequence diagram: lifelines per class or module, lanes per thread."""
    row = session_or_404(session_id)
    graph = distributed.session_graph(session_id, row)
    run = run_or_404(row["run_id"])
    model = sequence_model(graph).as_dict()
    return render_template("sequence.html", session=row, run=run, model=model,
                           runs=distributed.selected_runs(row["run_id"])[1:])
