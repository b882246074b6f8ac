/* Stats page: while the run is live, rebuild the tables from /api/runs/<id>/stats. */
"use strict";

(function () {
  const data = FA.pageData();
  if (!data.live) return;
  const LOSS = ["dropped_events", "dropped_batches", "corrupt_frames", "duplicate_frames", "agent_errors"];
  const graphLink = (name, extra) =>
    `${data.graph_url}?${new URLSearchParams(Object.assign({ level: "function", focus: name }, extra || {}))}`;
  const num = (n, warn) => FA.el("td", { className: warn ? "num warn" : "num" }, FA.number(n));
  const dur = (ns) => FA.el("td", { className: "num" }, FA.duration(ns));

  function update(stats) {
    for (const cell of document.querySelectorAll("#run-facts [data-k]")) {
      const value = cell.dataset.k in stats.run ? stats.run[cell.dataset.k] : stats[cell.dataset.k];
      cell.textContent = FA.number(value);
    }
    const fbody = document.querySelector("#functions-table tbody");
    if (fbody) {
      FA.clear(fbody).append(...stats.functions.map((f) => FA.el("tr", {},
        FA.el("td", { className: "fn" }, FA.el("a", { href: graphLink(f.function_name) }, f.function_name)),
        num(f.calls), num(f.errors, f.errors > 0), dur(f.total_ns), dur(f.self_ns), dur(f.avg_ns),
        dur(f.min_ns), dur(f.max_ns))));
    }
    const hot = document.getElementById("hotspots-table");
    if (hot && stats.hotspots.length) {
      const table = FA.el("table", { className: "grid", id: "hotspots-table" },
        FA.el("thead", {}, FA.el("tr", {}, FA.el("th", {}, "Function"), FA.el("th", { className: "num" }, "Errors"),
          FA.el("th", { className: "num" }, "Error rate"), FA.el("th", {}, "Exception types"))),
        FA.el("tbody", {}, stats.hotspots.map((f) => FA.el("tr", {},
          FA.el("td", { className: "fn" }, FA.el("a", { href: graphLink(f.function_name, { errors: "1" }) }, f.function_name)),
          num(f.errors, true),
          FA.el("td", { className: "num" }, `${(100 * f.error_rate).toFixed(1)} %`),
          FA.el("td", {}, f.exception_types.length ? f.exception_types.flatMap((e, i) => [
            i ? ", " : null, FA.el("span", { className: "exc" }, e.exception_type), " ",
            FA.el("span", { className: "muted" }, `×${e.count}`)]) : FA.el("span", { className: "muted" }, "–"))))));
      hot.replaceWith(table);
    }
    const paths = document.getElementById("paths-list");
    if (paths) {
      FA.clear(paths).append(...(stats.frequent_paths.length ? stats.frequent_paths.map((p) => FA.el("li", {},
        FA.el("span", { className: "count" }, `${FA.number(p.count)}×`),
        p.path.flatMap((fn, i) => [i ? " → " : null, FA.el("span", { className: "fn" }, fn)]))) :
        [FA.el("li", { className: "muted" }, "No paths recorded yet.")]));
    }
    const total = document.querySelector("#loss-table tr.total");
    if (total) {
      const cells = total.querySelectorAll("td");
      cells[1].textContent = FA.number(stats.run.produced_events);
      LOSS.forEach((k, i) => { cells[3 + i].textContent = FA.number(stats.data_loss[k]); cells[3 + i].classList.toggle("warn", stats.data_loss[k] > 0); });
    }
  }

  FA.poll(async () => {
    const stats = await FA.getJSON(data.api_stats);
    update(stats);
    FA.setLive(stats.run.live);
    return stats.run.live;
  }, data.poll_ms || 2000);
})();
