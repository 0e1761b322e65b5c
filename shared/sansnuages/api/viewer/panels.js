// The viewer's panels, drawn in the browser with uPlot from the API's JSON:
// - the stability plot of a point (click the map, or ?lon=&lat= in the URL): reflectance per
//   band over the year up to the month shown, clear dates filled and cloudy dates hollow, AOT below;
// - the production counter (the Production button, or ?panel=production): products acquired a
//   day per platform, stacked, over 90 % cloud left out, and each month's average of daily counts;
// - on a snow season (?month=snow-2018), the season plot of the point instead of its time series:
//   the snow-covered share per day, gap-filled, and as Sentinel-2 and Landsat-8 saw it.
(function () {
  "use strict";
  const BAND_COLOURS = { B2: "#1f5fd6", B3: "#2a9d3a", B4: "#d62a2a", B5: "#b5524c", B6: "#9c4f8f",
    B7: "#7b4fb0", B8: "#6b3d1f", B8A: "#a8662e", B11: "#6f6f6f", B12: "#2b2b2b" };
  const PLATFORM_COLOURS = { "sentinel-2a": "#3b7dd8", "sentinel-2b": "#62b0f0",
    "sentinel-2c": "#1b4f9c", "landsat-8": "#e08a2c" };
  const params = new URLSearchParams(location.search);
  // the month the panels stop at: a month's own; for a season, the viewer sends its last month
  let month = /^\d{4}-\d{2}$/.test(params.get("month") || "") ? params.get("month") : null;
  let point = null;
  let season = /^snow-\d{4}$/.test(params.get("month") || "") ? params.get("month") : null;
  const charts = {};

  function width() { return Math.max(300, document.getElementById("panels").clientWidth - 40); }
  function lastDay(m) { const [y, mo] = m.split("-").map(Number); return new Date(Date.UTC(y, mo, 0)); }
  function iso(d) { return d.toISOString().slice(0, 10); }
  function monthOrToday() { return month || new Date().toISOString().slice(0, 7); }

  function replaceChart(name, opts, data, target) {
    if (charts[name]) charts[name].destroy();
    target.textContent = "";
    charts[name] = new uPlot(opts, data, target);
  }

  function setState(id, state, text) {
    const panel = document.getElementById(id);
    panel.dataset.state = state;
    const status = panel.querySelector(".status");
    status.textContent = text || "";
  }

  function apiRoot() { return new URL("../", location.href).href; }

  // --- the stability plot ---------------------------------------------------------------

  function seriesData(doc) {
    const times = doc.observations.map((o) => Date.parse(o.datetime) / 1000);
    const data = [times];
    const series = [{}];
    for (const band of doc.bands) {
      const colour = BAND_COLOURS[band] || "#000";
      for (const clear of [true, false]) {
        data.push(doc.observations.map((o) => (o.clear === clear ? o.reflectance[band] : null)));
        series.push({
          label: clear ? band : `${band} cloudy`, stroke: colour, width: 0,
          paths: () => null, spanGaps: false,
          points: { show: true, size: 7, width: 1.5, stroke: colour, fill: clear ? colour : "#f7f7f5" },
        });
      }
    }
    return { data, series, times };
  }

  function drawSeries(doc) {
    const { data, series, times } = seriesData(doc);
    const title = document.getElementById("series-title");
    title.textContent = `Time series at ${point.lat.toFixed(4)}, ${point.lng.toFixed(4)}: ` +
      `${doc.count} observation(s)`;
    const opts = { width: width(), height: 200, series, legend: { show: true },
      scales: { x: { time: true } }, axes: [{}, { label: "reflectance", size: 55 }] };
    replaceChart("series", opts, data, document.getElementById("series-chart"));
    const aot = [times, doc.observations.map((o) => (o.clear ? o.aot : null)),
      doc.observations.map((o) => (o.clear ? null : o.aot))];
    const aotSeries = [{},
      { label: "AOT", stroke: "#555", width: 0, paths: () => null, points: { show: true, size: 6, fill: "#555" } },
      { label: "AOT cloudy", stroke: "#555", width: 0, paths: () => null, points: { show: true, size: 6, fill: "#f7f7f5" } }];
    const aotOpts = { width: width(), height: 90, series: aotSeries, legend: { show: false },
      scales: { x: { time: true } }, axes: [{}, { label: "AOT", size: 55 }] };
    replaceChart("aot", aotOpts, aot, document.getElementById("aot-chart"));
    const panel = document.getElementById("series-panel");
    panel.dataset.observations = String(doc.count);
    panel.dataset.clear = String(doc.observations.filter((o) => o.clear).length);
    setState("series-panel", "drawn", doc.count ? "" : "no product over this point in that year");
  }

  function loadSeries() {
    if (!point) return;
    document.getElementById("series-panel").hidden = false;
    setState("series-panel", "loading", "loading…");
    const end = lastDay(monthOrToday());
    const start = new Date(end.getTime() - 364 * 86400000);
    const query = new URLSearchParams({ lon: point.lng.toFixed(6), lat: point.lat.toFixed(6),
      datetime: `${iso(start)}/${iso(end)}` });
    return fetch(`${apiRoot()}timeseries?${query}`).then((r) => r.json().then((doc) => {
      if (!r.ok) throw new Error(doc.description || `HTTP ${r.status}`);
      drawSeries(doc);
    })).catch((e) => setState("series-panel", "error", e.message));
  }

  // --- the season plot ------------------------------------------------------------------

  function seasonData(doc) {
    const dates = doc.daily.map((d) => d.date);
    const seen = { "sentinel-2": {}, "landsat-8": {} };
    for (const o of doc.observations) {
      if (o.snow === null) continue;
      for (const sensor of Object.keys(seen)) {
        if (o.platforms.some((p) => p.startsWith(sensor))) seen[sensor][o.date] = o.snow;
      }
    }
    const times = dates.map((d) => Date.parse(`${d}T12:00:00Z`) / 1000);
    const data = [times, doc.daily.map((d) => d.snow)];
    for (const sensor of Object.keys(seen)) data.push(dates.map((d) => (d in seen[sensor] ? seen[sensor][d] : null)));
    const counts = Object.fromEntries(Object.entries(seen).map(([k, v]) => [k, Object.keys(v).filter((d) => d >= doc.start && d <= doc.end).length]));
    return { data, counts };
  }

  function drawSeason(doc) {
    const { data, counts } = seasonData(doc);
    const dot = (colour) => ({ stroke: colour, width: 0, paths: () => null,
      points: { show: true, size: 8, width: 1, stroke: "#222", fill: colour } });
    const series = [{}, { label: "gap-filled", stroke: "#1f5fd6", width: 2, points: { show: false } },
      { label: "Sentinel-2", ...dot(PLATFORM_COLOURS["sentinel-2a"]) },
      { label: "Landsat-8", ...dot(PLATFORM_COLOURS["landsat-8"]) }];
    const opts = { width: width(), height: 220, series, legend: { show: true },
      scales: { x: { time: true }, y: { range: [-0.02, 1.02] } },
      axes: [{}, { label: "snow-covered share", size: 55 }] };
    replaceChart("season", opts, data, document.getElementById("season-chart"));
    document.getElementById("season-title").textContent =
      `Snow season ${doc.season} at ${point.lat.toFixed(4)}, ${point.lng.toFixed(4)} (tile ${doc.tile})`;
    const panel = document.getElementById("season-panel");
    panel.dataset.sentinel2 = String(counts["sentinel-2"]);
    panel.dataset.landsat8 = String(counts["landsat-8"]);
    panel.dataset.snowDays = String(doc.daily.filter((d) => d.snow >= 0.5).length);
    setState("season-panel", "drawn");
  }

  function loadSeason() {
    if (!point || !season) return;
    document.getElementById("series-panel").hidden = true;
    document.getElementById("season-panel").hidden = false;
    setState("season-panel", "loading", "loading…");
    const query = new URLSearchParams({ season: season.slice(5), lon: point.lng.toFixed(6),
      lat: point.lat.toFixed(6) });
    return fetch(`${apiRoot()}seasons/curve?${query}`).then((r) => r.json().then((doc) => {
      if (!r.ok) throw new Error(doc.description || `HTTP ${r.status}`);
      drawSeason(doc);
    })).catch((e) => setState("season-panel", "error", e.message));
  }

  function loadPoint() {
    if (season) return loadSeason();
    document.getElementById("season-panel").hidden = true;
    return loadSeries();
  }

  // --- the production counter -----------------------------------------------------------

  function drawProduction(doc) {
    const days = doc.days.map((d) => Date.parse(`${d.date}T12:00:00Z`) / 1000);
    const platforms = [...new Set(doc.days.flatMap((d) => Object.keys(d.acquired)))].sort();
    // Stacked bars: cumulative sums, the tallest drawn first so that each shows its own part.
    const cumulative = [];
    let running = doc.days.map(() => 0);
    for (const p of platforms) {
      running = running.map((v, i) => v + (doc.days[i].acquired[p] || 0));
      cumulative.push(running);
    }
    const data = [days];
    const series = [{}];
    const bars = uPlot.paths.bars({ size: [0.85, 40] });
    for (let i = platforms.length - 1; i >= 0; i--) {
      data.push(cumulative[i]);
      const colour = PLATFORM_COLOURS[platforms[i]] || "#888";
      series.push({ label: platforms[i], stroke: colour, fill: colour, paths: bars, points: { show: false } });
    }
    const averages = {};
    for (const m of doc.monthly) averages[m.month] = m.daily_average;
    data.push(doc.days.map((d) => averages[d.date.slice(0, 7)]));
    series.push({ label: "monthly average", stroke: "#000", width: 2, points: { show: false } });
    const opts = { width: width(), height: 200, series, scales: { x: { time: true } },
      axes: [{}, { label: "products a day", size: 55 }] };
    replaceChart("production", opts, data, document.getElementById("production-chart"));
    document.getElementById("production-title").textContent =
      `Products a day, ${doc.from} to ${doc.to}`;
    const panel = document.getElementById("production-panel");
    panel.dataset.acquired = String(doc.monthly.reduce((n, m) => n + m.acquired, 0));
    setState("production-panel", "drawn");
  }

  function loadProduction() {
    const panel = document.getElementById("production-panel");
    if (panel.hidden) return;
    setState("production-panel", "loading", "loading…");
    const end = lastDay(monthOrToday());
    const start = new Date(Date.UTC(end.getUTCFullYear(), end.getUTCMonth() - 2, 1));
    const query = new URLSearchParams({ from: iso(start), to: iso(end) });
    return fetch(`${apiRoot()}stats/production?${query}`).then((r) => r.json().then((doc) => {
      if (!r.ok) throw new Error(doc.description || `HTTP ${r.status}`);
      drawProduction(doc);
    })).catch((e) => setState("production-panel", "error", e.message));
  }

  // --- wiring ---------------------------------------------------------------------------

  for (const button of document.querySelectorAll("[data-close]")) {
    button.addEventListener("click", () => { document.getElementById(button.dataset.close).hidden = true; });
  }
  document.getElementById("production-toggle").addEventListener("click", () => {
    const panel = document.getElementById("production-panel");
    panel.hidden = !panel.hidden;
    loadProduction();
  });
  let marker = null;
  function choose(latlng) {
    point = latlng;
    const map = window.viewerMap;
    if (map) {
      if (marker) marker.setLatLng(latlng); else marker = L.circleMarker(latlng, { radius: 6, color: "#ffd23f" }).addTo(map);
    }
    const query = new URLSearchParams(location.search);
    query.set("lon", latlng.lng.toFixed(6));
    query.set("lat", latlng.lat.toFixed(6));
    history.replaceState(null, "", `?${query}`);
    loadPoint();
  }
  if (window.viewerMap) window.viewerMap.on("click", (e) => choose(e.latlng));
  document.addEventListener("viewer:month", (e) => { month = e.detail; loadProduction(); });
  document.addEventListener("viewer:period", (e) => {
    season = /^snow-\d{4}$/.test(e.detail) ? e.detail : null;
    loadPoint();
  });
  if (params.get("panel") === "production") {
    document.getElementById("production-panel").hidden = false;
    loadProduction();
  }
  const lon = parseFloat(params.get("lon"));
  const lat = parseFloat(params.get("lat"));
  if (Number.isFinite(lon) && Number.isFinite(lat)) choose({ lng: lon, lat: lat });
})();
