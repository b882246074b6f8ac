/* The architecture map's drawing, shared by the architecture page (graph.js) and the static
 * report (report.js): Cytoscape.js styles and elements for a view of viewer/graphview.py, the
 * hand-over to ELK (layered, hierarchy-aware, entry points first) and back, the readable
 * first fit, and the rule that no label is drawn below MIN_FONT px on screen.
 */
"use strict";

(function () {
  const FA = (window.FA = window.FA || {});
  const MONO = 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace';
  const MIN_FONT = 11; // px on screen: below this a label is not drawn at all
  const MAX_START_ZOOM = 1.6;

  const measure = (() => {
    const ctx = document.createElement("canvas").getContext("2d");
    ctx.font = `11px ${MONO}`;
    return (text) => ctx.measureText(text).width;
  })();
  const shorten = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

  const style = () => [
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
    // map hides labels itself below MIN_FONT px (see hideSmallLabels).
    { selector: ".nolabel", style: { "text-opacity": 0, "text-background-opacity": 0 } },
    // an edge tag with no free place near its edge is not drawn (see placeTags)
    { selector: "edge.tag-off", style: { "text-opacity": 0, "text-background-opacity": 0 } },
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
  ];

  /** A Cytoscape instance in `container` with the map's styles. */
  function create(container) {
    const cy = cytoscape({ container, minZoom: 0.05, maxZoom: 4, boxSelectionEnabled: false, autoungrabify: true, style: style() });
    hideSmallLabels(cy);
    return cy;
  }

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

  // -- layout: ELK (layered, hierarchy-aware) ----------------------------------------------
  // Cytoscape keeps the elements; ELK only computes positions. Boxes (modules, classes) are
  // ELK compound nodes, so their members are laid out together and edges between boxes are
  // taken into account across the hierarchy (INCLUDE_CHILDREN).
  function elkGraph(cy, rankDir) {
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

  function applyPositions(cy, result) {
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

  const fitZoom = (cy) => {
    const bb = cy.elements().boundingBox();
    return Math.min((cy.width() - 48) / Math.max(bb.w, 1), (cy.height() - 48) / Math.max(bb.h, 1));
  };

  // The picture opens as large as fits, never below the zoom where labels reach MIN_FONT px
  // and never blown up; when it does not fit at that zoom, its left side (the entry points)
  // is shown and the reader pans or opens boxes from there.
  function readableFit(cy, rankDir) {
    const z = fitZoom(cy);
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

  // Labels are 11 px (box titles 12 px): below zoom 1 they would be smaller than MIN_FONT.
  // (Cytoscape's own min-zoomed-font-size rounds the zoom up to a power of two.)
  function hideSmallLabels(cy) {
    let hidden = null;
    const update = () => {
      const hide = cy.zoom() * 11 < MIN_FONT - 1e-9;
      if (hide === hidden) return;
      hidden = hide;
      cy.batch(() => { if (hide) cy.elements().addClass("nolabel"); else cy.elements().removeClass("nolabel"); });
    };
    cy.on("zoom", update);
    cy.on("add", () => { hidden = null; update(); });
  }

  // Edge tags (call counts) are drawn at the middle of their edge unless that covers a node
  // or another tag; then a nearby free place is taken, and with none the tag is not drawn
  // (the details panel lists the same counts). Busiest edges choose first.
  const TAG_SHIFTS = (() => {
    const out = [];
    for (const dx of [0, -30, 30, -60, 60]) for (const dy of [0, -16, 16, -32, 32]) out.push([dx, dy]);
    return out.sort((a, b) => Math.abs(a[0]) + 2 * Math.abs(a[1]) - Math.abs(b[0]) - 2 * Math.abs(b[1]));
  })();
  const hits = (a, b) => a.x1 < b.x2 + 2 && b.x1 < a.x2 + 2 && a.y1 < b.y2 + 2 && b.y1 < a.y2 + 2;

  function placeTags(cy, edges) {
    cy.batch(() => {
      edges.removeClass("tag-off");
      edges.removeStyle("text-margin-x text-margin-y");
    });
    const taken = [];
    cy.nodes().forEach((n) => {
      taken.push(n.hasClass("box") ? n.boundingBox({ includeNodes: false, includeLabels: true })
        : n.boundingBox({ includeNodes: true, includeLabels: true }));
    });
    const tagBox = (e) => e.boundingBox({ includeNodes: false, includeEdges: false, includeLabels: true });
    const order = edges.filter((e) => e.data("tag")).toArray().sort((a, b) => b.data("frequency") - a.data("frequency"));
    for (const edge of order) {
      let placed = null;
      for (const [dx, dy] of TAG_SHIFTS) {
        edge.style({ "text-margin-x": dx, "text-margin-y": dy });
        const box = tagBox(edge);
        if (box.w > 0 && !taken.some((t) => t.w > 0 && hits(box, t))) { placed = box; break; }
      }
      if (placed) taken.push(placed);
      else { edge.removeStyle("text-margin-x text-margin-y"); edge.addClass("tag-off"); }
    }
  }

  // Hovering a node shows every path through it: all its callers up to the entry points and
  // all its callees down to the leaves.
  function showPaths(cy, node) {
    const paths = node.predecessors().union(node.successors()).union(node);
    cy.elements().addClass("faded");
    paths.removeClass("faded").addClass("path");
    paths.ancestors().removeClass("faded");
    node.removeClass("path");
  }

  FA.map = { MIN_FONT, MAX_START_ZOOM, create, elements, elkGraph, applyPositions, fitZoom, readableFit, showPaths, placeTags };
})();
