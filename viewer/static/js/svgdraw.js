/* Small SVG helpers shared by the flow and sequence views (and the static report).
 *
 * Every text goes in with textContent, never as markup. Text is measured with a canvas in the
 * same font, so boxes are sized to their labels and nothing is drawn on top of anything.
 */
"use strict";

(function () {
  const FA = (window.FA = window.FA || {});
  const NS = "http://www.w3.org/2000/svg";
  FA.MONO = 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace';

  FA.svg = function (tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };

  const ctx = document.createElement("canvas").getContext("2d");
  /** Width in px of `text` in `size` px monospace. */
  FA.textWidth = function (text, size) {
    ctx.font = `${size}px ${FA.MONO}`;
    return ctx.measureText(String(text)).width;
  };

  FA.shorten = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);
  FA.pct = (x) => `${(100 * x).toFixed(1).replace(/\.0$/, "")}%`;
})();
