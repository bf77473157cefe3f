// StreamDetect dashboard: plain JavaScript, no libraries, no CDN. It reads the service's WebSocket
// messages (schema: streamdetect/schema/messages.v1.json), uploads videos over /upload, and the history tab
// (history.js) reads the event store's HTTP API. Charts are drawn by chart.js.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
const withToken = (path) => (token ? path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : path);
const HISTORY_S = 60; // seconds of confidence drawn per face: the live charts' x axis always spans this window
const LIVE_TICKS = [60, 45, 30, 15, 0]; // seconds ago

const state = { threshold: 0.5, streams: new Map(), alerts: 0 };
const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

// ---- tabs -------------------------------------------------------------------------------------------
for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    document.querySelectorAll(".tab, .panel").forEach((x) => x.classList.remove("active"));
    tab.classList.add("active");
    $("#" + tab.dataset.tab).classList.add("active");
    document.dispatchEvent(new CustomEvent("tabchange", { detail: tab.dataset.tab }));
  });
}

// ---- connection with automatic reconnect ------------------------------------------------------------
let retryDelay = 1000;
function setConnection(ok, text) {
  const c = $("#conn");
  c.className = "conn " + (ok ? "connected" : "disconnected");
  c.dataset.state = ok ? "connected" : "disconnected";
  c.textContent = text;
}

function connect() {
  const ws = new WebSocket(wsBase + withToken("/ws"));
  ws.onopen = () => { retryDelay = 1000; setConnection(true, "connected"); };
  ws.onmessage = (event) => handle(JSON.parse(event.data));
  ws.onclose = (event) => {
    let left = Math.round(retryDelay / 1000);
    setConnection(false, `disconnected — retrying in ${left} s`);
    const countdown = setInterval(() => {
      left -= 1;
      if (left > 0) setConnection(false, `disconnected — retrying in ${left} s`);
    }, 1000);
    setTimeout(() => { clearInterval(countdown); setConnection(false, "reconnecting…"); connect(); }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 10000);
  };
}

// ---- messages -------------------------------------------------------------------------------------------
function handle(m) {
  switch (m.type) {
    case "hello":
      state.threshold = m.model.alert ?? m.model.threshold;  // the level in use (scoring.alert may override the card)
      $("#model").textContent = `model: ${m.model.name} (${m.model.backbone} @${m.model.input_size}), alert threshold `;
      $("#model").append(el("b", "threshold", state.threshold.toFixed(2)),
        `, window ${m.model.window} frames — ${m.server}`);
      m.streams.forEach(stream);
      document.dispatchEvent(new CustomEvent("streams", { detail: [...state.streams.keys()] }));
      break;
    case "status": updateStatus(m); break;
    case "scores": updateScores(m); break;
    case "preview": $(".preview", stream(m.stream).card).src = "data:image/jpeg;base64," + m.jpeg; break;
    case "alert": addAlert(m); break;
    case "track_end": {
      const face = stream(m.stream).faces.get(m.track);
      if (face) { face.row.classList.add("ended"); setTimeout(() => { face.row.remove(); stream(m.stream).faces.delete(m.track); }, 10000); }
      break;
    }
    case "error": console.warn("service:", m.message); break;
  }
}

function stream(name) {
  let s = state.streams.get(name);
  if (s) return s;
  const empty = $("#streams .empty");
  if (empty) empty.remove();
  const card = el("article", "stream");
  card.dataset.stream = name;
  card.innerHTML = `<h2><span class="name"></span><span class="badge">…</span></h2>
    <div class="stats">
      <span>input <b class="input-fps">–</b> fps</span><span>processed <b class="processed-fps">–</b> fps</span>
      <span>latency p50 <b class="p50">–</b> / p95 <b class="p95">–</b> ms</span>
      <span>dropped <b class="dropped">0</b></span><span>faces <b class="nfaces">0</b></span>
      <span>frame <b class="frame">–</b></span></div>
    <div class="detail"></div>
    <div class="body"><img class="preview"><div class="faces"></div></div>`;
  $(".name", card).textContent = name; // names come from the service's config: never parsed as HTML
  $(".preview", card).alt = "live preview of " + name;
  $("#streams").append(card);
  s = { card, faces: new Map() };
  state.streams.set(name, s);
  return s;
}

function updateStatus(m) {
  const { card } = stream(m.stream);
  const badge = $(".badge", card);
  badge.textContent = m.state;
  badge.className = "badge " + m.state;
  $(".input-fps", card).textContent = m.input_fps.toFixed(1);
  $(".processed-fps", card).textContent = m.processed_fps.toFixed(1);
  $(".p50", card).textContent = m.latency_ms ? m.latency_ms.p50.toFixed(0) : "–";
  $(".p95", card).textContent = m.latency_ms ? m.latency_ms.p95.toFixed(0) : "–";
  $(".dropped", card).textContent = m.dropped_frames;
  $(".nfaces", card).textContent = m.faces;
  $(".detail", card).textContent = m.detail || "";
}

function updateScores(m) {
  const s = stream(m.stream);
  $(".frame", s.card).textContent = m.frame;
  for (const f of m.faces) {
    let face = s.faces.get(f.track);
    if (!face) {
      const row = el("div", "face");
      row.dataset.track = f.track;
      row.innerHTML = `<div><div class="who">face #${f.track}</div><div class="conf">–</div><div class="verdict"></div></div><canvas></canvas>`;
      $(".faces", s.card).append(row);
      face = { row, history: [] };
      s.faces.set(f.track, face);
    }
    face.row.className = "face " + f.verdict;
    $(".conf", face.row).textContent = f.confidence === null ? "–" : f.confidence.toFixed(2);
    $(".verdict", face.row).textContent = f.verdict + (f.flags.length ? " (" + f.flags.join(", ") + ")" : "");
    if (f.confidence !== null) face.history.push([m.ts, f.confidence]);
  }
  // Every face's chart scrolls with the stream's clock, also those not in this message (lost, ending).
  for (const face of s.faces.values()) {
    while (face.history.length && face.history[0][0] < m.ts - HISTORY_S) face.history.shift();
    drawLiveChart($("canvas", face.row), face.history, m.ts);
  }
}

// Confidence over the last HISTORY_S seconds (the axis spans the whole window, however few points there are),
// with the alert threshold drawn dashed. Not drawn while the live tab is hidden: the next message redraws it.
function drawLiveChart(canvas, history, now) {
  plotConfidence(canvas, {
    x0: now - HISTORY_S, x1: now, series: history, threshold: state.threshold, gap: 3,
    xTicks: LIVE_TICKS.map((ago) => [now - ago, !ago ? "now" : canvas.clientWidth >= 400 ? `${ago} s ago` : `-${ago} s`]),
  });
}

function addAlert(m) {
  const list = $("#alerts");
  const empty = $(".empty", list);
  if (empty) empty.remove();
  const item = el("li", "alert-item");
  item.dataset.stream = m.stream;
  item.dataset.track = m.track;
  const img = el("img");
  img.alt = `face #${m.track}`;
  if (m.thumbnail) img.src = "data:image/jpeg;base64," + m.thumbnail;
  const text = el("div");
  const when = new Date(m.ts * 1000).toLocaleTimeString();
  text.innerHTML = `<div><span class="v-${m.verdict}"></span> — face #${m.track} on <b></b></div>
    <div class="time">${when} · confidence ${m.confidence.toFixed(2)} (was ${m.previous})</div>`;
  $(`.v-${m.verdict}`, text).textContent = m.verdict.toUpperCase();
  $("b", text).textContent = m.stream;
  item.append(img, text);
  list.prepend(item);
  while (list.children.length > 200) list.lastChild.remove();
  document.dispatchEvent(new CustomEvent("alert", { detail: m }));
}

// ---- upload: the paper's index/predict pages ------------------------------------------------------------
const CHUNK = 512 * 1024;
const drop = $("#drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]); });
$("#file").addEventListener("change", (e) => { if (e.target.files[0]) upload(e.target.files[0]); });

function showUpload(stage, done, total) {
  $("#upload-status").hidden = false;
  $("#upload-stage").textContent = stage;
  $("#upload-progress").value = total ? done / total : 0;
}

function upload(file) {
  $("#upload-error").hidden = true;
  $("#upload-result").hidden = true;
  showUpload(`sending ${file.name}…`, 0, file.size);
  const ws = new WebSocket(wsBase + withToken("/upload"));
  let finished = false;
  ws.onopen = async () => {
    ws.send(JSON.stringify({ type: "upload", name: file.name, size: file.size }));
    for (let at = 0; at < file.size && ws.readyState === WebSocket.OPEN; at += CHUNK) {
      ws.send(await file.slice(at, at + CHUNK).arrayBuffer());
    }
  };
  ws.onmessage = (event) => {
    const m = JSON.parse(event.data);
    if (m.type === "upload_progress") {
      const label = { receiving: "uploading", queued: "waiting for the scanner", scanning: "scanning frames" }[m.stage];
      showUpload(`${label} ${m.total ? m.done + " / " + m.total : ""}`, m.done, m.total);
    } else if (m.type === "upload_result") {
      finished = true;
      showResult(m.result, m.video);
      ws.close();
    } else if (m.type === "upload_error") {
      finished = true;
      uploadError(m.message);
    }
  };
  ws.onclose = () => { if (!finished) uploadError("the connection to the service closed before the scan finished"); };
}

function uploadError(message) {
  $("#upload-status").hidden = true;
  const e = $("#upload-error");
  e.textContent = message;
  e.hidden = false;
}

function showResult(r, video) {
  $("#upload-status").hidden = true;
  const verdict = $("#upload-verdict");
  verdict.textContent = r.verdict.toUpperCase() + (r.p_fake === null ? " (no face found)" : ` — p(fake) ${r.p_fake.toFixed(3)}`);
  verdict.className = r.verdict;
  $("#upload-summary").textContent = `${r.video}: ${r.frames} frames, faces in ${r.frames_with_faces}, ` +
    `threshold ${r.threshold.toFixed(2)}, model ${r.model.name} (${r.model.backbone}).`;
  const body = $("#upload-tracks tbody");
  body.replaceChildren(...r.tracks.map((t) => {
    const row = el("tr");
    for (const v of [`#${t.track}`, t.frames, t.p_fake === null ? "–" : t.p_fake.toFixed(3), t.verdict]) row.append(el("td", "", v));
    return row;
  }));
  $("#upload-video").src = withToken(video);
  $("#upload-result").hidden = false;
}

connect();
