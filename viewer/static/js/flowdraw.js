/* The flow of one entry point drawn as a tree chart (FA.drawFlow), used by the flows page and
 * the static report.
 *
 * One row per step of the merged call paths, indented by depth, with elbow connectors from a
 * step to the steps it calls: every label has its own row, so none can overlap. Each step
 * shows its function, the share of the entry's sessions reaching it (also as a bar), calls per
 * session, duration percentiles, and its error (red) and handled-error (orange) branches.
 */
"use strict";

(function () {
  const FA = window.FA;
  const ROW = 46, INDENT = 26, PAD = 8, FONT = 12, SMALL = 11;

  function rows(tree) {
    const out = [];
    const walk = (node, depth, parent) => {
      const row = { node, depth, parent, index: out.length };
      out.push(row);
      for (const child of node.children || []) walk(child, depth + 1, row);
    };
    walk(tree, 0, null);
    return out;
  }

  function statsLine(n) {
    const parts = [FA.pct(n.share), `${n.calls_per_session}×/session`,
      `p50 ${FA.duration(n.p50_ns)}`, `p95 ${FA.duration(n.p95_ns)}`, `p99 ${FA.duration(n.p99_ns)}`];
    return parts.join(" · ");
  }

  function errorLine(n) {
    const parts = [];
    if (n.errors) parts.push(`✗ ${FA.number(n.errors)} raised ${n.exceptions.map(([e, c]) => `${e}×${c}`).join(", ")}`);
    if (n.partials) parts.push(`~ ${FA.number(n.partials)} handled below`);
    return parts.join("  ");
  }

  /** Draw `flow.tree` into `container` (emptied); returns the svg element. */
  FA.drawFlow = function (container, flow) {
    while (container.firstChild) container.removeChild(container.firstChild);
    if (!flow || !flow.tree) {
      container.appendChild(document.createTextNode("No kept session tree for this entry."));
      return null;
    }
    const list = rows(flow.tree);
    let width = 0;
    const boxes = list.map((r) => {
      const n = r.node;
      const title = FA.shorten(n.function, 90);
      const line2 = statsLine(n), line3 = errorLine(n);
      const w = Math.ceil(Math.max(FA.textWidth(title, FONT), FA.textWidth(line2 + (line3 ? `  ${line3}` : ""), SMALL))) + 2 * PAD + 4;
      const x = 8 + r.depth * INDENT, y = 8 + r.index * ROW;
      width = Math.max(width, x + w + 8);
      return { r, n, title, line2, line3, x, y, w, h: ROW - 8 };
    });
    const height = 8 + list.length * ROW;
    const svg = FA.svg("svg", { class: "flow-chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": `flow of ${flow.entry}` });
    const lines = FA.svg("g", { class: "flow-links" });
    svg.appendChild(lines);
    for (const b of boxes) {
      if (!b.r.parent) continue;
      const p = boxes[b.r.parent.index];
      const px = p.x + 12, py = p.y + p.h, cy = b.y + b.h / 2;
      const cls = b.n.errors ? "err" : b.n.partials ? "partial" : "";
      lines.appendChild(FA.svg("path", { d: `M${px},${py} V${cy} H${b.x}`, class: `flow-link ${cls}`,
        "stroke-width": Math.max(1, Math.min(6, 1 + 5 * b.n.share)) }));
    }
    for (const b of boxes) {
      const cls = b.n.errors ? "err" : b.n.partials ? "partial" : "";
      const g = FA.svg("g", { class: `flow-step ${cls}`, transform: `translate(${b.x},${b.y})`, "data-function": b.n.function });
      g.appendChild(FA.svg("title", {}, `${b.n.function}\n${FA.number(b.n.sessions)} of ${FA.number(flow.sampled)} sampled sessions`));
      g.appendChild(FA.svg("rect", { class: "box", width: b.w, height: b.h, rx: 5 }));
      g.appendChild(FA.svg("rect", { class: "share", x: 1, y: b.h - 4, width: Math.max(2, (b.w - 2) * b.n.share), height: 3 }));
      g.appendChild(FA.svg("text", { class: "fn", x: PAD, y: 15, "font-size": FONT }, b.title));
      const t2 = FA.svg("text", { class: "stat", x: PAD, y: 30, "font-size": SMALL }, b.line2);
      if (b.line3) t2.appendChild(FA.svg("tspan", { class: "errs" }, `  ${b.line3}`));
      g.appendChild(t2);
      svg.appendChild(g);
    }
    container.appendChild(svg);
    return svg;
  };
})();
