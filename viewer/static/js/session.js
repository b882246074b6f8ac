/* Session page: collapsible call tree, call details, and a flame-chart timeline per thread.
 *
 * The server renders only the rows that are visible at first, in pre-order, each with its
 * depth; a big session (10 000 calls and more) thus opens fast. The whole tree (the same rows,
 * as data) is loaded from /api/sessions/<id>/tree in the background, and rows are created, with
 * textContent only, when a call is expanded or selected. The timeline is drawn on a canvas
 * (text drawn on a canvas is never parsed as markup) from /api/sessions/<id>/timeline.
 */
"use strict";

(function () {
  const data = FA.pageData();
  const tree = document.getElementById("tree");
  const details = document.getElementById("call-details");
  const els = new Map(); // row index → element, for the rows in the document
  for (const el of tree.querySelectorAll(".row")) els.set(Number(el.id.slice(1)), el);
  let selected = -1;
  const timelineApi = {};

  // -- the tree model -------------------------------------------------------------------------
  let M = null; // {rows, parent, depth, end, open, kids, nth, limit}
  const CHILD_LIMIT = data.child_limit || 100;
  const more = new Map(); // parent index → its "N more calls" element
  for (const el of tree.querySelectorAll(".row.more")) more.set(Number(el.dataset.for), el);
  const modelReady = FA.getJSON(data.api_tree).then((body) => {
    const rows = body.rows;
    const n = rows.length;
    const parent = new Int32Array(n), depth = new Int32Array(n), end = new Int32Array(n);
    const open = new Uint8Array(n), kids = rows.map(() => []);
    const nth = new Int32Array(n), limit = new Float64Array(n).fill(CHILD_LIMIT);
    const stack = [];
    rows.forEach((r, i) => {
      parent[i] = r.parent === null ? -1 : r.parent;
      depth[i] = r.depth;
      open[i] = r.open ? 1 : 0;
      if (parent[i] >= 0) { nth[i] = kids[parent[i]].length; kids[parent[i]].push(i); }
      while (stack.length && depth[stack[stack.length - 1]] >= depth[i]) end[stack.pop()] = i;
      stack.push(i);
    });
    for (const i of stack) end[i] = n;
    M = { rows, parent, depth, end, open, kids, nth, limit };
    FA.treeLoaded = true;
    const errors = rows.some((r) => r.result === "error");
    document.getElementById("next-error").disabled = !errors;
    return M;
  });

  function buildRow(i) {
    const r = M.rows[i];
    return FA.el("div", { className: `row r-${r.result} d${Math.min(r.depth, 40)}`, id: `r${i}`, role: "treeitem",
      dataset: { d: String(r.depth) } },
    r.children ? FA.el("button", { className: "tg", type: "button", tabindex: "-1", "aria-label": "expand or collapse" },
      M.open[i] ? "▾" : "▸") : FA.el("span", { className: "tg" }),
    FA.el("span", { className: "mk" }, r.mark),
    FA.el("span", { className: "fn" }, r.function_name),
    r.depth > 40 ? FA.el("span", { className: "deep", title: "call depth" }, String(r.depth)) : null,
    FA.el("span", { className: "dur" }, r.duration),
    FA.el("span", { className: "sig" }, FA.el("span", { className: "in" }, r.input), " → ",
      FA.el("span", { className: r.result === "error" ? "exc" : "out" }, r.outcome)),
    r.children ? FA.el("span", { className: "kids muted" }, String(r.children)) : null);
  }

  function moreRow(p, hidden) {
    return FA.el("div", { className: `row more d${Math.min(M.depth[p] + 1, 40)}`, dataset: { for: String(p) } },
      FA.el("button", { type: "button", className: "link-btn" }, `… ${FA.number(hidden)} more calls`));
  }

  /** Show or hide the rows under i (i itself visible), creating the ones that appear.
   *  A child is shown when its parent is shown and open and it is within the parent's limit;
   *  the first child past the limit gets a "more" row in its place. */
  function refresh(i) {
    for (const [p, el] of more) if (p >= i && p < M.end[i]) { el.remove(); more.delete(p); }
    const visible = new Uint8Array(M.rows.length);
    visible[i] = 1;
    let cursor = els.get(i);
    for (let j = i + 1; j < M.end[i]; j++) {
      const p = M.parent[j];
      const shown = visible[p] && M.open[p];
      const show = shown && M.nth[j] < M.limit[p];
      visible[j] = show ? 1 : 0;
      if (shown && M.nth[j] === M.limit[p]) {
        const el = moreRow(p, M.kids[p].length - M.limit[p]);
        cursor.after(el);
        more.set(p, el);
        cursor = el;
      }
      let el = els.get(j);
      if (!el && show) {
        el = buildRow(j);
        cursor.after(el);
        els.set(j, el);
      }
      if (el) { el.classList.toggle("hidden", !show); cursor = el; }
    }
  }

  function markOpen(i) {
    const el = els.get(i);
    if (!el) return;
    el.classList.toggle("open", !!M.open[i]);
    const toggle = el.querySelector("button.tg");
    if (toggle) toggle.textContent = M.open[i] ? "▾" : "▸";
    el.setAttribute("aria-expanded", String(!!M.open[i]));
  }

  async function setOpen(i, open) {
    await modelReady;
    if (!M.rows[i].children) return;
    M.open[i] = open ? 1 : 0;
    markOpen(i);
    refresh(i);
  }

  /** Open every ancestor of i, top down, so that row i exists and is shown. */
  async function reveal(i) {
    await modelReady;
    const chain = [];
    for (let p = M.parent[i]; p >= 0; p = M.parent[p]) chain.push(p);
    chain.reverse();
    chain.forEach((p, k) => {
      const child = k + 1 < chain.length ? chain[k + 1] : i;
      const tooFar = M.nth[child] >= M.limit[p];
      if (tooFar) M.limit[p] = Math.ceil((M.nth[child] + 1) / CHILD_LIMIT) * CHILD_LIMIT;
      if (!M.open[p] || tooFar) { M.open[p] = 1; markOpen(p); refresh(p); }
    });
  }

  function roots() { const out = []; for (let i = 0; i < M.rows.length; i = M.end[i]) out.push(i); return out; }

  async function openAll(open) {
    await modelReady;
    M.rows.forEach((r, i) => { if (r.children) M.open[i] = open ? 1 : 0; });
    if (open) M.limit.fill(Infinity);
    for (const i of roots()) refresh(i);
    for (const i of els.keys()) markOpen(i);
  }

  async function select(i, scroll) {
    await reveal(i);
    if (selected >= 0 && els.has(selected)) els.get(selected).classList.remove("sel");
    selected = i;
    const el = els.get(i);
    el.classList.add("sel");
    if (scroll) el.scrollIntoView({ block: "nearest" });
    showDetails(i);
    if (timelineApi.highlight) timelineApi.highlight(i);
  }

  function showDetails(i) {
    const r = M.rows[i];
    const name = r.function_name;
    const callerName = M.parent[i] >= 0 ? M.rows[M.parent[i]].function_name : r.caller;
    const graphHref = `${data.graph_url}?${new URLSearchParams({ level: "function", focus: name })}`;
    const sessionsHref = `/?${new URLSearchParams({ run: data.run_id, q: name.split(":").pop() })}`;
    const dl = FA.el("dl", {},
      FA.el("dt", {}, "result"), FA.el("dd", {}, FA.resultBadge(r.result)),
      FA.el("dt", {}, "duration"), FA.el("dd", {}, r.duration),
      FA.el("dt", {}, "starts at"), FA.el("dd", {}, `+${FA.duration(r.start_ns)}`),
      FA.el("dt", {}, "thread"), FA.el("dd", {}, r.thread_name),
      FA.el("dt", {}, "call id"), FA.el("dd", {}, String(r.id)),
      FA.el("dt", {}, "depth"), FA.el("dd", {}, String(r.depth)),
      FA.el("dt", {}, "input"), FA.el("dd", { className: "mono" }, r.input),
      FA.el("dt", {}, r.result === "error" ? "raised" : "output"),
      FA.el("dd", { className: r.result === "error" ? "exc" : "mono" }, r.outcome));
    const callerItem = callerName
      ? FA.el("li", {}, M.parent[i] >= 0
        ? FA.el("button", { className: "link-btn", type: "button", onclick: () => select(M.parent[i], true) }, callerName)
        : FA.el("span", { className: "mono" }, callerName))
      : FA.el("li", { className: "muted" }, "none: this call starts the session");
    const kids = M.kids[i];
    FA.clear(details).append(
      FA.el("h3", {}, name), dl,
      FA.el("div", { className: "actions" },
        FA.el("a", { className: "btn", href: graphHref, id: "to-graph" }, "Show function in the architecture graph →"),
        FA.el("a", { className: "btn ghost", href: sessionsHref }, "Other sessions calling it")),
      FA.el("h4", {}, "Called by"), FA.el("ul", {}, callerItem),
      FA.el("h4", {}, `Calls (${kids.length})`),
      FA.el("ul", {}, kids.slice(0, 200).map((j) => FA.el("li", {},
        FA.el("span", { className: `res res-${M.rows[j].result}` }, M.rows[j].mark), " ",
        FA.el("button", { className: "link-btn", type: "button", onclick: () => select(j, true) }, M.rows[j].function_name))),
      kids.length > 200 ? FA.el("li", { className: "muted" }, `… ${kids.length - 200} more`) : null));
  }

  tree.addEventListener("click", async (event) => {
    const el = event.target.closest(".row");
    if (!el) return;
    if (el.classList.contains("more")) {
      await modelReady;
      const p = Number(el.dataset.for);
      M.limit[p] += 5 * CHILD_LIMIT;
      refresh(p);
      return;
    }
    const i = Number(el.id.slice(1));
    await modelReady;
    if (event.target.closest("button.tg")) setOpen(i, !M.open[i]);
    else select(i, false);
  });
  tree.setAttribute("tabindex", "0");
  tree.addEventListener("keydown", async (event) => {
    if (selected < 0 || !M) return;
    const visible = (j) => els.has(j) && !els.get(j).classList.contains("hidden");
    let i = selected;
    if (event.key === "ArrowDown") { do i++; while (i < M.rows.length && !visible(i)); }
    else if (event.key === "ArrowUp") { do i--; while (i >= 0 && !visible(i)); }
    else if (event.key === "ArrowRight") { event.preventDefault(); setOpen(i, true); return; }
    else if (event.key === "ArrowLeft") {
      event.preventDefault();
      if (M.open[i] && M.rows[i].children) setOpen(i, false); else if (M.parent[i] >= 0) select(M.parent[i], true);
      return;
    } else return;
    event.preventDefault();
    if (i >= 0 && i < M.rows.length) select(i, true);
  });
  document.getElementById("expand-all").addEventListener("click", () => openAll(true));
  document.getElementById("collapse-all").addEventListener("click", () => openAll(false));
  document.getElementById("next-error").addEventListener("click", async () => {
    await modelReady;
    const n = M.rows.length;
    for (let k = 1; k <= n; k++) {
      const j = (selected + k + n) % n;
      if (M.rows[j].result === "error") { select(j, true); return; }
    }
  });

  // -- timeline ------------------------------------------------------------------------------
  const box = document.getElementById("timeline");
  const canvas = document.getElementById("timeline-canvas");
  const tip = document.getElementById("tl-tip");
  const ROW = 16, LABEL = 20, PAD = 6;
  const COLORS = { success: "#7fb8e6", error: "#f08a8a", partial: "#f2c46d", incomplete: "#c3cad3" };
  const STROKE = { success: "#4a90c8", error: "#c53030", partial: "#b7791f", incomplete: "#8a94a1" };

  function drawTimeline(tl) {
    const ctx = canvas.getContext("2d");
    const dpr = window.devicePixelRatio || 1;
    let view = { t0: 0, t1: Math.max(tl.duration_ns, 1) };
    let highlightRow = null;
    const layout = []; // [{y, track}]
    let height = PAD;
    for (const track of tl.tracks) { layout.push({ y: height + LABEL, track }); height += LABEL + track.height * ROW + PAD; }
    height = Math.max(height, 40);

    function resize() {
      const width = box.clientWidth;
      canvas.width = Math.round(width * dpr); canvas.height = Math.round(height * dpr);
      canvas.style.height = `${height}px`;
      draw();
    }
    const x = (t) => ((t - view.t0) / (view.t1 - view.t0)) * box.clientWidth;

    function draw() {
      const width = box.clientWidth;
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, width, height);
      ctx.font = "11px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";
      ctx.textBaseline = "middle";
      for (const { y, track } of layout) {
        ctx.fillStyle = "#52606d";
        ctx.fillText(`${track.label}`, 6, y - LABEL / 2);
        ctx.strokeStyle = "#e4e7eb";
        ctx.beginPath(); ctx.moveTo(0, y - 2.5); ctx.lineTo(width, y - 2.5); ctx.stroke();
        for (const s of track.spans) {
          let x0 = x(s[1]), x1 = x(s[2]);
          if (x1 < 0 || x0 > width) continue;
          x0 = Math.max(x0, -2); x1 = Math.min(x1, width + 2);
          const w = Math.max(x1 - x0, 1);
          const yy = y + s[3] * ROW;
          const result = tl.results[s[5]];
          ctx.fillStyle = COLORS[result] || COLORS.incomplete;
          ctx.fillRect(x0, yy, w, ROW - 2);
          if (w > 3) { ctx.strokeStyle = STROKE[result] || STROKE.incomplete; ctx.lineWidth = 0.5; ctx.strokeRect(x0 + 0.25, yy + 0.25, w - 0.5, ROW - 2.5); }
          if (s[0] === highlightRow) { ctx.strokeStyle = "#1f2933"; ctx.lineWidth = 2; ctx.strokeRect(x0, yy, w, ROW - 2); }
          if (w > 30) {
            const name = tl.functions[s[4]];
            const short = name.slice(name.indexOf(":") + 1);
            ctx.save(); ctx.beginPath(); ctx.rect(x0 + 2, yy, w - 4, ROW - 2); ctx.clip();
            ctx.fillStyle = "#1f2933"; ctx.fillText(short, Math.max(x0, 0) + 4, yy + (ROW - 2) / 2);
            ctx.restore();
          }
        }
      }
      // time axis: start and end of the visible window
      ctx.fillStyle = "#9aa5b1";
      ctx.textAlign = "right";
      ctx.fillText(`${FA.duration(view.t0)} – ${FA.duration(view.t1)}`, width - 6, PAD + 6);
      ctx.textAlign = "left";
    }

    function hit(event) {
      const rect = canvas.getBoundingClientRect();
      const px = event.clientX - rect.left, py = event.clientY - rect.top;
      const t = view.t0 + (px / rect.width) * (view.t1 - view.t0);
      const slop = (3 / rect.width) * (view.t1 - view.t0);
      for (const { y, track } of layout) {
        const level = Math.floor((py - y) / ROW);
        if (level < 0 || level >= track.height) continue;
        for (const s of track.spans) if (s[3] === level && s[1] - slop <= t && t <= s[2] + slop) return { s, px, py };
      }
      return null;
    }

    let drag = null;
    canvas.addEventListener("mousedown", (e) => { drag = { x: e.clientX, t0: view.t0, t1: view.t1, moved: false }; });
    window.addEventListener("mouseup", () => { setTimeout(() => { drag = null; }, 0); });
    canvas.addEventListener("mousemove", (e) => {
      if (drag && e.buttons) {
        const dx = e.clientX - drag.x;
        if (Math.abs(dx) > 2) drag.moved = true;
        const dt = (dx / box.clientWidth) * (drag.t1 - drag.t0);
        view = { t0: drag.t0 - dt, t1: drag.t1 - dt }; draw(); tip.classList.add("hidden"); return;
      }
      const h = hit(e);
      if (!h) { tip.classList.add("hidden"); return; }
      const s = h.s;
      FA.clear(tip).append(FA.el("span", { className: "fn" }, tl.functions[s[4]]),
        `${tl.results[s[5]]} · ${FA.duration(s[2] - s[1])} · starts +${FA.duration(s[1])}`);
      tip.classList.remove("hidden");
      tip.style.left = `${Math.min(h.px + 12, box.clientWidth - tip.offsetWidth - 4)}px`;
      tip.style.top = `${h.py + 14}px`;
    });
    canvas.addEventListener("mouseleave", () => tip.classList.add("hidden"));
    canvas.addEventListener("click", (e) => {
      if (drag && drag.moved) return;
      const h = hit(e);
      if (h) select(h.s[0], true);
    });
    canvas.addEventListener("wheel", (e) => {
      if (e.shiftKey) { box.scrollTop += e.deltaY || e.deltaX; e.preventDefault(); return; }
      e.preventDefault();
      const rect = canvas.getBoundingClientRect();
      const t = view.t0 + ((e.clientX - rect.left) / rect.width) * (view.t1 - view.t0);
      const k = Math.exp(e.deltaY * 0.002);
      const span = Math.max((view.t1 - view.t0) * k, 50);
      const f = (t - view.t0) / (view.t1 - view.t0);
      view = { t0: t - f * span, t1: t + (1 - f) * span };
      draw();
    }, { passive: false });
    canvas.addEventListener("dblclick", () => { view = { t0: 0, t1: Math.max(tl.duration_ns, 1) }; draw(); });
    window.addEventListener("resize", resize);
    timelineApi.highlight = (row) => { highlightRow = row; draw(); };
    resize();
  }

  FA.getJSON(data.api_timeline).then(drawTimeline).catch(() => {
    box.replaceChildren(FA.el("p", { className: "muted" }, "The timeline could not be loaded."));
  });
})();
