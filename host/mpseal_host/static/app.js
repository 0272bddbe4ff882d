// mpseal live page: one request to /api/dashboard per refresh (docs/api.md)
// gives devices with status, health and series over the chosen range; the
// page draws a sortable fleet table and one card per device with a uPlot
// time chart per numeric field (hover shows the values). uPlot is loaded
// from the receiver (never a CDN); without it the page works and says so.
// Device data is only ever put in the DOM as text, and kept in Maps, never
// as keys of plain objects (a field may be named `__proto__` or `constructor`).
"use strict";

const REFRESH_MS = 5000;
const RANGES = ["1h", "24h", "7d"];
const RANGE_S = { "1h": 3600, "24h": 86400, "7d": 604800 };
const STATUS_ORDER = new Map([["ok", 0], ["late", 1], ["silent", 2], ["never", 3]]);
const MAX_TEXT = 120;
const TABLE_FROM = 13; // devices: from this many on, the table is the first view

const view = { range: "1h", mode: null, sortKey: "name", sortDir: 1, last: null, uplot: "unknown" };
const cards = new Map(); // device name -> {card, charts: Map(field -> {box, plot})}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  if (attrs) for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function clip(text) {
  return text.length > MAX_TEXT ? text.slice(0, MAX_TEXT) + "\u2026 (" + text.length + " characters)" : text;
}

function fmt(v) {
  if (typeof v === "number") return Number.isFinite(v) ? String(Math.round(v * 1000) / 1000) : String(v);
  if (typeof v === "string") return clip(v);
  if (v === null || v === undefined) return "\u2013";
  let text;
  try { text = JSON.stringify(v); } catch (err) { text = String(err); }
  return clip(String(text));
}

function ago(t, now) {
  if (typeof t !== "number") return "never";
  const s = Math.max(0, now - t);
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 129600) return Math.round(s / 3600) + " h ago";
  return new Date(t * 1000).toLocaleString();
}

function duration(s) {
  if (typeof s !== "number") return "\u2013";
  if (s < 120) return Math.round(s) + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return Math.round(s / 3600) + " h";
}

function plural(n, word) {
  return n + " " + word + (n === 1 ? "" : "s");
}

function units(data) {
  return new Map(Object.entries(data.units || {}));
}

// --- uPlot, served by the receiver at data.uplot -----------------------------

function loadUplot(base) {
  if (!base) return Promise.resolve(false);
  return new Promise((resolve) => {
    const css = el("link", { rel: "stylesheet", href: base + "uPlot.min.css" });
    document.head.appendChild(css);
    const script = el("script", { src: base + "uPlot.iife.min.js" });
    script.onload = () => resolve(typeof window.uPlot === "function");
    script.onerror = () => resolve(false);
    document.head.appendChild(script);
  });
}

function chartsNote() {
  const note = document.getElementById("charts-note");
  if (view.uplot === false) note.textContent = "charts unavailable: uPlot is not installed on the receiver (run 'make'); values are shown without charts";
  else note.textContent = "";
  document.body.dataset.charts = view.uplot === true ? "uplot" : "none";
}

function chartWidth(box) {
  return Math.max(200, (box.parentElement && box.parentElement.clientWidth) || 300);
}

function drawChart(entry, field, unit, t, ys, from, to) {
  const data = [t, ys];
  if (!entry.plot) {
    entry.plot = new window.uPlot({
      width: chartWidth(entry.box), height: 110,
      scales: { x: { time: true } },
      series: [{}, { label: field + (unit ? " (" + unit + ")" : ""), stroke: "#2f6fde", width: 1.5,
                     points: { size: 5 }, spanGaps: false,
                     value: (u, v) => (v === null || v === undefined ? "\u2013" : fmt(v) + (unit ? " " + unit : "")) }],
      axes: [{ size: 30 }, { size: 48 }],
      legend: { live: true },
      // uPlot draws axes on a canvas: the x tick labels it drew are also put
      // on the element (for screen readers' title and for the page test).
      hooks: { draw: [(u) => { entry.box.dataset.xTicks = (u.axes[0]._values || []).join(" | "); }] },
    }, data, entry.box);
  } else {
    entry.plot.setData(data, false);
  }
  entry.plot.setScale("x", { min: from, max: to });
  entry.box.dataset.points = String(t.length);
  entry.box.dataset.xSpan = String(Math.round(to - from));
}

// --- cards -------------------------------------------------------------------

function badge(text, cls) {
  return el("span", { class: "badge " + cls, "data-badge": cls }, text);
}

function cardFor(device) {
  let entry = cards.get(device.name);
  if (!entry) {
    const card = el("article", { class: "device", "data-device": device.name });
    for (const part of ["h2", "p.meta", "div.values", "div.charts", "p.counters"]) {
      const [tag, cls] = part.split(".");
      card.appendChild(el(tag, cls ? { class: cls } : {}));
    }
    entry = { card, charts: new Map() };
    cards.set(device.name, entry);
  }
  return entry;
}

function fillCard(entry, device, data) {
  const { card } = entry;
  const now = data.now;
  const unitOf = units(data);
  card.dataset.status = device.status;
  const title = card.querySelector("h2");
  title.replaceChildren(document.createTextNode(device.name), badge(device.status, device.status));
  if (device.synthetic) title.appendChild(badge("synthetic", "synthetic"));
  const epoch = device.pending_epoch === null ? device.epoch : device.epoch + " \u2192 " + device.pending_epoch;
  const health = device.health || {};
  const parts = ["id " + device.id, "key epoch " + epoch, "last seen " + ago(device.last_seen, now) +
    (device.last_transport ? " via " + device.last_transport : ""), "seq " + device.last_seq,
    "every ~" + duration(device.interval_s) + " (" + device.interval_source + ")"];
  if (health.signal !== null && health.signal !== undefined) parts.push("signal " + fmt(health.signal) + " dBm");
  if (health.version !== null && health.version !== undefined) parts.push("version " + fmt(health.version));
  const ota = device.ota || {};
  if (ota.offered !== null && ota.offered !== undefined) parts.push("update to " + ota.offered + ": " + ota.state);
  else if (ota.on_trial) parts.push("on trial");
  const latest = device.latest;
  if (latest && latest.time_source === "age") parts.push("measured " + ago(latest.measured_at, now));
  // the radio link of the latest reading, when its carrier reports one (LoRaWAN: TTN's best gateway)
  if (latest && typeof latest.rssi === "number") {
    parts.push("rssi " + fmt(latest.rssi) + " dBm" + (typeof latest.snr === "number" ? ", snr " + fmt(latest.snr) + " dB" : ""));
  }
  card.querySelector(".meta").textContent = parts.join(" \u00b7 ");

  const values = card.querySelector(".values");
  values.replaceChildren();
  const value = latest ? latest.value : undefined;
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) {
      const long = typeof v !== "number" && fmt(v).length > 24;
      const item = el("div", { class: long ? "value long" : "value", "data-field": k });
      item.appendChild(el("b", {}, fmt(v)));
      if (unitOf.has(k)) item.appendChild(el("small", {}, unitOf.get(k)));
      item.appendChild(el("span", {}, clip(k)));
      values.appendChild(item);
    }
  } else if (value !== undefined && value !== null) {
    values.appendChild(el("div", { class: "value", "data-field": "payload" }, fmt(value)));
  } else {
    values.appendChild(el("p", { class: "muted" }, "no readings yet"));
  }

  const box = card.querySelector(".charts");
  const series = device.series;
  const fields = new Map(series ? Object.entries(series.fields) : []);
  for (const [field, chart] of entry.charts) {
    if (!fields.has(field)) { if (chart.plot) chart.plot.destroy(); chart.box.remove(); entry.charts.delete(field); }
  }
  if (series && view.uplot === true) {
    const to = data.now, from = data.now - RANGE_S[data.range];
    for (const [field, ys] of fields) {
      let chart = entry.charts.get(field);
      if (!chart) {
        chart = { box: el("div", { class: "chart", "data-field": field }), plot: null };
        entry.charts.set(field, chart);
        box.appendChild(chart.box);
      }
      drawChart(chart, field, unitOf.get(field), series.t, ys, from, to);
    }
  }
  if (series && !series.t.length) {
    if (!box.querySelector(".empty")) box.appendChild(el("p", { class: "empty" }, "no readings in this range"));
  } else {
    const empty = box.querySelector(".empty");
    if (empty) empty.remove();
  }

  const counters = card.querySelector(".counters");
  counters.replaceChildren(document.createTextNode(
    "stored " + device.stored + " \u00b7 duplicates " + device.duplicates + " \u00b7 "));
  counters.appendChild(el("span", { class: device.rejected ? "bad" : "", "data-rejected": String(device.rejected) },
    "rejected " + device.rejected));
}

function showCards(data) {
  const section = document.getElementById("devices");
  const seen = new Set();
  const entries = data.devices.map((device) => { seen.add(device.name); return cardFor(device); });
  for (const [name, entry] of cards) {
    if (!seen.has(name)) { for (const c of entry.charts.values()) if (c.plot) c.plot.destroy(); cards.delete(name); }
  }
  // in the document first, so the charts get their real width
  const ordered = entries.map((entry) => entry.card);
  if (!ordered.length) ordered.push(el("p", { class: "muted" }, "no devices yet: add one with 'mpseal devices add NAME'"));
  section.replaceChildren(...ordered);
  data.devices.forEach((device, i) => fillCard(entries[i], device, data));
}

// --- fleet table ---------------------------------------------------------------

function sortValue(device, key) {
  const h = device.health || {};
  switch (key) {
    case "name": return device.name;
    case "status": return STATUS_ORDER.has(device.status) ? STATUS_ORDER.get(device.status) : 9;
    case "last_seen": return device.last_seen;
    case "battery": return typeof h.battery === "number" ? h.battery : null;
    case "signal": return typeof h.signal === "number" ? h.signal : null;
    case "version": return h.version === null || h.version === undefined ? null : String(h.version);
    case "transport": return device.last_transport;
    case "interval": return device.interval_s;
    case "stored": return device.stored;
    case "rejected": return device.rejected;
    default: return null;
  }
}

function compare(a, b) {
  const x = sortValue(a, view.sortKey), y = sortValue(b, view.sortKey);
  if (x === null || x === undefined) return (y === null || y === undefined) ? a.name.localeCompare(b.name) : 1;
  if (y === null || y === undefined) return -1;
  const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
  return order * view.sortDir || a.name.localeCompare(b.name);
}

// Battery over the shown range: last minus first reading, as an arrow.
function batteryTrend(device) {
  const column = device.series && device.series.fields ? new Map(Object.entries(device.series.fields)).get("battery") : null;
  if (!Array.isArray(column)) return "";
  const points = column.filter((v) => typeof v === "number");
  if (points.length < 2) return "";
  const change = points[points.length - 1] - points[0];
  return Math.abs(change) < 0.01 ? " \u2192" : change > 0 ? " \u2197" : " \u2198";
}

// Running version, and the offered one while it is not running confirmed
// (docs/ota.md "Status"): "1 \u2192 2 (failed)", "2 (on trial)".
function appVersion(d, h) {
  const ota = d.ota || {};
  let text = fmt(h.version);
  if (ota.offered !== null && ota.offered !== undefined && ota.state !== "current") {
    if (ota.running !== ota.offered) text += " \u2192 " + ota.offered;
    text += " (" + ota.state + ")";
  } else if (ota.on_trial) {
    text += " (on trial)";
  }
  return text;
}

function showTable(data) {
  const body = document.querySelector("#fleet-table tbody");
  const rows = data.devices.slice().sort(compare).map((d) => {
    const h = d.health || {};
    const tr = el("tr", { class: d.status, "data-device": d.name });
    const name = el("td", {}, clip(d.name));
    if (d.synthetic) name.appendChild(badge("synthetic", "synthetic"));
    tr.appendChild(name);
    tr.appendChild(el("td", { "data-col": "status" }, d.status));
    tr.appendChild(el("td", { "data-col": "last_seen" }, ago(d.last_seen, data.now)));
    tr.appendChild(el("td", { "data-col": "battery", title: "trend over the shown range" },
      typeof h.battery === "number" ? fmt(h.battery) + " V" + batteryTrend(d) : "\u2013"));
    tr.appendChild(el("td", { "data-col": "signal" }, typeof h.signal === "number" ? fmt(h.signal) + " dBm" : "\u2013"));
    tr.appendChild(el("td", { "data-col": "version", "data-update": (d.ota || {}).state || "" }, appVersion(d, h)));
    tr.appendChild(el("td", { "data-col": "transport" }, d.last_transport || "\u2013"));
    tr.appendChild(el("td", { "data-col": "interval" }, duration(d.interval_s)));
    tr.appendChild(el("td", { "data-col": "stored" }, String(d.stored)));
    tr.appendChild(el("td", { "data-col": "rejected" }, String(d.rejected)));
    return tr;
  });
  body.replaceChildren(...rows);
  for (const th of document.querySelectorAll("#fleet-table th")) {
    const active = th.dataset.sort === view.sortKey;
    th.setAttribute("aria-sort", active ? (view.sortDir > 0 ? "ascending" : "descending") : "none");
  }
}

// --- rejections, summary, controls ---------------------------------------------

function showRejections(stats) {
  const body = document.querySelector("#rejections tbody");
  const rows = [];
  for (const [device, reasons] of Object.entries(stats.rejected_by_device || {})) {
    for (const [reason, count] of Object.entries(reasons)) {
      const tr = el("tr", { "data-reason": reason });
      tr.appendChild(el("td", {}, clip(device)));
      tr.appendChild(el("td", {}, reason));
      tr.appendChild(el("td", {}, String(count)));
      rows.push(tr);
    }
  }
  body.replaceChildren(...rows);
  document.getElementById("rejections").hidden = rows.length === 0;
  document.getElementById("no-rejections").hidden = rows.length !== 0;
}

function showSummary(data) {
  const stats = data.stats;
  const counts = new Map();
  for (const d of data.devices) counts.set(d.status, (counts.get(d.status) || 0) + 1);
  const statuses = [...STATUS_ORDER.keys()].filter((s) => counts.has(s)).map((s) => counts.get(s) + " " + s);
  document.getElementById("summary").textContent =
    plural(stats.devices, "device") + (statuses.length ? " (" + statuses.join(", ") + ")" : "") + " \u00b7 " +
    plural(stats.stored, "reading") + " stored \u00b7 " + plural(stats.duplicates, "duplicate") + " \u00b7 " +
    stats.rejected + " rejected \u00b7 updated " + new Date(data.now * 1000).toLocaleTimeString();
}

function applyMode() {
  document.getElementById("fleet").hidden = view.mode !== "table";
  document.getElementById("devices").hidden = view.mode !== "cards";
  for (const b of document.querySelectorAll("#views button")) b.setAttribute("aria-pressed", String(b.dataset.view === view.mode));
  for (const b of document.querySelectorAll("#ranges button")) b.setAttribute("aria-pressed", String(b.dataset.range === view.range));
  document.body.dataset.view = view.mode || "";
  document.body.dataset.range = view.range;
}

function render() {
  const data = view.last;
  if (!data) return;
  if (view.mode === null) view.mode = data.devices.length >= TABLE_FROM ? "table" : "cards";
  applyMode();
  showSummary(data);
  showRejections(data.stats);
  if (view.mode === "table") showTable(data);
  else showCards(data);
}

let inflight = null;
async function refresh() {
  if (inflight) return inflight;
  const status = document.getElementById("status");
  inflight = (async () => {
    try {
      const range = view.range;
      const response = await fetch("/api/dashboard?range=" + encodeURIComponent(range), { cache: "no-store" });
      if (response.status === 401) { window.location.assign("/login"); return; }  // token revoked or session gone
      if (!response.ok) throw new Error("/api/dashboard: HTTP " + response.status);
      const data = await response.json();
      if (view.uplot === "unknown") { view.uplot = await loadUplot(data.uplot); chartsNote(); }
      if (range !== view.range) return; // switched meanwhile: the next refresh has it
      view.last = data;
      render();
      status.textContent = data.charted_devices < data.devices.length
        ? "charts for the first " + data.charted_devices + " devices" : "";
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
    } catch (err) {
      status.textContent = "cannot reach the receiver: " + err.message + " (retrying)";
    } finally {
      inflight = null;
    }
  })();
  return inflight;
}

document.getElementById("views").addEventListener("click", (event) => {
  const mode = event.target.dataset && event.target.dataset.view;
  if (mode) { view.mode = mode; render(); }
});
document.getElementById("ranges").addEventListener("click", (event) => {
  const range = event.target.dataset && event.target.dataset.range;
  if (range && RANGES.includes(range)) { view.range = range; applyMode(); inflight = null; refresh(); }
});
document.querySelector("#fleet-table thead").addEventListener("click", (event) => {
  const key = event.target.dataset && event.target.dataset.sort;
  if (!key) return;
  view.sortDir = key === view.sortKey ? -view.sortDir : 1;
  view.sortKey = key;
  render();
});
window.addEventListener("resize", () => {
  for (const entry of cards.values()) for (const c of entry.charts.values()) if (c.plot) c.plot.setSize({ width: chartWidth(c.box), height: 110 });
});

refresh();
setInterval(refresh, REFRESH_MS);
