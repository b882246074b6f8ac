/* Architecture page: the merged graph drawn with Cytoscape.js and laid out by ELK.
 *
 * The server filters and collapses (see viewer/graphview.py); this script draws, lays out
 * (layered, left to right, entry points in the first column, with module and class boxes as
 * compound nodes), opens a collapsed box in place when it is clicked, and explains a clicked
 * function. Readable at first paint: no label is ever drawn below MIN_FONT px on screen
 * (Cytoscape hides smaller ones), and when the auto-chosen level does not fit at that size the
 * page steps one level up before showing anything. Labels are drawn on a canvas by Cytoscape,
 * so names are never parsed as markup; the side panel is built with textContent.
 */
"use strict";

(function () {
  const data = FA.pageData();
  const form = document.getElementById("graph-form");
  const details = document.getElementById("details");
  const counts = document.getElementById("graph-counts");
  const empty = document.getElementById("cy-empty");
  const busy = document.getElementById("cy-busy");
  const MONO = 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace';
  let view = data.view;
  let rankDir = "LR";
  let selectedId = null; // the selected node of the current view
  let anchor = data.focus || null; // the function it stands for: kept across levels and filters
  const HINT = "Click a function to see its callers, callees, call counts, shape variants and timings.";
  let current = new URLSearchParams(new FormData(form));
  for (const o of view.opened || []) current.append("open", o);
  const MIN_FONT = 11; // px on screen: below this a label is not drawn at all
  const MAX_START_ZOOM = 1.6;
  const overlays = { errors: document.getElementById("overlay-errors"), hot: document.getElementById("overlay-hot") };

  const measure = (() => {
    const ctx = document.createElement("canvas").getContext("2d");
    ctx.font = `11px ${MONO}`;
    return (text) => ctx.measureText(text).width;
  })();
  const shorten = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

  const cy = cytoscape({
    container: document.getElementById("cy"),
    minZoom: 0.05, maxZoom: 4, boxSelectionEnabled: false, autoungrabify: true,
    style: [
      { selector: "node[w]", style: {
        shape: "round-rectangle", "background-color": "#ffffff", "border-width": 1, "border-color": "#9aa5b1",
        label: "data(display)", "font-family": MONO, "font-size": 11, color: "#1f2933",
        "text-valign": "center", "text-halign": "center", "text-wrap": "wrap", "line-height": 1.3,
        "min-zoomed-font-size": MIN_FONT, width: "data(w)", height: "data(h)" } },
      { selector: "node.group", style: { "background-color": "#f3f6f9", "border-style": "double", "border-width": 3 } },

      { selector: "node.root", style: { "border-color": "#2b6cb0", "border-width": 2 } },
      { selector: "node.partial", style: { "border-color": "#d69e2e", "border-width": 2, "background-color": "#fffbeb" } },
      { selector: "node.err", style: { "border-color": "#c53030", "border-width": 2, "background-color": "#fff5f5" } },
      { selector: "node.entry", style: { "background-color": "#dbeafe" } },
      { selector: "node.box", style: {
        "background-color": "#e9eef4", "background-opacity": 0.55, "border-color": "#b8c2cc", "border-width": 1,
        label: "data(label)", "text-valign": "top", "text-halign": "center", "font-size": 12, "font-weight": "bold",
        color: "#3e4c59", padding: 12, "text-margin-y": -2, "min-zoomed-font-size": MIN_FONT } },
      { selector: "node.box-class", style: { "background-color": "#f8fafc", "background-opacity": 0.9, "border-style": "dashed", "font-size": 11 } },
      { selector: "node.box-package", style: { "background-color": "#dde5ee" } },
      { selector: "edge", style: {
        width: "data(width)", "line-color": "#a3afbd", "target-arrow-color": "#a3afbd", "target-arrow-shape": "triangle",
        "arrow-scale": 0.7, "curve-style": "bezier", opacity: 0.8 } },
      { selector: "edge.routed", style: { "curve-style": "segments", "edge-distances": "node-position", "segment-radius": 6 } },
      { selector: "edge.partial", style: { "line-color": "#d69e2e", "target-arrow-color": "#d69e2e", "line-style": "dashed" } },
      { selector: "edge.err", style: { "line-color": "#c53030", "target-arrow-color": "#c53030", "line-style": "solid" } },
      { selector: "edge.labelled", style: {
        label: "data(tag)", "font-size": 11, "min-zoomed-font-size": MIN_FONT, "font-family": MONO, color: "#1f2933", "text-background-color": "#ffffff",
        "text-background-opacity": 0.9, "text-background-padding": 2 } },
      // Cytoscape's own min-zoomed-font-size rounds the zoom up to a power of two, so the
      // page hides labels itself below MIN_FONT px (see labelsByZoom).
      { selector: ".nolabel", style: { "text-opacity": 0, "text-background-opacity": 0 } },
      { selector: ".faded", style: { opacity: 0.12 } },
      { selector: "node.box.faded", style: { opacity: 0.35 } },
      { selector: "node.sel", style: { "border-color": "#2b6cb0", "border-width": 3, "background-color": "#e6f0fa" } },
      { selector: "edge.hl", style: { opacity: 1, "z-index": 10 } },
      { selector: "edge.path", style: { opacity: 1, "line-color": "#2b6cb0", "target-arrow-color": "#2b6cb0", "z-index": 9 } },
      { selector: "node.path", style: { "border-color": "#2b6cb0", "border-width": 2 } },
      // overlays: error paths in red, hot paths (most calls) in orange, both over a faded map
      { selector: "edge.ov-dim", style: { opacity: 0.25 } },
      { selector: "edge.ov-err", style: { opacity: 1, "line-color": "#c53030", "target-arrow-color": "#c53030", "line-style": "solid", "z-index": 8 } },
      { selector: "edge.ov-hot", style: { opacity: 1, "line-color": "#dd6b20", "target-arrow-color": "#dd6b20", "z-index": 7 } },
      { selector: "node.ov-hot", style: { "background-color": "#feebc8" } },
      { selector: "node.ov-err", style: { "background-color": "#fed7d7" } },
      // comparison with another run (viewer/compareview.py): new, gone, slower, new errors
      { selector: "node.cmp-new", style: { "border-color": "#2f855a", "border-width": 3, "background-color": "#f0fff4" } },
      { selector: "node.cmp-gone", style: { "border-style": "dashed", "border-color": "#718096", color: "#718096", "background-color": "#f7fafc" } },
      { selector: "node.cmp-slower", style: { "border-color": "#b7791f", "border-width": 3, "background-color": "#fefcbf" } },
      { selector: "node.cmp-errors", style: { "border-color": "#c53030", "border-width": 4 } },
      { selector: "node.cmp-faster", style: { "border-color": "#2b6cb0", "border-style": "dotted", "border-width": 3 } },
      { selector: "node.cmp-shift", style: { "background-color": "#faf5ff" } },
      { selector: "edge.cmp-new", style: { "line-color": "#2f855a", "target-arrow-color": "#2f855a", opacity: 1, width: 3 } },
      { selector: "edge.cmp-gone", style: { "line-color": "#718096", "target-arrow-color": "#718096", "line-style": "dashed", opacity: 0.9 } },
      { selector: "edge.cmp-shift", style: { "line-color": "#805ad5", "target-arrow-color": "#805ad5", opacity: 1 } },
    ],
  });

  function elements(v) {
    const out = [];
    for (const b of v.boxes) {
      out.push({ group: "nodes", data: { id: b.id, label: b.opened ? `${b.label} ▾` : b.label, parent: b.parent || undefined,
        kind: b.kind, opened: !!b.opened }, classes: `box box-${b.kind}${b.opened ? " opened" : ""}`, selectable: false });
    }
    for (const n of v.nodes) {
      let label = n.label;
      if (n.parent && n.parent.startsWith("c:") && label.includes(".")) label = label.slice(label.indexOf(".") + 1);
      label = shorten(label, 48);
      if (n.level !== "function") label = `${label} ▸`; // opens in place
      if (n.entry) label = `▶ ${label}`;
      const second = `×${FA.number(n.calls)}${n.errors ? `  ✗${FA.number(n.errors)}` : ""}${n.level !== "function" ? `  ${n.members.length} fn` : ""}`;
      const classes = [n.errors ? "err" : n.partials ? "partial" : "", n.roots ? "root" : "", n.entry ? "entry" : "",
        n.level !== "function" ? "group" : "", ...(n.compare || []).map((c) => `cmp-${c}`)].join(" ");
      out.push({ group: "nodes", classes, data: {
        id: n.id, parent: n.parent || undefined, display: `${label}\n${second}`, entry: n.entry || "",
        w: Math.ceil(Math.max(measure(label), measure(second)) + 18), h: 34 } });
    }
    for (const e of v.edges) {
      const classes = [e.errors ? "err" : e.partials ? "partial" : "", ...(e.compare || []).map((c) => `cmp-${c}`)].join(" ");
      const tag = e.tag || `${FA.number(e.frequency)}${e.errors ? ` (✗${FA.number(e.errors)})` : ""}`;
      out.push({ group: "edges", classes, data: { id: `${e.source}\u0000${e.target}`, source: e.source, target: e.target,
        width: e.width, frequency: e.frequency, errors: e.errors + e.partials, tag } });
    }
    return out;
  }

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

  function elkGraph() {
    const byId = new Map();
    const root = { id: "__root__", children: [], edges: [], layoutOptions: {
      "elk.algorithm": "layered", "elk.direction": rankDir === "LR" ? "RIGHT" : "DOWN",
      "elk.hierarchyHandling": "INCLUDE_CHILDREN",
      "elk.layered.spacing.nodeNodeBetweenLayers": "36", "elk.spacing.nodeNode": "10",
      "elk.spacing.componentComponent": "30", "elk.layered.thoroughness": "4",
      "elk.layered.nodePlacement.strategy": "BRANDES_KOEPF", "elk.edgeRouting": "ORTHOGONAL",
      "elk.layered.spacing.edgeNodeBetweenLayers": "8", "elk.layered.spacing.edgeEdgeBetweenLayers": "4",
      "elk.layered.mergeEdges": "true" } };
    const make = (node) => {
      const item = { id: node.id(), children: [] };
      if (node.hasClass("box")) item.layoutOptions = { "elk.padding": "[top=26,left=10,bottom=10,right=10]" };
      else {
        item.width = node.data("w"); item.height = node.data("h");
        // Where the program is entered (requests, main, tests, imports) is the first column.
        // (ELK refuses FIRST for a node that is also called: such an entry stays in flow.)
        if (node.data("entry") && node.incomers("edge").filter((e) => e.source().id() !== node.id()).empty()) {
          item.layoutOptions = { "elk.layered.layering.layerConstraint": "FIRST" };
        }
      }
      byId.set(node.id(), item);
      return item;
    };
    const boxesFirst = cy.nodes().sort((a, b) => a.ancestors().length - b.ancestors().length);
    boxesFirst.forEach((node) => {
      const item = make(node);
      const parent = node.parent();
      (parent.nonempty() ? byId.get(parent.id()).children : root.children).push(item);
    });
    cy.edges().forEach((edge) => {
      if (edge.source().id() === edge.target().id()) return; // loops do not shape the layout
      root.edges.push({ id: edge.id(), sources: [edge.source().id()], targets: [edge.target().id()] });
    });
    return root;
  }

  function applyPositions(result) {
    const positions = {};
    const offset = { __root__: { x: 0, y: 0 } }; // top-left corner of every ELK node
    const walk = (item, ox, oy) => {
      for (const child of item.children || []) {
        const x = ox + (child.x || 0), y = oy + (child.y || 0);
        offset[child.id] = { x, y };
        if (child.children && child.children.length) walk(child, x, y);
        else positions[child.id] = { x: x + (child.width || 0) / 2, y: y + (child.height || 0) / 2 };
      }
    };
    const routes = [];
    const collect = (item) => {
      for (const edge of item.edges || []) routes.push(edge);
      for (const child of item.children || []) collect(child);
    };
    walk(result, 0, 0);
    collect(result);
    cy.batch(() => {
      cy.nodes().forEach((node) => { if (positions[node.id()]) node.position(positions[node.id()]); });
      // ELK routes edges around the boxes; Cytoscape draws them as segments through the same
      // bend points (expressed relative to the line between the two node centres).
      for (const edge of routes) {
        const ele = cy.getElementById(edge.id);
        const section = edge.sections && edge.sections[0];
        if (!ele.length || !section) continue;
        const base = offset[edge.container] || offset.__root__;
        const abs = (p) => ({ x: p.x + base.x, y: p.y + base.y });
        const s = ele.source().position(), t = ele.target().position();
        const vx = t.x - s.x, vy = t.y - s.y, len2 = vx * vx + vy * vy;
        const bends = (section.bendPoints || []).map(abs);
        if (!bends.length || len2 < 1) { ele.removeStyle(); ele.removeClass("routed"); continue; }
        const len = Math.sqrt(len2);
        const weights = [], distances = [];
        for (const p of bends) {
          weights.push(((p.x - s.x) * vx + (p.y - s.y) * vy) / len2);
          distances.push(((p.y - s.y) * vx - (p.x - s.x) * vy) / len);
        }
        const a = abs(section.startPoint), b = abs(section.endPoint);
        ele.addClass("routed");
        ele.style({ "segment-weights": weights.join(" "), "segment-distances": distances.join(" "),
          "source-endpoint": `${a.x - s.x}px ${a.y - s.y}px`, "target-endpoint": `${b.x - t.x}px ${b.y - t.y}px` });
      }
    });
  }

  async function layout(fit) {
    const run = ++layoutRun;
    FA.graphReady = false;
    busy.classList.remove("hidden");
    try {
      const started = performance.now();
      const result = await elk.layout(elkGraph());
      FA.layoutMs = performance.now() - started;
      if (run !== layoutRun) return; // a newer layout started meanwhile
      applyPositions(result);
    } catch (error) {
      console.warn("ELK layout failed, using a simple one:", error);
      // No worker (unusual browser settings): a simple layered layout beats no layout.
      cy.layout({ name: "breadthfirst", directed: true, spacingFactor: 0.9 }).run();
    }
    if (fit && fitting && fitZoom() < 1) {
      // Too big to read whole: try the other direction, then one level up (auto level only).
      if (rankDir === "LR") { rankDir = "TB"; layout(true); return; }
      rankDir = "LR";
      if (stepUpIfTooBig()) return; // a coarser picture is on its way
      rankDir = "TB";
    }
    fitting = false;
    busy.classList.add("hidden");
    if (fit) readableFit();
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

  const fitZoom = () => {
    const bb = cy.elements().boundingBox();
    return Math.min((cy.width() - 48) / Math.max(bb.w, 1), (cy.height() - 48) / Math.max(bb.h, 1));
  };

  // The picture opens as large as fits, never below the zoom where labels reach MIN_FONT px
  // and never blown up; when it does not fit at that zoom, its left side (the entry points)
  // is shown and the reader pans or opens boxes from there.
  function readableFit() {
    const z = fitZoom();
    if (z >= 1) { cy.fit(undefined, 24); if (cy.zoom() > MAX_START_ZOOM) { cy.zoom(MAX_START_ZOOM); cy.center(); } return; }
    const bb = cy.elements().boundingBox();
    cy.zoom(1);
    // The first entry point in flow order (else the first node) is the one to start from.
    const key = rankDir === "LR" ? (n) => n.position().x * 1e6 + n.position().y : (n) => n.position().y * 1e6 + n.position().x;
    const entries = cy.nodes(".entry").length ? cy.nodes(".entry") : cy.nodes("[w]");
    const first = entries.toArray().sort((a, b) => key(a) - key(b))[0];
    const focus = first ? first.boundingBox() : bb;
    // Start where the flow starts (left or top), centred across on the entry points, without
    // showing empty space beyond the picture.
    const across = (lo, hi, flo, fhi, size) => (hi - lo + 48 <= size ? (size - (lo + hi)) / 2
      : Math.min(24 - lo, Math.max(size - 24 - hi, size / 2 - (flo + fhi) / 2)));
    if (rankDir === "LR") cy.pan({ x: 24 - bb.x1, y: across(bb.y1, bb.y2, focus.y1, focus.y2, cy.height()) });
    else cy.pan({ x: across(bb.x1, bb.x2, focus.x1, focus.x2, cy.width()), y: 24 - bb.y1 });
  }

  // An automatically chosen level whose picture cannot be read at MIN_FONT px steps up once
  // per layout (function → class → module → package) before anything is shown.
  function stepUpIfTooBig() {
    if (!view.auto || (view.opened || []).length || fitZoom() >= 1) return false;
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
  }

  function clearHighlight() {
    cy.elements().removeClass("faded hl sel path");
    cy.edges().removeClass("labelled");
  }

  // Hovering a node shows every path through it: all its callers up to the entry points and
  // all its callees down to the leaves.
  function showPaths(node) {
    const paths = node.predecessors().union(node.successors()).union(node);
    cy.elements().addClass("faded");
    paths.removeClass("faded").addClass("path");
    paths.ancestors().removeClass("faded");
    node.removeClass("path");
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
  // Labels are 11 px (box titles 12 px): below zoom 1 they would be smaller than MIN_FONT.
  let labelsHidden = null;
  function labelsByZoom() {
    const hide = cy.zoom() * 11 < MIN_FONT - 1e-9;
    if (hide === labelsHidden) return;
    labelsHidden = hide;
    cy.batch(() => { if (hide) cy.elements().addClass("nolabel"); else cy.elements().removeClass("nolabel"); });
  }
  cy.on("zoom", labelsByZoom);
  cy.on("add", () => { labelsHidden = null; labelsByZoom(); });
  cy.on("mouseover", "node[w]", (event) => showPaths(event.target));
  cy.on("mouseout", "node[w]", () => endPaths());
  for (const box of Object.values(overlays)) if (box) box.addEventListener("change", applyOverlays);
  cy.on("tap", (event) => {
    if (event.target === cy) {
      selectedId = null; anchor = null; clearHighlight();
      FA.clear(details).append(FA.el("p", { className: "muted" }, HINT));
    }
  });
  cy.on("mouseover", "edge", (event) => event.target.addClass("labelled"));
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
