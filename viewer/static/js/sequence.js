/* Sequence page: draws the session's sequence diagram from the page data (see seqdraw.js). */
"use strict";

(function () {
  const data = FA.pageData();
  FA.drawSequence(document.getElementById("seq-canvas"), data.model);
  FA.sequenceReady = true;
})();
