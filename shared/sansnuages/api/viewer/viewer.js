// The mosaic viewer: one area, one product and one month (or snow season) at a time, the border
// on top, no basemap. Products: the true colour of the monthly syntheses, and the snow cover
// duration of a season, drawn in its colour map with the legend the API serves.
// Every URL is relative to the page (/viewer/<area>), so the page works under any stage prefix.
(function () {
  "use strict";
  const TRUE_COLOUR = "true-colour";
  const area = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
  const params = new URLSearchParams(location.search);
  const title = document.getElementById("title");
  const productSelect = document.getElementById("product");
  const select = document.getElementById("month");
  const periodLabel = document.getElementById("period-label");
  const status = document.getElementById("status");
  const map = L.map("map", { zoomSnap: 0.25, attributionControl: false });
  window.viewerMap = map;  // the panels (panels.js) listen to its clicks
  let layer = null;
  let shown = null;

  function fail(message) {
    status.textContent = message;
    document.body.dataset.state = "error";
  }

  function entriesOf(doc, product) {
    return doc.months.filter((m) => m.product === product);
  }

  function showLegend(legend, productTitle) {
    const box = document.getElementById("legend");
    if (!legend) {
      box.hidden = true;
      return;
    }
    const colours = legend.stops.map((s, i) => `${s.colour} ${(100 * i) / (legend.stops.length - 1)}%`);
    document.getElementById("legend-title").textContent = `${productTitle} (${legend.unit})`;
    document.getElementById("legend-bar").style.background = `linear-gradient(to right, ${colours.join(", ")})`;
    const list = document.getElementById("legend-stops");
    list.textContent = "";
    for (const stop of legend.stops) {
      const item = document.createElement("li");
      item.dataset.value = String(stop.value);
      item.dataset.colour = stop.colour;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = stop.colour;
      item.append(swatch, String(Math.round(stop.value)));
      list.append(item);
    }
    box.dataset.colourMap = legend.name;
    box.hidden = false;
  }

  function fillPeriods(doc, product) {
    select.textContent = "";
    const entries = entriesOf(doc, product);
    for (const entry of entries) select.add(new Option(entry.month, entry.month));
    select.disabled = entries.length < 2;
    periodLabel.textContent = product === TRUE_COLOUR ? "Month" : "Season";
    return entries;
  }

  function show(doc, entry) {
    const product = doc.products.find((p) => p.product === entry.product) || { title: entry.product };
    shown = entry;
    title.textContent = `${doc.name} — ${entry.month}`;
    document.body.dataset.state = "loading";
    document.body.dataset.product = entry.product;
    showLegend(entry.legend, product.title);
    const query = new URLSearchParams(location.search);
    query.set("month", entry.month);
    query.set("product", entry.product);
    history.replaceState(null, "", `?${query}`);
    document.dispatchEvent(new CustomEvent("viewer:month", { detail: entry.until || entry.month }));
    document.dispatchEvent(new CustomEvent("viewer:period", { detail: entry.month }));
    return fetch(entry.tilejson).then((r) => {
      if (!r.ok) throw new Error(`TileJSON: HTTP ${r.status}`);
      return r.json();
    }).then((tj) => {
      const next = L.tileLayer(tj.tiles[0], {
        minZoom: 0, maxNativeZoom: tj.maxzoom, maxZoom: tj.maxzoom + 2, tileSize: 256,
        bounds: [[tj.bounds[1], tj.bounds[0]], [tj.bounds[3], tj.bounds[2]]],
      });
      next.on("load", () => { if (shown === entry) document.body.dataset.state = "drawn"; });
      next.addTo(map);
      if (layer) map.removeLayer(layer);
      layer = next;
      layer.bringToBack();
    });
  }

  // The entry of `product` closest to the period shown: the same period, else the one that
  // ends in the same month, else the latest.
  function closest(doc, product, wanted) {
    const entries = entriesOf(doc, product);
    return entries.find((m) => m.month === wanted) ||
      (shown && entries.find((m) => m.until === shown.until)) ||
      entries[entries.length - 1];
  }

  function initial(doc) {
    const wanted = params.get("month");
    const byMonth = doc.months.filter((m) => m.month === wanted);
    const asked = params.get("product") || (byMonth.length ? byMonth[0].product : null);
    const product = doc.products.find((p) => p.product === asked) ||
      doc.products.find((p) => p.product === TRUE_COLOUR) || doc.products[0];
    return closest(doc, product.product, wanted);
  }

  fetch(`../map/areas/${encodeURIComponent(area)}`).then((r) => {
    if (!r.ok) throw new Error(`no mosaic of ${area} (HTTP ${r.status})`);
    return r.json();
  }).then((doc) => {
    for (const product of doc.products) productSelect.add(new Option(product.title, product.product));
    productSelect.disabled = doc.products.length < 2;
    const entry = initial(doc);
    productSelect.value = entry.product;
    fillPeriods(doc, entry.product);
    select.value = entry.month;
    productSelect.addEventListener("change", () => {
      const next = closest(doc, productSelect.value, null);
      fillPeriods(doc, next.product);
      select.value = next.month;
      show(doc, next).catch((e) => fail(e.message));
    });
    select.addEventListener("change", () => {
      const next = entriesOf(doc, productSelect.value).find((m) => m.month === select.value);
      show(doc, next).catch((e) => fail(e.message));
    });
    const border = L.geoJSON(doc.border, {
      style: { color: "#ffd23f", weight: 2, fill: false },
    }).addTo(map);
    map.fitBounds(border.getBounds());
    return show(doc, entry);
  }).catch((e) => fail(e.message));
})();
