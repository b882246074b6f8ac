// Parse Mermaid diagrams with the real Mermaid parser (the one the viewer's mermaid.js uses).
//
// Usage:  node check.mjs FILE...         each file holds one diagram
//         node check.mjs < diagrams.json a JSON array of diagram strings on stdin
// Prints one JSON line per diagram:
//   {"index", "ok": true, "type", "nodes": {id: text}, "edges": [...], "subgraphs": [...]}
//   {"index", "ok": false, "error"}
// For flowcharts, texts are decoded as the browser would show them (entity codes resolved,
// <br> as "\n"), so a test can check that a hostile name comes out exactly as recorded.
// For sequence diagrams: {"actors": {id: text}, "boxes": [...], "messages": [...]}.
// Exit status: 0 all parsed, 1 at least one parse error, 2 bad usage or input.
//
// mermaid.parse() needs a DOM only for DOMPurify, which it sets up at import time, so a
// jsdom window is installed as the global window before mermaid is imported.
import { readFileSync } from 'node:fs';
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!DOCTYPE html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
globalThis.Option = dom.window.Option; // sequence diagrams check box colours with new Option()
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false, securityLevel: 'strict' });

// Mermaid keeps "#name;" / "#123;" codes as placeholders until it draws the label, then turns
// them into HTML entities and lets the browser decode them; do the same here.
function shown(text) {
  if (typeof text !== 'string') return text;
  const html = text
    .replace(/ﬂ°°(\d+)¶ß/g, '&#$1;')
    .replace(/ﬂ°(\w+)¶ß/g, '&$1;');
  return html
    .split(/<br\s*\/?>/i)
    .map((part) => {
      const div = dom.window.document.createElement('div');
      div.innerHTML = part;
      return div.textContent;
    })
    .join('\n');
}

function describe(diagram) {
  const db = diagram.db;
  if (typeof db.getActors === 'function') {
    // sequenceDiagram: participants (id → shown text), boxes, and messages in order
    const actors = {};
    for (const [id, actor] of db.getActors()) actors[id] = shown(actor.description);
    const boxes = (db.getBoxes ? db.getBoxes() : []).map((box) => ({ name: shown(box.name), actors: box.actorKeys }));
    const messages = db.getMessages().filter((m) => m.from && m.to).map((m) => ({
      from: m.from, to: m.to, text: shown(m.message), type: m.type, activate: m.activate ?? null,
    }));
    return { actors, boxes, messages };
  }
  if (typeof db.getVertices !== 'function') return {};
  const nodes = {};
  for (const [id, vertex] of db.getVertices()) nodes[id] = shown(vertex.text);
  const edges = db.getEdges().map((edge) => ({
    start: edge.start, end: edge.end, text: shown(edge.text), stroke: edge.stroke,
    style: edge.style ?? [],
  }));
  const subgraphs = db.getSubGraphs().map((sub) => ({
    id: sub.id, title: shown(sub.title), nodes: sub.nodes,
  }));
  return { nodes, edges, subgraphs };
}

let diagrams;
try {
  const files = process.argv.slice(2);
  diagrams = files.length
    ? files.map((file) => readFileSync(file, 'utf8'))
    : JSON.parse(readFileSync(0, 'utf8'));
  if (!Array.isArray(diagrams) || !diagrams.every((d) => typeof d === 'string')) {
    throw new Error('stdin must be a JSON array of strings');
  }
} catch (error) {
  console.error(`mermaid_check: ${error.message}`);
  process.exit(2);
}

let failed = 0;
for (const [index, text] of diagrams.entries()) {
  try {
    const result = await mermaid.parse(text);
    const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
    console.log(JSON.stringify({ index, ok: true, type: result.diagramType, ...describe(diagram) }));
  } catch (error) {
    failed += 1;
    console.log(JSON.stringify({ index, ok: false, error: String(error.message ?? error) }));
  }
}
process.exit(failed ? 1 : 0);
