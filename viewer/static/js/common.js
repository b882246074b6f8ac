/* flowagent viewer: helpers shared by every page.
 *
 * Recorded names and shapes are untrusted text (a function may well be called
 * "<script>alert(1)</script>"), so DOM is only ever built with createElement and textContent,
 * never by assigning HTML strings, and links only take same-origin paths.
 */
"use strict";

(function () {
  const FA = (window.FA = {});

  /** The page's data block (JSON escaped by the server for embedding). */
  FA.pageData = function () {
    const node = document.getElementById("page-data");
    return node ? JSON.parse(node.textContent) : {};
  };

  /** Only relative, same-origin paths: data never decides a link's scheme. */
  FA.safeHref = function (href) {
    return typeof href === "string" && href.startsWith("/") && !href.startsWith("//") ? href : null;
  };

  /**
   * el("a", {className: "fn", href: "/x", title: "t", dataset: {k: "v"}, onclick: f}, "text", child)
   * Strings become text nodes; null/undefined children are skipped.
   */
  FA.el = function (tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "className") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "href") {
        const safe = FA.safeHref(value);
        if (safe) node.setAttribute("href", safe);
      } else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  };

  FA.clear = function (node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  };

  FA.getJSON = async function (url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) {
      const error = new Error(`${response.status} for ${url}`);
      error.status = response.status;
      throw error;
    }
    return response.json();
  };

  FA.duration = function (ns) {
    if (ns === null || ns === undefined) return "–";
    if (ns < 1e3) return `${Math.round(ns)} ns`;
    if (ns < 1e6) return `${(ns / 1e3).toFixed(1)} µs`;
    if (ns < 1e9) return `${(ns / 1e6).toFixed(2)} ms`;
    return `${(ns / 1e9).toFixed(2)} s`;
  };

  FA.number = function (n) {
    if (n === null || n === undefined) return "–";
    return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, "\u202f");
  };

  FA.timestamp = function (ns) {
    if (!ns) return "–";
    const d = new Date(ns / 1e6);
    return d.toISOString().replace("T", " ").replace("Z", " UTC");
  };

  FA.marks = { success: "✓", error: "✗", partial: "~", incomplete: "…" };

  FA.inputShape = function (shape) {
    if (shape && typeof shape === "object" && !Array.isArray(shape)) {
      return "(" + Object.entries(shape).map(([k, v]) => `${k}: ${v}`).join(", ") + ")";
    }
    return shape === null || shape === undefined ? "()" : String(shape);
  };

  FA.resultBadge = function (result) {
    if (!result) return FA.el("span", { className: "res res-open", title: "still running" }, "○ open");
    return FA.el("span", { className: `res res-${result}`, title: result }, `${FA.marks[result] || "?"} ${result}`);
  };

  FA.setLive = function (live) {
    const badge = document.getElementById("live-badge");
    if (badge) badge.classList.toggle("hidden", !live);
  };

  /**
   * Calls `tick` every `ms` while it resolves to true; pauses while the tab is hidden.
   * A failed tick (server restarting, network blip) is retried on the next turn.
   */
  FA.poll = function (tick, ms) {
    let timer = null;
    let stopped = false;
    const run = async () => {
      timer = null;
      if (stopped) return;
      if (document.hidden) { schedule(); return; }
      let again = true;
      try { again = await tick(); } catch (e) { again = true; }
      if (again === false) { stopped = true; return; }
      schedule();
    };
    const schedule = () => { if (!stopped && timer === null) timer = setTimeout(run, ms); };
    document.addEventListener("visibilitychange", () => { if (!document.hidden && !stopped && timer === null) run(); });
    schedule();
    return { stop() { stopped = true; if (timer) clearTimeout(timer); } };
  };
})();
