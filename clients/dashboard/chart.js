// Confidence charts on <canvas>, shared by the live cards and the history page: y is confidence 0–1 with
// ticks, x is a time span [x0, x1] (unix seconds) with labelled ticks, the alert threshold dashed, optional
// verdict-change markers, a shaded span (the evidence clip) and a cursor (the video's position).
"use strict";

const CHART = { ink: "#1d2330", muted: "#6b7280", grid: "#e5e7eb", bg: "#f8fafc", threshold: "#e62828",
  verdict: { clear: "#28be3c", suspicious: "#f0aa00", alert: "#e62828", unknown: "#a0a0a0" } };

// Ticks every 0.5, 1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 30 min … chosen so at most `most` fit in `span` seconds.
function tickStep(span, most = 7) {
  for (const step of [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600]) if (span / step <= most) return step;
  return Math.ceil(span / most / 3600) * 3600;
}

// Sizes the canvas's pixels to its box (sharp on high-DPI screens); null while it is not displayed.
function fitCanvas(canvas) {
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (!w || !h) return null;
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { g, w, h };
}

/* o: { x0, x1: the span (unix s); xTicks: [[t, label], ...]; xTitle; series: [[t, v], ...];
        threshold; markers: [{t, verdict, label}]; band: [t0, t1] | null; cursor: t | null; gap: s }
   Returns false when the canvas is not displayed (nothing drawn). */
function plotConfidence(canvas, o) {
  const fit = fitCanvas(canvas);
  if (!fit) return false;
  const { g, w, h } = fit;
  const small = h < 110;
  const m = { left: 30, right: 10, top: o.markers && o.markers.length ? 16 : 6, bottom: o.xTitle && !small ? 30 : 18 };
  const pw = w - m.left - m.right, ph = h - m.top - m.bottom;
  const span = Math.max(o.x1 - o.x0, 1e-6);
  const x = (t) => m.left + ((t - o.x0) / span) * pw;
  const y = (v) => m.top + (1 - v) * ph;
  g.clearRect(0, 0, w, h);
  g.fillStyle = "#fff"; g.fillRect(0, 0, w, h);
  g.fillStyle = CHART.bg; g.fillRect(m.left, m.top, pw, ph);
  g.font = "10px system-ui, sans-serif";
  g.lineWidth = 1;

  if (o.band) {  // the evidence clip's span
    const a = Math.max(x(o.band[0]), m.left), b = Math.min(x(o.band[1]), m.left + pw);
    if (b > a) { g.fillStyle = "#dbeafe"; g.fillRect(a, m.top, b - a, ph); }
  }
  // y axis: 0, .25, .5, .75, 1 (0, .5, 1 labelled when the chart is small)
  g.textAlign = "right"; g.textBaseline = "middle";
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    g.strokeStyle = CHART.grid; g.beginPath(); g.moveTo(m.left, y(v) + 0.5); g.lineTo(m.left + pw, y(v) + 0.5); g.stroke();
    if (!small || v * 2 === Math.round(v * 2)) { g.fillStyle = CHART.muted; g.fillText(String(v), m.left - 4, y(v)); }
  }
  // x axis
  g.textBaseline = "top";
  let labelEnd = -Infinity; // a label that would overlap the one before it is left out
  for (const [t, label] of o.xTicks || []) {
    const px = x(t);
    if (px < m.left - 0.5 || px > m.left + pw + 0.5) continue;
    g.strokeStyle = CHART.grid; g.beginPath(); g.moveTo(px + 0.5, m.top); g.lineTo(px + 0.5, m.top + ph); g.stroke();
    const tw = g.measureText(label).width;
    const left = px - m.left < tw / 2 ? px : px > m.left + pw - tw / 2 ? px - tw : px - tw / 2;
    if (left < labelEnd + 6) continue;
    labelEnd = left + tw;
    g.fillStyle = CHART.muted; g.textAlign = "left";
    g.fillText(label, left, m.top + ph + 3);
  }
  if (o.xTitle && !small) { g.textAlign = "center"; g.fillText(o.xTitle, m.left + pw / 2, m.top + ph + 16); }
  g.strokeStyle = CHART.muted;
  g.beginPath(); g.moveTo(m.left + 0.5, m.top); g.lineTo(m.left + 0.5, m.top + ph + 0.5); g.lineTo(m.left + pw, m.top + ph + 0.5); g.stroke();

  // the alert threshold
  if (o.threshold !== undefined && o.threshold !== null) {
    g.strokeStyle = CHART.threshold; g.setLineDash([6, 4]); g.lineWidth = 1.5;
    g.beginPath(); g.moveTo(m.left, y(o.threshold)); g.lineTo(m.left + pw, y(o.threshold)); g.stroke();
    g.setLineDash([]);
    if (!small) {
      g.fillStyle = CHART.threshold; g.textAlign = "right"; g.textBaseline = "bottom";
      g.fillText(`alert threshold ${o.threshold.toFixed(2)}`, m.left + pw - 2, y(o.threshold) - 2);
    }
  }
  // verdict changes: a vertical line in the new verdict's colour, labelled above the plot
  g.textBaseline = "bottom"; g.textAlign = "center";
  for (const mk of o.markers || []) {
    const px = x(mk.t);
    if (px < m.left - 0.5 || px > m.left + pw + 0.5) continue;
    const colour = CHART.verdict[mk.verdict] || CHART.muted;
    g.strokeStyle = colour; g.lineWidth = 2;
    g.beginPath(); g.moveTo(px, m.top); g.lineTo(px, m.top + ph); g.stroke();
    g.fillStyle = colour;
    g.beginPath(); g.moveTo(px - 4, m.top - 8); g.lineTo(px + 4, m.top - 8); g.lineTo(px, m.top - 2); g.fill();
    if (mk.label) { g.textAlign = px < m.left + 40 ? "left" : "center"; g.fillText(mk.label, px + (g.textAlign === "left" ? 6 : 0), m.top - 8); }
  }
  // the confidence line; broken where points are more than `gap` seconds apart
  g.save();
  g.beginPath(); g.rect(m.left, m.top - 2, pw, ph + 4); g.clip();
  g.strokeStyle = CHART.ink; g.lineWidth = small ? 2 : 2.5; g.lineJoin = "round";
  g.beginPath();
  let last = null;
  for (const [t, v] of o.series || []) {
    if (last === null || (o.gap && t - last > o.gap)) g.moveTo(x(t), y(v)); else g.lineTo(x(t), y(v));
    last = t;
  }
  g.stroke();
  if (o.series && o.series.length === 1) { g.fillStyle = CHART.ink; g.beginPath(); g.arc(x(o.series[0][0]), y(o.series[0][1]), 2.5, 0, 7); g.fill(); }
  g.restore();
  // the cursor
  if (o.cursor !== undefined && o.cursor !== null && o.cursor >= o.x0 && o.cursor <= o.x1) {
    g.strokeStyle = "#2563eb"; g.lineWidth = 2;
    g.beginPath(); g.moveTo(x(o.cursor), m.top); g.lineTo(x(o.cursor), m.top + ph); g.stroke();
  }
  canvas.dataset.points = (o.series || []).length;
  return true;
}

// Maps a click on the chart to a time in [x0, x1] (the same margins as plotConfidence).
function chartTimeAt(canvas, clientX, x0, x1) {
  const r = canvas.getBoundingClientRect();
  const pw = r.width - 30 - 10;
  return x0 + ((clientX - r.left - 30) / pw) * (x1 - x0);
}
