/* A session as a sequence diagram (FA.drawSequence), used by the session's sequence page and
 * the static report. Input: the model of flowagent/export/_sequence.py (lanes, lifelines,
 * messages).
 *
 * Readable by construction: every message has its own row, and columns are spaced so that
 * each message's text fits between the lifelines it joins (self-calls: beside their
 * lifeline), so no two texts can overlap. Lanes (threads, processes) are framed column
 * groups; activations are bars on the callee's lifeline from call to return.
 */
"use strict";

(function () {
  const FA = window.FA;
  const FONT = 12, ROW = 26, HEAD = 64, PAD = 14, MIN_GAP = 150, SELF_W = 34;

  FA.drawSequence = function (container, model) {
    while (container.firstChild) container.removeChild(container.firstChild);
    if (!model || !model.messages.length) {
      container.appendChild(document.createTextNode("This session's call tree was not kept."));
      return null;
    }
    const lines = model.lifelines;
    const col = new Map(lines.map((l, i) => [l.id, i]));
    const labels = lines.map((l) => FA.shorten(l.label, 44));
    const labelW = labels.map((t) => FA.textWidth(t, FONT) + 2 * PAD);
    // gap[i]: distance between column i-1 and column i
    const gap = lines.map((_, i) => (i === 0 ? 0 : Math.max(MIN_GAP, (labelW[i - 1] + labelW[i]) / 2 + 16)));
    let tail = labelW[lines.length - 1] / 2 + 16; // room right of the last column
    const texts = model.messages.map((m) => FA.shorten(m.text, 80));
    const spans = model.messages.map((m, k) => ({ a: col.get(m.source), b: col.get(m.target), w: FA.textWidth(texts[k], FONT) + 24 }));
    for (const s of [...spans].sort((x, y) => Math.abs(x.a - x.b) - Math.abs(y.a - y.b))) {
      const lo = Math.min(s.a, s.b), hi = Math.max(s.a, s.b);
      if (lo === hi) { // self-call: text to the right of the loop
        const need = s.w + SELF_W + 8;
        if (hi + 1 < lines.length) gap[hi + 1] = Math.max(gap[hi + 1], need); else tail = Math.max(tail, need);
        continue;
      }
      let have = 0;
      for (let i = lo + 1; i <= hi; i++) have += gap[i];
      if (have < s.w) gap[hi] += s.w - have;
    }
    const xs = [];
    let x = 16 + labelW[0] / 2;
    lines.forEach((_, i) => { x += gap[i]; xs.push(x); });
    const width = Math.ceil(xs[xs.length - 1] + tail + 16);
    const height = HEAD + 20 + model.messages.length * ROW + 24;
    const svg = FA.svg("svg", { class: "seq-chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": `sequence diagram of ${model.title}` });
    const defs = FA.svg("defs");
    for (const [id, cls] of [["seq-arrow", "arrow"], ["seq-arrow-err", "arrow err"]]) {
      const marker = FA.svg("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
      marker.appendChild(FA.svg("path", { d: "M0,0 L10,5 L0,10 z", class: cls, fill: id === "seq-arrow" ? "#52606d" : "#c53030" }));
      defs.appendChild(marker);
    }
    svg.appendChild(defs);

    // lanes: a frame around each lane's lifelines, its name above
    for (const lane of model.lanes) {
      const idx = lines.map((l, i) => [l, i]).filter(([l]) => l.lane === lane.id).map(([, i]) => i);
      if (!idx.length) continue;
      const x1 = xs[idx[0]] - labelW[idx[0]] / 2 - 6, x2 = xs[idx[idx.length - 1]] + labelW[idx[idx.length - 1]] / 2 + 6;
      const g = FA.svg("g", { class: "lane", "data-lane": lane.label });
      g.appendChild(FA.svg("rect", { x: x1, y: 4, width: x2 - x1, height: height - 8, rx: 6 }));
      g.appendChild(FA.svg("text", { x: x1 + 8, y: 19, "font-size": FONT }, FA.shorten(lane.label, Math.max(8, Math.floor((x2 - x1 - 16) / 7.3)))));
      svg.appendChild(g);
    }
    // lifelines: a box with the class or module, a dashed line down
    lines.forEach((l, i) => {
      const g = FA.svg("g", { class: "actor", "data-lifeline": l.label });
      g.appendChild(FA.svg("line", { class: "lifeline", x1: xs[i], x2: xs[i], y1: HEAD, y2: height - 12 }));
      g.appendChild(FA.svg("rect", { x: xs[i] - labelW[i] / 2, y: 28, width: labelW[i], height: 28, rx: 4 }));
      g.appendChild(FA.svg("text", { x: xs[i], y: 46, "font-size": FONT, "text-anchor": "middle" }, labels[i]));
      g.appendChild(FA.svg("title", {}, l.label));
      svg.appendChild(g);
    });
    // activations: from a call's row to its return's row, nested per lifeline
    const open = new Map(), level = new Map();
    const acts = FA.svg("g", { class: "acts" });
    svg.appendChild(acts);
    model.messages.forEach((m, k) => {
      const y = HEAD + 20 + k * ROW;
      if (m.kind === "call") {
        const n = level.get(m.target) || 0;
        level.set(m.target, n + 1);
        open.set(m.call, { y, n });
      } else {
        const o = open.get(m.call);
        if (!o) return;
        level.set(m.source, (level.get(m.source) || 1) - 1);
        const cx = xs[col.get(m.source)] - 5 + 4 * Math.min(o.n, 6);
        acts.appendChild(FA.svg("rect", { class: "act", x: cx, y: o.y, width: 10, height: Math.max(6, y - o.y) }));
      }
    });
    // messages
    model.messages.forEach((m, k) => {
      const y = HEAD + 20 + k * ROW + 10;
      const a = xs[col.get(m.source)], b = xs[col.get(m.target)];
      // The result shows on the way back: a return that raised is red, one that handled an
      // error below orange; calls stay neutral.
      const outcome = m.kind !== "return" ? "" : m.result === "error" ? "error" : m.result === "partial" ? "partial" : "";
      const cls = `msg ${m.kind === "return" ? "ret" : "call"} ${outcome}`;
      const g = FA.svg("g", { class: cls, "data-kind": m.kind, "data-call": m.call, "data-from": m.source, "data-to": m.target });
      const marker = m.result === "error" && m.kind === "return" ? "url(#seq-arrow-err)" : "url(#seq-arrow)";
      if (a === b) {
        g.appendChild(FA.svg("path", { d: `M${a + 5},${y - 6} h${SELF_W - 6} v12 h-${SELF_W - 10}`, "marker-end": marker }));
        g.appendChild(FA.svg("text", { x: a + SELF_W + 6, y: y + 4, "font-size": FONT }, texts[k]));
      } else {
        const dir = b > a ? 1 : -1;
        g.appendChild(FA.svg("line", { x1: a + 5 * dir, x2: b - 5 * dir, y1: y + 3, y2: y + 3, "marker-end": marker,
          "stroke-dasharray": m.asynchronous && m.kind === "call" ? "2 3" : null }));
        const tx = dir > 0 ? a + 12 : a - 12;
        g.appendChild(FA.svg("text", { x: tx, y: y - 2, "font-size": FONT, "text-anchor": dir > 0 ? "start" : "end" }, texts[k]));
      }
      g.appendChild(FA.svg("title", {}, `${m.text}\n${FA.duration(m.duration_ns)}`));
      svg.appendChild(g);
    });
    container.appendChild(svg);
    return svg;
  };
})();
