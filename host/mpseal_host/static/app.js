// mpseal live page: polls the JSON API (docs/api.md) and draws one card per
// device with its latest values and an SVG chart per numeric value. Plain
// DOM + textContent only (values come from devices; never parsed as HTML).
"use strict";

const REFRESH_MS = 2000;
const CHART_POINTS = 120;
const MAX_CHARTED_DEVICES = 50;
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function ago(t) {
  if (t === null || t === undefined) return "never";
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 129600) return Math.round(s / 3600) + " h ago";
  return new Date(t * 1000).toLocaleString();
}

function fmt(v) {
  if (typeof v === "number") return String(Math.round(v * 1000) / 1000);
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

// One polyline of `points` (numbers) scaled into a width x height box.
function chart(field, points) {
  const width = 300, height = 54, pad = 3;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.dataset.field = field;
  const lo = Math.min(...points), hi = Math.max(...points);
  const span = hi - lo || 1;
  const step = points.length > 1 ? (width - 2 * pad) / (points.length - 1) : 0;
  const xy = points.map((v, i) => {
    const x = pad + i * step;
    const y = height - pad - ((v - lo) / span) * (height - 2 * pad - 10);
    return x.toFixed(1) + "," + y.toFixed(1);
  });
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", xy.join(" "));
  line.dataset.points = String(points.length);
  svg.appendChild(line);
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", "4");
  label.setAttribute("y", "9");
  label.textContent = field + "  " + fmt(lo) + " \u2026 " + fmt(hi);
  svg.appendChild(label);
  return svg;
}

// Units of the numbered channels (docs/protocol.md section 6).
const UNITS = { temperature: "\u00b0C", humidity: "%", battery: "V", pressure: "hPa", age: "s", light: "lx", co2: "ppm", rssi: "dBm" };

function plural(n, word) {
  return n + " " + word + (n === 1 ? "" : "s");
}

function deviceCard(device, readings) {
  const card = el("article", { class: "device", "data-device": device.name });
  const silent = device.last_seen === null || Date.now() / 1000 - device.last_seen > 600;
  if (silent) card.classList.add("stale");
  card.appendChild(el("h2", {}, device.name));
  const epoch = device.pending_epoch === null ? device.epoch : device.epoch + " \u2192 " + device.pending_epoch;
  card.appendChild(el("p", { class: "meta" },
    "id " + device.id + " \u00b7 key epoch " + epoch + " \u00b7 last seen " + ago(device.last_seen) +
    (device.last_transport ? " via " + device.last_transport : "") + " \u00b7 seq " + device.last_seq));

  const values = el("div", { class: "values" });
  const latest = device.latest && device.latest.value;
  if (latest && typeof latest === "object" && !Array.isArray(latest)) {
    for (const [k, v] of Object.entries(latest)) {
      const item = el("div", { class: "value", "data-field": k });
      item.appendChild(el("b", {}, fmt(v)));
      if (UNITS[k]) item.appendChild(el("small", {}, UNITS[k]));
      item.appendChild(el("span", {}, k));
      values.appendChild(item);
    }
  } else if (latest !== undefined && latest !== null) {
    values.appendChild(el("div", { class: "value", "data-field": "payload" }, fmt(latest)));
  } else {
    values.appendChild(el("p", { class: "muted" }, "no readings yet"));
  }
  card.appendChild(values);

  // Numeric series of the recent readings, one chart per field.
  const series = {};
  for (const r of readings || []) {
    if (!r.value || typeof r.value !== "object") continue;
    for (const [k, v] of Object.entries(r.value)) {
      if (typeof v === "number") (series[k] = series[k] || []).push(v);
    }
  }
  for (const [field, points] of Object.entries(series)) card.appendChild(chart(field, points));

  const counters = el("p", { class: "counters" });
  counters.appendChild(document.createTextNode(
    "stored " + device.stored + " \u00b7 duplicates " + device.duplicates + " \u00b7 "));
  counters.appendChild(el("span", { class: device.rejected ? "bad" : "", "data-rejected": String(device.rejected) },
    "rejected " + device.rejected));
  card.appendChild(counters);
  return card;
}

function showRejections(stats) {
  const body = document.querySelector("#rejections tbody");
  body.replaceChildren();
  let rows = 0;
  for (const [device, reasons] of Object.entries(stats.rejected_by_device)) {
    for (const [reason, count] of Object.entries(reasons)) {
      const tr = el("tr", { "data-reason": reason });
      tr.appendChild(el("td", {}, device));
      tr.appendChild(el("td", {}, reason));
      tr.appendChild(el("td", {}, String(count)));
      body.appendChild(tr);
      rows += 1;
    }
  }
  document.getElementById("rejections").hidden = rows === 0;
  document.getElementById("no-rejections").hidden = rows !== 0;
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [list, stats] = await Promise.all([getJSON("/api/devices"), getJSON("/api/stats")]);
    const charted = list.devices.slice(0, MAX_CHARTED_DEVICES);
    const readings = await Promise.all(charted.map((d) =>
      getJSON("/api/devices/" + encodeURIComponent(d.name) + "/readings?limit=" + CHART_POINTS)
        .then((r) => r.readings).catch(() => [])));
    const cards = list.devices.map((d, i) => deviceCard(d, readings[i]));
    document.getElementById("devices").replaceChildren(...cards);
    if (!cards.length) document.getElementById("devices").appendChild(
      el("p", { class: "muted" }, "no devices yet: add one with 'mpseal devices add NAME'"));
    showRejections(stats);
    document.getElementById("summary").textContent =
      plural(stats.devices, "device") + " \u00b7 " + plural(stats.stored, "reading") + " stored \u00b7 " +
      plural(stats.duplicates, "duplicate") + " \u00b7 " + stats.rejected + " rejected \u00b7 updated " +
      new Date().toLocaleTimeString();
    status.textContent = "";
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  } catch (err) {
    status.textContent = "cannot reach the receiver: " + err.message + " (retrying)";
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
