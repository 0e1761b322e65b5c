// The mosaic viewer: one area, one month at a time, the border on top, no basemap.
// Every URL is relative to the page (/viewer/<area>), so the page works under any stage prefix.
(function () {
  "use strict";
  const area = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
  const wanted = new URLSearchParams(location.search).get("month");
  const title = document.getElementById("title");
  const select = document.getElementById("month");
  const status = document.getElementById("status");
  const map = L.map("map", { zoomSnap: 0.25, attributionControl: false });
  window.viewerMap = map;  // the panels (panels.js) listen to its clicks
  let layer = null;

  function fail(message) {
    status.textContent = message;
    document.body.dataset.state = "error";
  }

  function show(doc, entry) {
    title.textContent = `${doc.name} — ${entry.month}`;
    document.body.dataset.state = "loading";
    const query = new URLSearchParams(location.search);
    query.set("month", entry.month);
    history.replaceState(null, "", `?${query}`);
    document.dispatchEvent(new CustomEvent("viewer:month", { detail: entry.month }));
    return fetch(entry.tilejson).then((r) => {
      if (!r.ok) throw new Error(`TileJSON: HTTP ${r.status}`);
      return r.json();
    }).then((tj) => {
      const next = L.tileLayer(tj.tiles[0], {
        minZoom: 0, maxNativeZoom: tj.maxzoom, maxZoom: tj.maxzoom + 2, tileSize: 256,
        bounds: [[tj.bounds[1], tj.bounds[0]], [tj.bounds[3], tj.bounds[2]]],
      });
      next.on("load", () => { document.body.dataset.state = "drawn"; });
      next.addTo(map);
      if (layer) map.removeLayer(layer);
      layer = next;
      layer.bringToBack();
    });
  }

  fetch(`../map/areas/${encodeURIComponent(area)}`).then((r) => {
    if (!r.ok) throw new Error(`no mosaic of ${area} (HTTP ${r.status})`);
    return r.json();
  }).then((doc) => {
    for (const entry of doc.months) {
      select.add(new Option(entry.month, entry.month));
    }
    const entry = doc.months.find((m) => m.month === wanted) || doc.months[doc.months.length - 1];
    select.value = entry.month;
    select.disabled = doc.months.length < 2;
    select.addEventListener("change", () => {
      show(doc, doc.months.find((m) => m.month === select.value)).catch((e) => fail(e.message));
    });
    const border = L.geoJSON(doc.border, {
      style: { color: "#ffd23f", weight: 2, fill: false },
    }).addTo(map);
    map.fitBounds(border.getBounds());
    return show(doc, entry);
  }).catch((e) => fail(e.message));
})();
