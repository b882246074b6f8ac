/* Stats page: while the run is live, refresh its counts from /api/runs/<id>/stats (the same
 * report the page was rendered from): run facts, session durations, loss, flow variant counts
 * and the profile table. Sections that need new rows the page has no place for yet (a first
 * error cluster, a first drift) appear on the next full load. */
"use strict";

(function () {
  const data = FA.pageData();
  if (!data.live) return;
  const graphLink = (name) =>
    `${data.graph_url}?${new URLSearchParams({ level: "function", focus: name })}`;
  const num = (n, warn) => FA.el("td", { className: warn ? "num warn" : "num" }, FA.number(n));
  const dur = (ns) => FA.el("td", { className: "num" }, FA.duration(ns));

  function fill(selector, values, format) {
    for (const cell of document.querySelectorAll(`${selector} [data-k]`)) {
      if (cell.dataset.k in values) cell.textContent = format(cell.dataset.k, values[cell.dataset.k]);
    }
  }

  function update(stats) {
    const facts = Object.assign({ function_count: stats.function_count, variant_count: stats.variants.length }, stats.run);
    fill("#run-facts", facts, (k, v) => FA.number(v));
    fill("#session-durations", stats.session_durations,
      (k, v) => (k === "count" ? `${FA.number(v)} sessions` : FA.duration(v)));
    fill("#loss-tiles", stats.loss, (k, v) => FA.number(v));
    for (const cell of document.querySelectorAll("#loss-tiles dd[data-k]")) {
      if (cell.dataset.k !== "produced_events") cell.parentElement.classList.toggle("lost", stats.loss[cell.dataset.k] > 0);
    }
    const byId = new Map(stats.variants.map((v) => [v.variant, v]));
    for (const row of document.querySelectorAll("#variants-table tr[data-variant]")) {
      const v = byId.get(row.dataset.variant);
      if (!v) continue;
      fill(`#variants-table tr[data-variant="${CSS.escape(v.variant)}"]`, v, (k, n) => FA.number(n));
      row.querySelector("rect:not(.bg)").setAttribute("width", (100 * v.share).toFixed(2));
      row.querySelector(".pct").textContent = `${(100 * v.share).toFixed(1)} %`;
    }
    const fbody = document.querySelector("#functions-table tbody");
    if (fbody) {
      FA.clear(fbody).append(...stats.functions.slice(0, 50).map((f) => FA.el("tr", {},
        FA.el("td", { className: "fn" }, FA.el("a", { href: graphLink(f.function) }, f.function)),
        num(f.calls), num(f.errors, f.errors > 0), dur(f.total_ns), dur(f.self_ns), dur(f.mean_ns),
        dur(f.p50_ns), dur(f.p95_ns), dur(f.p99_ns), dur(f.max_ns))));
    }
  }

  FA.poll(async () => {
    const stats = await FA.getJSON(data.api_stats);
    update(stats);
    FA.setLive(stats.run.live);
    return stats.run.live;
  }, data.poll_ms || 2000);
})();
