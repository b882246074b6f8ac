/* Architecture page: the merged graph drawn with Cytoscape.js and laid out by ELK.
 *
 * The server filters and collapses (see viewer/graphview.py); this script draws, lays out
 * (layered, left to right, entry points in the first column, with module and class boxes as
 * compound nodes), opens a collapsed box in place when it is clicked, and explains a clicked
 * function. Readable at first paint: no label is ever drawn below MIN_FONT px on screen
 * (mapdraw.js hides smaller ones), and when the auto-chosen level does not fit at that size
 * the page tries the other direction, then steps one level up, before showing anything.
 * Labels are drawn on a canvas by Cytoscape, so names are never parsed as markup; the side
 * panel is built with textContent. The drawing itself (styles, elements, ELK) is mapdraw.js.
 */
"use strict";

(function () {
  const data = FA.pageData();
  const form = document.getElementById("graph-form");
  const details = document.getElementById("details");
  const counts = document.getElementById("graph-counts");
  const empty = document.getElementById("cy-empty");
  const busy = document.getElementById("cy-busy");
  let view = data.view;
  let rankDir = "LR";
  let selectedId = null; // the selected node of the current view
  let anchor = data.focus || null; // the function it stands for: kept across levels and filters
  const HINT = "Click a function to see its callers, callees, call counts, shape variants and timings.";
  let current = new URLSearchParams(new FormData(form));
  for (const o of view.opened || []) current.append("open", o);
  const MIN_FONT = FA.map.MIN_FONT;
  const overlays = { errors: document.getElementById("overlay-errors"), hot: document.getElementById("overlay-hot") };

  const cy = FA.map.create(document.getElementById("cy"));
  const elements = FA.map.elements;

  function signature(v) {
    return [v.level, v.boxes.map((b) => b.id).join("\u0001"), v.nodes.map((n) => `${n.id}\u0002${n.parent}`).join("\u0001"),
      v.edges.map((e) => `${e.source}\u0002${e.target}`).join("\u0001")].join("\u0003");
  }

  // -- layout: ELK (layered, hierarchy-aware) in a Web Worker ---------------------------------
  // Cytoscape keeps the elements; ELK only computes positions. Boxes (modules, classes) are
  // ELK compound nodes, so their members are laid out together and edges between boxes are
  // taken into account across the hierarchy (INCLUDE_CHILDREN).
  const elk = new ELK({ workerUrl: data.elk_worker });
  let layoutRun = 0;



  async function layout(fit) {
    const run = ++layoutRun;
    FA.graphReady = false;
    busy.classList.remove("hidden");
    try {
      const started = performance.now();
      const result = await elk.layout(FA.map.elkGraph(cy, rankDir));
      FA.layoutMs = performance.now() - started;
      if (run !== layoutRun) return; // a newer layout started meanwhile
      FA.map.applyPositions(cy, result);
    } catch (error) {
      console.warn("ELK layout failed, using a simple one:", error);
      // No worker (unusual browser settings): a simple layered layout beats no layout.
      cy.layout({ name: "breadthfirst", directed: true, spacingFactor: 0.9 }).run();
    }
    if (fit && fitting && FA.map.fitZoom(cy) < 1) {
      // Too big to read whole: try the other direction, then one level up (auto level only).
      // (Far too wide one way is too tall the other: skip straight to the next level.)
      if (rankDir === "LR" && FA.map.fitZoom(cy) >= 0.5) { rankDir = "TB"; layout(true); return; }
      rankDir = "LR";
      if (stepUpIfTooBig()) return; // a coarser picture is on its way
      rankDir = "TB";
    }
    fitting = false;
    busy.classList.add("hidden");
    if (fit) FA.map.readableFit(cy, rankDir);
    else if (keepAt && keepAt.id && cy.getElementById(keepAt.id).length) {
      const p = cy.getElementById(keepAt.id).renderedPosition();
      cy.panBy({ x: keepAt.at.x - p.x, y: keepAt.at.y - p.y });
      const opened = cy.getElementById(keepAt.id), box = opened.renderedBoundingBox();
      if (box.x1 < 0 || box.y1 < 0 || box.x2 > cy.width() || box.y2 > cy.height()) {
        // Show the whole opened box if it can be read whole, else its start.
        const bb = opened.boundingBox();
        const z = Math.max(1, Math.min(cy.zoom(), (cy.width() - 48) / bb.w, (cy.height() - 48) / bb.h));
        cy.zoom(z);
        cy.center(opened);
        if (bb.w * z > cy.width() - 48) cy.panBy({ x: 24 - opened.renderedBoundingBox().x1, y: 0 });
      }
      keepAt = null;
    }
    applyOverlays();
    if (anchor) select(anchor, false);
    FA.graphReady = true;
  }



  // An automatically chosen level whose picture cannot be read at MIN_FONT px steps up once
  // per layout (function → class → module → package) before anything is shown.
  function stepUpIfTooBig() {
    if (!view.auto || (view.opened || []).length || FA.map.fitZoom(cy) >= 1) return false;
    const next = view.levels[view.levels.indexOf(view.level) + 1];
    if (!next) return false;
    const p = params({ level: next });
    p.delete("open");
    FA.getJSON(`${data.api_view}?${p}`).then((v) => { v.auto = true; current = p; fitting = true; render(v, false); });
    return true;
  }

  let fitting = true; // the first picture of the page is still looking for a readable fit
  let keepAt = null; // after opening a box: keep it where the reader clicked
  function render(v, keepViewport, at) {
    view = v;
    keepAt = at || null;
    const radio = form.querySelector(`input[name=level][value="${v.level}"]`);
    if (radio) radio.checked = true;
    cy.startBatch();
    cy.elements().remove();
    cy.add(elements(v));
    cy.endBatch();
    empty.classList.toggle("hidden", v.nodes.length > 0);
    compareSummary(v);
    counts.textContent = `${FA.number(v.nodes.length)} nodes, ${FA.number(v.edges.length)} edges · ` +
      `${FA.number(v.shown_functions)} of ${FA.number(v.total_functions)} functions · ${FA.number(v.total_sessions)} sessions`;
    const names = document.getElementById("fn-names");
    FA.clear(names).append(...v.nodes.flatMap((n) => n.members).slice(0, 2000).map((m) => FA.el("option", { value: m })));
    layout(!keepViewport);
  }

  // What changed since the compared run, in words, next to the map that shows it.
  function compareSummary(v) {
    const box = document.getElementById("compare-summary");
    if (!box) return;
    FA.clear(box);
    const c = v.compare;
    if (!c) return;
    const item = (cls, text, names) => FA.el("li", { className: cls }, text,
      names && names.length ? FA.el("ul", {}, names.slice(0, 12).map((n) => FA.el("li", { className: "mono" }, n))) : null);
    const shifted = (c.result_shifts || []).map((s) => {
      const mix = (side) => (side ? ["success", "error", "partial"].map((k) => `${k[0]}${FA.number(side[k] || 0)}`).join("/") : "–");
      return `${s.function}: ${mix(s.a)} → ${mix(s.b)}`;
    });
    box.append(FA.el("p", { className: "muted" }, `${c.run_a} → ${c.run_b}`), FA.el("ul", { id: "compare-list" },
      item("cmp-new", `${FA.number(c.new_functions.length)} new functions, ${FA.number(c.new_edges)} new calls`, c.new_functions),
      item("cmp-gone", `${FA.number(c.gone_functions.length)} gone functions, ${FA.number(c.gone_edges)} gone calls`, c.gone_functions),
      item("cmp-slower", `${FA.number(c.slower.length)} slower`, c.slower.map((t) => `${t.function} ×${t.ratio}`)),
      item("cmp-errors", `${FA.number(c.new_errors.length)} new errors`, c.new_errors.map((e) => `${e.exception} in ${e.function}`)),
      shifted.length ? item("cmp-shift", `${FA.number(shifted.length)} result mixes moved`, shifted) : null));
  }

  function updateCounts(v) {
    // Same shape as before: refresh numbers in place, keep positions and the reader's viewport.
    view = v;
    for (const n of v.nodes) {
      const node = cy.getElementById(n.id);
      if (!node.length) continue;
      const fresh = elements({ boxes: [], nodes: [n], edges: [] })[0];
      node.data({ display: fresh.data.display, w: fresh.data.w });
      node.classes(fresh.classes);
    }
    for (const e of v.edges) {
      const fresh = elements({ boxes: [], nodes: [], edges: [e] })[0];
      const edge = cy.getElementById(fresh.data.id);
      if (edge.length) { edge.data({ width: fresh.data.width, tag: fresh.data.tag }); edge.classes(fresh.classes); }
    }
    if (selectedId && cy.getElementById(selectedId).length) showDetails(selectedId);
  }

  const nodeOf = (id) => view.nodes.find((n) => n.id === id) || null;
  const groupContaining = (name) => view.nodes.find((n) => n.id === name || n.members.includes(name)) || null;

  function highlight(node) {
    cy.elements().removeClass("faded hl sel").addClass("faded");
    cy.edges().removeClass("labelled");
    const near = node.closedNeighborhood();
    near.removeClass("faded");
    near.ancestors().removeClass("faded");
    near.edges().addClass("hl labelled");
    node.addClass("sel");
    FA.map.placeTags(cy, near.edges());
  }

  function clearHighlight() {
    cy.elements().removeClass("faded hl sel path");
    cy.edges().removeClass("labelled");
  }


  function endPaths() {
    cy.elements().removeClass("faded path");
    if (selectedId && cy.getElementById(selectedId).length) highlight(cy.getElementById(selectedId));
  }

  function applyOverlays() {
    cy.elements().removeClass("ov-err ov-hot ov-dim");
    const errs = overlays.errors && overlays.errors.checked, hot = overlays.hot && overlays.hot.checked;
    if (!errs && !hot) return;
    cy.edges().addClass("ov-dim");
    if (hot) {
      // Hot: the edges carrying the most calls (top fifth by count) and the functions with
      // the most self time (top fifth), the path a profiler would send you down.
      const freqs = cy.edges().map((e) => e.data("frequency")).sort((a, b) => b - a);
      const edgeCut = freqs[Math.floor(freqs.length / 5)] || 0;
      cy.edges().filter((e) => e.data("frequency") >= edgeCut && e.data("frequency") > 0).removeClass("ov-dim").addClass("ov-hot");
      const selfs = view.nodes.map((n) => n.self_ns).sort((a, b) => b - a);
      const nodeCut = selfs[Math.floor(selfs.length / 5)] || 0;
      for (const n of view.nodes) if (n.self_ns >= nodeCut && n.self_ns > 0) cy.getElementById(n.id).addClass("ov-hot");
    }
    if (errs) {
      cy.edges().filter((e) => e.data("errors") > 0).removeClass("ov-dim ov-hot").addClass("ov-err");
      for (const n of view.nodes) if (n.errors || n.partials) cy.getElementById(n.id).removeClass("ov-hot").addClass("ov-err");
    }
  }

  // -- opening and closing boxes in place ------------------------------------------------------
  async function setOpened(group, open) {
    const p = new URLSearchParams(current);
    const opened = new Set(p.getAll("open"));
    if (open) opened.add(group); else opened.delete(group);
    p.delete("open");
    for (const o of opened) p.append("open", o);
    if (!p.get("level")) p.set("level", view.level); // the reader chose: no more stepping up
    const v = await FA.getJSON(`${data.api_view}?${p}`);
    current = p;
    history.replaceState(null, "", `${data.page_url}?${p}`);
    const before = cy.getElementById(open ? group : boxIdOf(group));
    const at = before.length ? before.renderedPosition() : null;
    render(v, true, at ? { id: open ? boxIdOf(group, v) : group, at } : null);
  }

  const boxIdOf = (group, v) => {
    const boxes = (v || view).boxes;
    const box = boxes.find((b) => b.id.replace(/'+$/, "").split(":").slice(1).join(":") === group && b.opened);
    return box ? box.id : null;
  };

  function select(name, animate) {
    const group = groupContaining(name);
    if (!group) {
      selectedId = null;
      clearHighlight();
      FA.clear(details).append(FA.el("p", { className: "muted" }, HINT));
      return false;
    }
    anchor = group.members.includes(name) ? name : group.members[0];
    const node = cy.getElementById(group.id);
    selectedId = group.id;
    highlight(node);
    // Bring the node and its callers and callees into view, readable but not blown up.
    const near = node.closedNeighborhood();
    const bb = near.boundingBox();
    const fitZoom = Math.min(cy.width() / (bb.w + 120), cy.height() / (bb.h + 120));
    const zoom = Math.min(Math.max(fitZoom, 1), 1.4); // never below readable labels
    cy.animate({ zoom, center: { eles: fitZoom < 1 ? node : near } }, { duration: animate ? 250 : 0 });
    showDetails(group.id, name !== group.id ? name : null);
    return true;
  }

  // -- side panel ----------------------------------------------------------------------------
  const dlRows = (pairs) => FA.el("dl", {}, pairs.flatMap(([k, v]) => [FA.el("dt", {}, k), FA.el("dd", {}, v)]));
  const nameButton = (name) => (groupContaining(name)
    ? FA.el("button", { className: "link-btn", type: "button", onclick: () => select(name, true) }, name)
    : FA.el("span", { className: "mono", title: "not shown with the current filters" }, name));
  const branchText = (branches) => Object.entries(branches).filter(([b]) => b !== "success")
    .map(([b, c]) => `${b} ${FA.number(c)}`).join(", ");
  const sideList = (items) => (items.length
    ? FA.el("ul", {}, items.slice(0, 100).map((d) => FA.el("li", {},
      FA.el("span", { className: "count" }, `${FA.number(d.frequency)}×`), nameButton(d.function_name),
      branchText(d.branches) ? FA.el("span", { className: "exc" }, `  ${branchText(d.branches)}`) : null)))
    : FA.el("p", { className: "muted" }, "none"));
  const shapeList = (items, fmt) => (items.length
    ? FA.el("ul", {}, items.slice(0, 30).map((s) => FA.el("li", {},
      FA.el("span", { className: "count" }, `${FA.number(s.count)}×`), FA.el("span", { className: "mono" }, fmt(s.shape)))))
    : FA.el("p", { className: "muted" }, "none recorded"));

  // Merged input/output shapes: optional fields are already marked "name?:" by the server.
  function mergedShapes(m) {
    if (!m || (!Object.keys(m.inputs || {}).length && !m.output)) return FA.el("p", { className: "muted" }, "none recorded");
    const rows = Object.entries(m.inputs || {}).map(([p, shape]) => [p, FA.el("span", { className: "shape" }, String(shape))]);
    if (m.output) rows.push(["→ returns", FA.el("span", { className: "shape" }, String(m.output))]);
    return FA.el("dl", { id: "details-merged" }, rows.flatMap(([k, v]) => [FA.el("dt", {}, k), FA.el("dd", {}, v)]));
  }

  function driftList(items) {
    if (!items.length) return FA.el("p", { className: "muted" }, "shapes never changed");
    return FA.el("ul", { id: "details-drift" }, items.slice(0, 50).map((d) => FA.el("li", { className: "drift-item" },
      FA.el("span", { className: `badge drift-${d.kind}` }, d.kind), " ",
      FA.el("span", { className: "muted" }, d.io === "in" ? "input " : "output "),
      FA.el("span", { className: "shape" }, d.path || "(whole value)"), ": ",
      FA.el("span", { className: "shape" }, `${d.before ?? "–"} → ${d.after ?? "–"}`), " ",
      d.url ? FA.el("a", { href: d.url }, "first session") : null)));
  }

  function params(extra) {
    const p = new URLSearchParams(current);
    for (const [k, v] of Object.entries(extra)) { if (v === null) p.delete(k); else p.set(k, v); }
    return p;
  }

  async function showDetails(id, member) {
    const group = nodeOf(id);
    if (!group) return;
    if (view.level === "function") {
      let f;
      try { f = await FA.getJSON(`${data.api_function}?${new URLSearchParams({ name: id })}`); } catch (e) { return; }
      if (selectedId !== id) return;
      FA.clear(details).append(
        FA.el("h3", { id: "details-name" }, f.function_name),
        FA.el("p", { className: "muted" }, `${f.kind || "function"} in ${f.module}`),
        f.roots ? FA.el("div", { className: "actions" }, FA.el("a", { className: "btn", id: "details-flows",
          href: `${data.flows_url}?${new URLSearchParams({ entry: f.function_name })}` }, `Flows of this entry (${FA.number(f.roots)} sessions) →`)) : null,
        dlRows([["calls", FA.number(f.occurrences)], ["errors", FA.number(f.errors)], ["handled below", FA.number(f.partials)],
          ["session root", FA.number(f.roots)], ["total time", FA.duration(f.total_ns)], ["self time", FA.duration(f.self_ns)],
          ["average", FA.duration(f.avg_ns)], ["p50 / p95 / p99", `${FA.duration(f.p50_ns)} / ${FA.duration(f.p95_ns)} / ${FA.duration(f.p99_ns)}`],
          ["min / max", `${FA.duration(f.min_ns)} / ${FA.duration(f.max_ns)}`]]),
        FA.el("h4", {}, `Callers (${f.callers.length})`), sideList(f.callers),
        FA.el("h4", {}, `Callees (${f.callees.length})`), sideList(f.callees),
        FA.el("h4", {}, `Input shapes (${f.input_shapes.length})`), shapeList(f.input_shapes, FA.inputShape),
        FA.el("h4", {}, `Output shapes (${f.output_shapes.length})`), shapeList(f.output_shapes, (s) => String(s)),
        FA.el("h4", {}, "Merged shapes"), mergedShapes(f.merged_shapes),
        FA.el("h4", {}, `Shape drift (${f.drift.length})`), driftList(f.drift),
        FA.el("h4", {}, "Recent sessions calling it"),
        f.sessions.length ? FA.el("ul", {}, f.sessions.map((s) => FA.el("li", {}, FA.resultBadge(s.result), " ",
          FA.el("a", { href: s.url }, s.session_id), " ", FA.el("span", { className: "muted" }, s.name || "")))) :
          FA.el("p", { className: "muted" }, "no kept session tree"));
      return;
    }
    const callers = view.edges.filter((e) => e.target === id).map((e) => ({ function_name: e.source, frequency: e.frequency, branches: e.branches }));
    const callees = view.edges.filter((e) => e.source === id).map((e) => ({ function_name: e.target, frequency: e.frequency, branches: e.branches }));
    const drill = group.level === "package" ? "module" : "function";
    FA.clear(details).append(
      FA.el("h3", { id: "details-name" }, group.id),
      FA.el("p", { className: "muted" }, `${group.level} · ${group.members.length} function${group.members.length === 1 ? "" : "s"}`),
      dlRows([["calls", FA.number(group.calls)], ["errors", FA.number(group.errors)], ["handled below", FA.number(group.partials)],
        ["internal calls", FA.number(group.internal_calls)], ["self time", FA.duration(group.self_ns)],
        ["total time", group.total_ns === null ? "–" : FA.duration(group.total_ns)]]),
      FA.el("div", { className: "actions" },
        FA.el("a", { className: "btn", href: `${data.page_url}?${params({ level: drill, module: group.level === "class" ? group.module : group.id.split(":")[0], focus: member })}` },
          `Open this ${group.level} (${drill} level) →`)),
      FA.el("h4", {}, `Called from (${callers.length})`), sideList(callers),
      FA.el("h4", {}, `Calls into (${callees.length})`), sideList(callees),
      FA.el("h4", {}, "Functions"),
      FA.el("ul", {}, group.members.slice(0, 300).map((m) => FA.el("li", {},
        FA.el("a", { href: `${data.page_url}?${params({ level: "function", focus: m })}` }, m)))));
  }

  // -- interaction ---------------------------------------------------------------------------
  cy.on("tap", "node", (event) => {
    const node = event.target;
    if (node.hasClass("box")) {
      // An open box closes again when its frame is clicked.
      if (node.data("opened")) setOpened(node.id().replace(/'+$/, "").split(":").slice(1).join(":"), false);
      return;
    }
    const group = nodeOf(node.id());
    if (group && group.level !== "function") { selectedId = null; setOpened(group.id, true); return; }
    select(node.id(), true);
  });
  cy.on("mouseover", "node[w]", (event) => FA.map.showPaths(cy, event.target));
  cy.on("mouseout", "node[w]", () => endPaths());
  for (const box of Object.values(overlays)) if (box) box.addEventListener("change", applyOverlays);
  cy.on("tap", (event) => {
    if (event.target === cy) {
      selectedId = null; anchor = null; clearHighlight();
      FA.clear(details).append(FA.el("p", { className: "muted" }, HINT));
    }
  });
  cy.on("mouseover", "edge", (event) => {
    if (event.target.hasClass("labelled")) return;
    event.target.addClass("labelled");
    FA.map.placeTags(cy, cy.edges(".labelled"));
  });
  cy.on("mouseout", "edge", (event) => { if (!event.target.hasClass("hl")) event.target.removeClass("labelled"); });

  async function applyForm() {
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v !== "" && k !== "focus") p.append(k, v);
    // Opened boxes stay open under new filters, not under a new level.
    if (p.get("level") === view.level) for (const o of view.opened || []) p.append("open", o);
    current = p;
    const v = await FA.getJSON(`${data.api_view}?${p}`);
    const search = p.toString();
    history.replaceState(null, "", `${data.page_url}${search ? `?${search}` : ""}`);
    render(v, false);
  }
  form.addEventListener("change", (event) => { if (event.target.id !== "find" && !event.target.id.startsWith("overlay-")) applyForm(); });
  form.addEventListener("submit", (event) => { event.preventDefault(); applyForm(); });
  document.getElementById("find").addEventListener("change", (event) => {
    if (!select(event.target.value.trim(), true)) event.target.setCustomValidity("not in this view");
    else event.target.setCustomValidity("");
  });
  document.getElementById("fit").addEventListener("click", () => cy.fit(undefined, 24));
  FA.selectNode = (name) => select(name, false);
  FA.openBox = (group) => setOpened(group, true);
  FA.MIN_FONT = MIN_FONT;
  FA.direction = () => rankDir;
  document.getElementById("relayout").addEventListener("click", () => layout(true));
  document.getElementById("direction").addEventListener("click", () => { rankDir = rankDir === "LR" ? "TB" : "LR"; layout(true); });

  render(view, false);
  window.FA.cy = cy; // for tests and curious users

  if (data.live) {
    FA.poll(async () => {
      const v = await FA.getJSON(`${data.api_view}?${current}`);
      if (signature(v) !== signature(view)) render(v, true);
      else updateCounts(v);
      FA.setLive(v.run.live);
      return v.run.live;
    }, data.poll_ms || 2000);
  }
})();
