/* Runs and sessions page: live refresh of the runs' counts and of the sessions list. */
"use strict";

(function () {
  const data = FA.pageData();

  function updateRuns(runs) {
    const body = document.querySelector("#runs-table tbody");
    if (!body) return false;
    let anyLive = false;
    for (const run of runs) {
      anyLive = anyLive || run.live;
      let row = body.querySelector(`tr[data-run="${CSS.escape(run.run_id)}"]`);
      if (!row) {
        row = FA.el("tr", { dataset: { run: run.run_id } },
          FA.el("td", {}, FA.el("a", { href: `/?run=${encodeURIComponent(run.run_id)}` }, FA.el("code", {}, run.run_id))),
          FA.el("td", {}, FA.timestamp(run.started_ns)),
          FA.el("td", { dataset: { k: "status" } }),
          FA.el("td", { className: "num", dataset: { k: "sessions" } }),
          FA.el("td", { className: "num", dataset: { k: "calls" } }),
          FA.el("td", { className: "num", dataset: { k: "errors" } }),
          FA.el("td", { className: "num" }, FA.number((run.dropped_events || 0) + (run.corrupt_frames || 0) + (run.agent_errors || 0))),
          FA.el("td", { className: "cmd" }, (() => { try { return JSON.parse(run.argv || "[]").join(" "); } catch (e) { return ""; } })()));
        body.insertBefore(row, body.firstChild);
      }
      for (const key of ["sessions", "calls", "errors"]) {
        const cell = row.querySelector(`[data-k="${key}"]`);
        if (cell) cell.textContent = FA.number(run[key]);
      }
      const status = row.querySelector('[data-k="status"]');
      if (status) {
        FA.clear(status);
        if (run.live) status.appendChild(FA.el("span", { className: "badge live" }, "● running"));
        else status.textContent = `${run.status || "–"}${run.exit_code === null || run.exit_code === undefined ? "" : ` (${run.exit_code})`}`;
      }
    }
    return anyLive;
  }

  function updateSessions(listing) {
    const body = document.getElementById("sessions-body");
    if (!body) return;
    FA.clear(body);
    for (const s of listing.items) {
      body.appendChild(FA.el("tr", {},
        FA.el("td", {}, FA.el("a", { href: s.url }, FA.el("code", {}, s.session_id))),
        FA.el("td", { className: "fn" }, s.name || "?"),
        FA.el("td", {}, FA.resultBadge(s.result)),
        FA.el("td", {}, FA.timestamp(s.started_ns)),
        FA.el("td", { className: "num" }, FA.duration(s.duration_ns)),
        FA.el("td", { className: "num" }, FA.number(s.calls)),
        FA.el("td", { className: "num" }, FA.number(s.errors)),
        FA.el("td", {}, s.thread || "")));
    }
    const info = document.getElementById("pager-info");
    if (info) {
      let text = listing.items.length
        ? `Showing ${FA.number(listing.first)}–${FA.number(listing.last)}` +
          (listing.matched === null ? "" : ` of ${FA.number(listing.matched)}${listing.matched_capped ? "+" : ""} matching`)
        : "No session matches these filters";
      text += ` · ${FA.number(listing.total)} sessions in the run`;
      if (listing.run && listing.run.live) text += `, ${FA.number(listing.run.open_sessions)} open`;
      info.textContent = text;
    }
    const next = document.querySelector('#pager [rel="next"]');
    if (listing.has_more && !next) {
      const params = new URLSearchParams(data.query);
      params.set("page", String(listing.page + 1));
      document.getElementById("pager").appendChild(
        FA.el("a", { className: "btn", rel: "next", href: `/?${params.toString()}` }, "next ›"));
    }
  }

  let wasLive = data.live;
  FA.poll(async () => {
    const runs = await FA.getJSON(data.api_runs);
    if (!data.run_id) {
      // An empty store: show the first run as soon as it exists.
      if (runs.runs.length) window.location.reload();
      return true;
    }
    updateRuns(runs.runs);
    const current = runs.runs.find((r) => r.run_id === data.run_id);
    const live = current ? current.live : false;
    FA.setLive(live);
    if (data.api_sessions && (live || wasLive)) {
      updateSessions(await FA.getJSON(`${data.api_sessions}?${data.query}`));
    }
    wasLive = live;
    return true; // keep watching: a new run may start at any time

  }, data.poll_ms || 2000);
})();
