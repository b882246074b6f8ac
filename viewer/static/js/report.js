/* The static report (flowagent report -o run.html): the map, flows and sequence diagrams
 * drawn from the data embedded in the file, with no server and no network. The ELK layout
 * worker runs from a blob made of its embedded source.
 */
"use strict";

(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  FA.report = data;

  // -- map ---------------------------------------------------------------------------------
  const source = document.getElementById("elk-worker-src").textContent;
  const elk = new ELK({ workerUrl: URL.createObjectURL(new Blob([source], { type: "text/javascript" })) });
  const cy = FA.map.create(document.getElementById("cy"));
  FA.cy = cy;
  let rankDir = "LR", run = 0;

  async function draw(level) {
    const mine = ++run;
    FA.graphReady = false;
    const v = data.views[level];
    cy.elements().remove();
    cy.add(FA.map.elements(v));
    document.getElementById("map-counts").textContent =
      `${FA.number(v.nodes.length)} nodes, ${FA.number(v.edges.length)} edges · ${FA.number(v.total_functions)} functions`;
    for (const dir of ["LR", "TB"]) {
      rankDir = dir;
      try {
        FA.map.applyPositions(cy, await elk.layout(FA.map.elkGraph(cy, rankDir)));
      } catch (error) {
        cy.layout({ name: "breadthfirst", directed: true }).run();
      }
      if (mine !== run) return;
      if (FA.map.fitZoom(cy) >= 1) break;
    }
    FA.map.readableFit(cy, rankDir);
    overlay();
    FA.graphReady = true;
  }

  function overlay() {
    const on = document.getElementById("overlay-errors").checked;
    cy.elements().removeClass("ov-err ov-dim");
    if (!on) return;
    cy.edges().addClass("ov-dim");
    cy.edges().filter((e) => e.data("errors") > 0).removeClass("ov-dim").addClass("ov-err");
  }

  cy.on("mouseover", "node[w]", (event) => FA.map.showPaths(cy, event.target));
  cy.on("mouseout", "node[w]", () => cy.elements().removeClass("faded path"));
  for (const input of document.querySelectorAll("#levels input[name=level]")) {
    input.addEventListener("change", () => draw(input.value));
  }
  document.getElementById("overlay-errors").addEventListener("change", overlay);
  draw(data.auto_level);

  // -- flows ---------------------------------------------------------------------------------
  const entry = document.getElementById("flow-entry");
  function flow() {
    const f = data.flows[Number(entry.value) || 0];
    document.getElementById("flow-facts").textContent = f
      ? `${FA.number(f.sessions)} sessions · ${FA.number(f.failed)} failed · p50 ${FA.duration(f.duration.p50_ns)} · p95 ${FA.duration(f.duration.p95_ns)} · p99 ${FA.duration(f.duration.p99_ns)} · tree from ${FA.number(f.sampled)} kept sessions`
      : "No finished session.";
    FA.drawFlow(document.getElementById("flow-canvas"), f);
  }
  entry.addEventListener("change", flow);
  flow();

  // -- worst sessions --------------------------------------------------------------------------
  function sequence(index) {
    const s = data.sessions[index];
    const facts = document.getElementById("seq-facts");
    facts.textContent = s ? `${s.session_id}: ${s.sequence.calls} calls${s.sequence.left_out ? `, ${s.sequence.left_out} not drawn` : ""}` : "No session.";
    FA.drawSequence(document.getElementById("seq-canvas"), s ? s.sequence : null);
  }
  for (const input of document.querySelectorAll("#worst-table input[name=worst]")) {
    input.addEventListener("change", () => sequence(Number(input.value)));
  }
  sequence(0);
  FA.reportReady = true;
})();
