// wxpush console: the only script. Pages work without it; it reloads the
// overview every data-refresh seconds while the tab is visible and the
// operator is not typing.
(function () {
  "use strict";
  var every = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (!(every > 0)) {
    return;
  }
  window.setInterval(function () {
    var el = document.activeElement;
    var typing = el && (el.tagName === "INPUT" || el.tagName === "SELECT" || el.tagName === "TEXTAREA");
    if (document.visibilityState === "visible" && !typing) {
      window.location.reload();
    }
  }, every * 1000);
})();
