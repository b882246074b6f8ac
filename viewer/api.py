"""JSON API under ``/api/``: everything the pages show, plus ``/health``.

The pages' scripts poll these for live refresh. Ids are only looked up in the store; an unknown
one is a JSON 404.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request, url_for
from werkzeug.wrappers import Response

from flowagent import __version__
from flowagent.errors import StoreDamagedError, StoreError
from flowagent.reports.export import FORMATS
from flowagent.reports.export._sequence import sequence as sequence_model
from flowagent.store import queries
from flowagent.store.api import open_store

from . import compareview, distributed, flowview, graphview, sessionview, statsview
from .data import get_store, merged_contract, run_or_404, run_report, session_or_404, \
    store_location, with_totals
from .sessionlist import list_sessions, parse_filters

bp = Blueprint("api", __name__, url_prefix="/api")
health_bp = Blueprint("health", __name__)


@health_bp.get("/health")
def health() -> Response:
    """Liveness plus whether the store can be read (200 either way: the server is up)."""
    info: dict[str, Any] = {"status": "ok", "version": __version__}
    try:
        store = open_store(store_location(), readonly=True)
        try:
            info["store"] = "ok"
            info["runs"] = len(store.runs())
        finally:
            store.close()
    except StoreDamagedError as exc:
        info["store"] = "damaged"
        info["store_error"] = str(exc)
        info["runs"] = 0
    except StoreError:
        info["store"] = "missing"
        info["runs"] = 0
    return jsonify(info)


@bp.get("/")
def index() -> Response:
    """The endpoints, for people and scripts exploring the API."""
    return jsonify({"endpoints": [
        "/health", "/api/runs", "/api/runs/<run_id>", "/api/runs/<run_id>/sessions",
        "/api/runs/<run_id>/roots", "/api/runs/<run_id>/graph",
        "/api/runs/<run_id>/graph/view", "/api/runs/<run_id>/function?name=NAME",
        "/api/runs/<run_id>/stats", "/api/runs/<run_id>/flows?entry=NAME",
        "/api/sessions/<session_id>",
        "/api/sessions/<session_id>/tree", "/api/sessions/<session_id>/timeline",
        "/api/sessions/<session_id>/sequence",
        "/api/formats",
    ]})


@bp.get("/runs")
def runs() -> Response:
    store = get_store()
    return jsonify({"runs": [with_totals(store, r) for r in store.runs()]})


@bp.get("/runs/<run_id>")
def run(run_id: str) -> Response:
    r = run_or_404(run_id)
    return jsonify({"run": r, "processes": get_store().processes(run_id)})


@bp.get("/runs/<run_id>/sessions")
def sessions(run_id: str) -> Response:
    r = run_or_404(run_id)
    listing = list_sessions(get_store(), run_id, parse_filters(request.args))
    listing["run"] = r
    for item in listing["items"]:
        item["url"] = url_for("pages.session", session_id=item["session_id"])
    return jsonify(listing)


@bp.get("/runs/<run_id>/roots")
def roots(run_id: str) -> Response:
    run_or_404(run_id)
    return jsonify({"roots": queries.session_roots(get_store(), run_id)})


@bp.get("/runs/<run_id>/graph")
def graph(run_id: str) -> Response:
    """The merged-graph export contract of the run."""
    return jsonify(merged_contract(run_or_404(run_id)))


@bp.get("/runs/<run_id>/graph/view")
def graph_view(run_id: str) -> Response:
    """The graph as the architecture page draws it (level and filters as query arguments;
    ``compare=RUN`` puts the changes since that run on it)."""
    r = run_or_404(run_id)
    contract = merged_contract(r)
    opts = graphview.options_from(request.args, contract)
    other = compareview.other_run(r)
    view = compareview.compared_view(r, other, opts) if other else \
        graphview.view_graph(contract, **opts)
    view["run"] = {k: r[k] for k in ("run_id", "status", "live", "sessions", "calls", "errors")}
    return jsonify(view)


@bp.get("/runs/<run_id>/flows")
def flows(run_id: str) -> Response:
    """Entry points of the run; with ``?entry=NAME``, that entry's flow tree and variants."""
    r = run_or_404(run_id)
    report = run_report(r)
    roots = queries.session_roots(get_store(), run_id)
    out: dict[str, Any] = {"entries": flowview.entries(report, roots)}
    entry = (request.args.get("entry") or "")[:2000]
    if entry:
        flow = flowview.flow(get_store(), run_id, entry, report)
        if flow is None:
            abort(404, description=f"no session starts at {entry!r} in run {run_id!r}")
        out["flow"] = flow
    return jsonify(out)


@bp.get("/runs/<run_id>/function")
def function(run_id: str) -> Response:
    """One function of the merged graph, with its percentiles, merged shapes and drift."""
    r = run_or_404(run_id)
    name = request.args.get("name") or ""
    details = graphview.function_details(merged_contract(r), name)
    if details is None:
        abort(404, description=f"no function {name!r} in run {run_id!r}")
    report = run_report(r)
    profile: dict[str, Any] = next((f for f in report["functions"] if f["function"] == name), {})
    details.update({k: profile.get(k) for k in ("p50_ns", "p95_ns", "p99_ns")})
    details["merged_shapes"] = (report["shapes"].get(name) or {}).get("merged")
    details["drift"] = [
        dict(d, url=url_for("pages.session", session_id=d["session"]) if d["session"] else None)
        for d in report["drift"] if d["function"] == name]
    details["sessions"] = [
        dict(s, url=url_for("pages.session", session_id=s["session_id"]))
        for s in queries.function_sessions(get_store(), run_id, name, limit=10)]
    return jsonify(details)


@bp.get("/runs/<run_id>/stats")
def stats(run_id: str) -> Response:
    """``flowagent stats --json`` of the run (:func:`flowagent.reports.stats.report`), with live
    totals while it is recorded, functions in ``?sort=`` order, ``function_count`` and
    ``has_loss``."""
    r = run_or_404(run_id)
    return jsonify(statsview.api_stats(run_report(r), r, request.args.get("sort")))


@bp.get("/sessions/<session_id>")
def session(session_id: str) -> Response:
    """The session row and its graph (the export contract's session graph, unix ns)."""
    row = session_or_404(session_id)
    return jsonify({"session": row, "graph": get_store().session_graph(session_id)})


@bp.get("/sessions/<session_id>/tree")
def tree(session_id: str) -> Response:
    graph = distributed.session_graph(session_id, session_or_404(session_id))
    rows = [r.as_dict() for r in sessionview.tree_rows(graph)]
    return jsonify({"session_id": session_id, "rows": rows})


@bp.get("/sessions/<session_id>/timeline")
def timeline(session_id: str) -> Response:
    graph = distributed.session_graph(session_id, session_or_404(session_id))
    return jsonify(sessionview.timeline(graph))


@bp.get("/sessions/<session_id>/sequence")
def sequence(session_id: str) -> Response:
    """The session's sequence diagram model (lanes, lifelines, messages)."""
    graph = distributed.session_graph(session_id, session_or_404(session_id))
    return jsonify(sequence_model(graph).as_dict())


@bp.get("/formats")
def formats() -> Response:
    return jsonify({"formats": [
        {"name": f.name, "extension": f.extension, "media_type": f.media_type,
         "inputs": sorted(f.inputs)} for f in FORMATS.values()]})
