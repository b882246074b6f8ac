"""Readability checks run in the page itself: what a person would see at first paint.

Each check returns the labels a reader can see (inside the viewport, not hidden), the font
size each is drawn at on screen (CSS px), and every pair of visible labels whose boxes
overlap. Used by the browser tests of the architecture, flow and sequence views.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page

MIN_FONT_PX = 11

# Cytoscape: a label is drawn unless hidden by the page (text-opacity 0); its on-screen size
# is font-size x zoom; its box comes from Cytoscape's own label bounding box.
_CY_LABELS = """() => {
  const cy = FA.cy, z = cy.zoom(), ext = cy.extent();
  const out = [];
  cy.elements().forEach((e) => {
    const label = e.isNode() ? (e.data("display") || e.data("label")) : (e.hasClass("labelled") ? e.data("tag") : "");
    if (!label || e.style("display") === "none" || e.style("visibility") === "hidden" ||
        Number(e.style("text-opacity")) === 0 || Number(e.style("opacity")) === 0) return;
    const bb = e.boundingBox({ includeNodes: false, includeEdges: false, includeLabels: true });
    if (bb.w === 0 || bb.x2 < ext.x1 || bb.x1 > ext.x2 || bb.y2 < ext.y1 || bb.y1 > ext.y2) return;
    out.push({ id: e.id(), text: label, px: parseFloat(e.style("font-size")) * z, box: [bb.x1, bb.y1, bb.x2, bb.y2] });
  });
  return out;
}"""

# SVG or HTML text: every <text> (or element with data-label) inside ROOT, sized by its
# computed font size times the SVG's scale on screen.
_DOM_LABELS = """(root) => {
  const view = { w: window.innerWidth, h: window.innerHeight };
  const out = [];
  for (const t of document.querySelectorAll(`${root} text, ${root} [data-label]`)) {
    if (!t.textContent.trim()) continue;
    const r = t.getBoundingClientRect();
    if (r.width === 0 || r.bottom < 0 || r.top > view.h || r.right < 0 || r.left > view.w) continue;
    const cs = getComputedStyle(t);
    if (cs.visibility === "hidden" || cs.display === "none" || Number(cs.opacity) === 0) continue;
    const svg = t.ownerSVGElement;
    const scale = svg && svg.getScreenCTM() ? Math.abs(svg.getScreenCTM().a) : 1;
    out.push({ id: t.textContent.slice(0, 60), text: t.textContent, px: parseFloat(cs.fontSize) * scale,
      box: [r.left, r.top, r.right, r.bottom] });
  }
  return out;
}"""


def _overlaps(labels: list[dict[str, Any]]) -> list[tuple[str, str]]:
    hits = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = a["box"], b["box"]
            if ax1 < bx2 - 1 and bx1 < ax2 - 1 and ay1 < by2 - 1 and by1 < ay2 - 1:
                hits.append((a["id"], b["id"]))
    return hits


def check_labels(labels: list[dict[str, Any]], *, at_least: int = 1) -> None:
    """No visible label below MIN_FONT_PX, no two visible labels overlapping."""
    assert len(labels) >= at_least, f"only {len(labels)} labels visible"
    small = [(x["id"], round(x["px"], 2)) for x in labels if x["px"] < MIN_FONT_PX - 1e-6]
    assert not small, f"labels below {MIN_FONT_PX}px: {small[:10]}"
    overlaps = _overlaps(labels)
    assert not overlaps, f"overlapping labels: {overlaps[:10]}"


def graph_labels(page: Page) -> list[dict[str, Any]]:
    return page.evaluate(_CY_LABELS)


def dom_labels(page: Page, root: str) -> list[dict[str, Any]]:
    return page.evaluate(_DOM_LABELS, root)
