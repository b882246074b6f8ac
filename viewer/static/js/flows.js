/* Flows page: draws the entry's flow tree from the page data (see flowdraw.js). */
"use strict";

(function () {
  const data = FA.pageData();
  const canvas = document.getElementById("flow-canvas");
  if (canvas && data.flow) FA.drawFlow(canvas, data.flow);
  FA.flowReady = true;
})();
