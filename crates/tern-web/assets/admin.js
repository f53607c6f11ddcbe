// Tern admin console's page script. Every page works without it; it only keeps the
// migrations table current while a pass runs or waits: every few seconds it fetches
// the same page and swaps in the new table, unless the administrator is using a control
// in it (a half-chosen select must not be replaced under their hand).
"use strict";

(function () {
  const live = document.getElementById("migrations-live");
  if (!live) return;
  const seconds = Number(live.dataset.refresh || 0);
  if (!(seconds > 0)) return;

  async function refresh() {
    const current = document.getElementById("migrations-live");
    if (!current) return;
    if (current.contains(document.activeElement) && document.activeElement !== document.body) {
      schedule();
      return;
    }
    try {
      const response = await fetch(location.pathname + location.search, {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      });
      if (!response.ok) throw new Error(String(response.status));
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("migrations-live");
      if (!fresh) return; // logged out, or nothing left to show: the next load tells
      current.replaceWith(document.adoptNode(fresh));
      if (Number(fresh.dataset.refresh || 0) > 0) schedule();
    } catch (e) {
      // The server restarting, or the network gone: try again later, quietly.
      schedule(seconds * 4);
    }
  }

  function schedule(delay) {
    setTimeout(refresh, (delay || seconds) * 1000);
  }
  schedule();
})();
