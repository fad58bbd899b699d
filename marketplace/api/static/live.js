// Live updates for the dashboard: the relayer's /ui/events stream says when its index moved;
// the page then fetches itself again and swaps in the new <main>, keeping scroll and focus.
"use strict";
(function () {
  const main = document.getElementById("live");
  const dot = document.getElementById("live-state");
  if (!main || !window.EventSource) return;
  let busy = false;
  let again = false;

  function editing() {
    const el = document.activeElement;
    return el && main.contains(el) && (el.tagName === "INPUT" || el.tagName === "SELECT");
  }

  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("live");
      if (!fresh || editing()) return;
      main.innerHTML = fresh.innerHTML;
      main.dataset.version = fresh.dataset.version;
      const head = page.getElementById("head");
      const ours = document.getElementById("head");
      if (head && ours) {
        ours.innerHTML = head.innerHTML;
      }
      document.dispatchEvent(new CustomEvent("dashboard:refreshed"));
    } catch (err) {
      // The next change notice tries again.
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }

  const source = new EventSource("/ui/events");
  source.addEventListener("open", function () {
    const d = document.getElementById("live-state");
    if (d) d.className = "dot on";
  });
  source.addEventListener("error", function () {
    const d = document.getElementById("live-state");
    if (d) d.className = "dot off";
  });
  source.addEventListener("change", function (event) {
    if (event.data !== main.dataset.version) refresh();
  });
  if (dot) dot.className = "dot";
})();
