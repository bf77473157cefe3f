// The history tab: recorded events from the event store's HTTP API (/api/events, behind the same token as
// /ws), filtered and paged; the selected event's evidence clip plays beside its confidence chart.
// Uses $, el, withToken, token and state from app.js, and plotConfidence from chart.js.
"use strict";

const PAGE = 20;
const REFRESH_MS = 5000; // the list, while the tab is open and "refresh" is ticked
const PENDING_MS = 2000; // the selected event, while its clip is still being recorded
const CLIP_TEXT = { none: "—", pending: "recording…", complete: "ready", incomplete: "partial", failed: "failed" };

const hist = { offset: 0, total: 0, seq: 0, selected: null, detailTimer: null, clipUrl: null, clipSeq: 0, detailSeq: 0 };

// A reply from the API with the token as a header; errors carry the API's own {"error": ...} text.
async function request(path, options = {}) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  let reply;
  try {
    reply = await fetch(path, { ...options, headers, cache: "no-store" });
  } catch (exc) {
    throw new Error("the service cannot be reached (" + exc.message + ")");
  }
  if (reply.ok) return reply;
  const text = await reply.text();
  let body = null;
  try { body = JSON.parse(text); } catch { /* plain-text errors (401, 403) */ }
  throw new Error((body && body.error) || text.trim() || `${reply.status} ${reply.statusText}`);
}

const api = async (path, options) => (await request(path, options)).json();

const historyActive = () => $("#history").classList.contains("active");
const pad = (n) => String(n).padStart(2, "0");

function when(ts) {
  const d = new Date(ts * 1000);
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  return d.toDateString() === new Date().toDateString() ? time :
    d.toLocaleDateString([], { day: "numeric", month: "short", year: "numeric" }) + " " + time;
}

function duration(s) {
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

// ---- filters ----------------------------------------------------------------------------------------------
function localInput(ts) { // unix seconds -> a datetime-local value
  const d = new Date(ts * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function query() { // the filters as API parameters; throws with a message the user can act on
  const q = new URLSearchParams();
  const streamName = $("#h-stream").value.trim();
  if (streamName) q.set("stream", streamName);
  if ($("#h-verdict").value) q.set("verdict", $("#h-verdict").value);
  const range = $("#h-range").value;
  if (range === "custom") {
    const since = $("#h-since").value, until = $("#h-until").value;
    const a = since ? new Date(since).getTime() / 1000 : null, b = until ? new Date(until).getTime() / 1000 : null;
    if (a !== null && b !== null && a >= b) throw new Error("the time range ends before it starts: check 'from' and 'to'");
    if (a !== null) q.set("since", a);
    if (b !== null) q.set("until", b);
  } else if (range) {
    q.set("since", Date.now() / 1000 - Number(range));
  }
  const min = $("#h-min").value.trim();
  if (min) {
    const v = Number(min);
    if (!(v >= 0 && v <= 1)) throw new Error("the minimum confidence is a number from 0 to 1");
    q.set("min_confidence", v);
  }
  return q;
}

const filtered = () => !!($("#h-stream").value.trim() || $("#h-verdict").value || $("#h-range").value || $("#h-min").value.trim());

function showListError(message) {
  const e = $("#h-error");
  e.textContent = message || "";
  e.hidden = !message;
}

// ---- the list ---------------------------------------------------------------------------------------------
async function loadEvents() {
  const seq = ++hist.seq;
  let q;
  try {
    q = query();
  } catch (exc) {
    showListError(exc.message);
    return;
  }
  q.set("limit", PAGE);
  q.set("offset", hist.offset);
  let page;
  try {
    page = await api("/api/events?" + q);
  } catch (exc) {
    if (seq === hist.seq) showListError("could not load events: " + exc.message);
    return;
  }
  if (seq !== hist.seq) return; // a newer request (filters changed, refresh) answers instead
  if (!page.events.length && hist.offset > 0 && page.total > 0) { // the last page emptied (deletions): step back
    hist.offset = Math.max(0, Math.floor((page.total - 1) / PAGE) * PAGE);
    return loadEvents();
  }
  showListError("");
  hist.total = page.total;
  renderRows(page.events);
  const empty = $("#h-empty");
  empty.textContent = filtered() ? "No events match these filters." :
    "No events recorded yet: a face that becomes suspicious or alerts is recorded here, with a clip.";
  empty.hidden = page.events.length > 0;
  $("#h-table").classList.toggle("blank", page.events.length === 0);
  $("#h-page").textContent = page.total ? `${page.offset + 1}–${page.offset + page.events.length} of ${page.total}` : "";
  $(".pager").hidden = page.total === 0;
  $("#h-prev").disabled = page.offset === 0;
  $("#h-next").disabled = page.next_offset === null;
}

// Rows are kept by event id and only rebuilt when the event changed, so refreshing never moves what is clicked.
function renderRows(events) {
  const body = $("#h-table tbody");
  const old = new Map([...body.children].map((tr) => [tr.dataset.id, tr]));
  const rows = events.map((e) => {
    const tr = old.get(String(e.id)) || el("tr");
    const signature = JSON.stringify(e);
    if (tr.dataset.signature !== signature) fillRow(tr, e, signature);
    tr.classList.toggle("selected", hist.selected !== null && hist.selected.id === e.id);
    return tr;
  });
  body.replaceChildren(...rows);
}

function fillRow(tr, e, signature) {
  tr.dataset.id = e.id;
  tr.dataset.stream = e.stream;
  tr.dataset.clip = e.clip_state;
  tr.dataset.signature = signature;
  tr.tabIndex = 0;
  const thumb = el("td", "thumb");
  if (e.has_thumbnail) {
    const img = el("img");
    img.loading = "lazy";
    img.alt = `face #${e.track}`;
    img.src = withToken(`/api/events/${e.id}/thumbnail.jpg`);
    thumb.append(img);
  } else {
    thumb.append(el("span", "no-thumb", "no image"));
  }
  const verdict = el("td");
  verdict.append(el("span", "pill v-" + e.verdict, e.verdict));
  const clip = el("td");
  clip.append(el("span", "clip-state c-" + e.clip_state, CLIP_TEXT[e.clip_state] || e.clip_state));
  if (e.error) clip.title = e.error;
  tr.replaceChildren(thumb, el("td", "stream-name", e.stream), el("td", "", `#${e.track}`),
    el("td", "when", when(e.started)), verdict,
    el("td", "num", e.peak_confidence === null ? "–" : e.peak_confidence.toFixed(2)), clip);
}

// ---- the selected event -------------------------------------------------------------------------------------
async function selectEvent(id) {
  clearTimeout(hist.detailTimer);
  const seq = ++hist.detailSeq;
  let event;
  try {
    event = await api(`/api/events/${id}`);
  } catch (exc) {
    if (seq !== hist.detailSeq) return;
    if (hist.selected && hist.selected.id === id) clearSelection(); // deleted meanwhile (another user, retention)
    showListError(`could not open event ${id}: ${exc.message}`);
    return;
  }
  if (seq !== hist.detailSeq) return; // another selection (or a newer poll) answers instead
  const same = hist.selected && hist.selected.id === event.id;
  hist.selected = event;
  for (const tr of $("#h-table tbody").children) tr.classList.toggle("selected", tr.dataset.id === String(id));
  showDetail(event, same);
}

function clipMessage(e) {
  switch (e.clip_state) {
    case "pending": return "The clip is still recording: it plays here as soon as it is written.";
    case "failed": return "The clip could not be recorded: " + (e.error || "no reason was given.");
    case "incomplete": return "The clip is incomplete" + (e.error ? ": " + e.error : ".");
    case "none": return "No clip for this event: clips are recorded only for faces that became suspicious or alerted.";
    default: return "";
  }
}

function showDetail(e, same) {
  $("#h-none").hidden = true;
  $("#h-selected").hidden = false;
  $("#h-selected").dataset.id = e.id;
  $("#h-title").replaceChildren(`Event ${e.id}: face #${e.track} on `, el("b", "", e.stream), " ", el("span", "pill v-" + e.verdict, e.verdict));
  const span = e.ended === null ? "still in view" : `${when(e.ended)} (${duration(e.ended - e.started)})`;
  const peak = e.peak_confidence === null ? "–" : e.peak_confidence.toFixed(2);
  const last = e.final_confidence === null ? "–" : e.final_confidence.toFixed(2);
  const size = e.clip_bytes >= 1e6 ? `${(e.clip_bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(e.clip_bytes / 1e3))} kB`;
  $("#h-meta").textContent = `${when(e.started)} → ${span}` + (e.frames ? ` · ${e.frames} frames` : "") +
    ` · peak ${peak}, last ${last}` + (e.final_verdict ? ` · ended ${e.final_verdict}` : "") +
    (e.clip_bytes ? ` · clip ${size}` : "");

  const playable = e.clip_state === "complete" || e.clip_state === "incomplete";
  const src = playable ? `/api/events/${e.id}/clip.mp4` : "";
  if (!same || $("#h-video").dataset.src !== src) loadClip(src);
  clipNotice(clipMessage(e), e.clip_state === "failed");

  const changes = $("#h-changes");
  changes.replaceChildren(...e.changes.map((c) => {
    const li = el("li");
    li.append(el("span", "time", when(c.ts)), ` ${c.previous} → `, el("span", "pill v-" + c.verdict, c.verdict),
      c.confidence === null ? "" : ` at ${c.confidence.toFixed(2)}`);
    return li;
  }));
  drawEventChart();
  if (e.clip_state === "pending" || e.ended === null) {
    hist.detailTimer = setTimeout(() => { if (hist.selected && hist.selected.id === e.id) selectEvent(e.id); }, PENDING_MS);
  }
}

function clipNotice(text, error) {
  const msg = $("#h-clip-msg");
  msg.textContent = text;
  msg.className = "notice" + (error ? " error" : "");
  msg.hidden = !text;
}

// The clip is fetched whole (with the token as a header) and played from memory: evidence clips are seconds
// long, and the API answers without byte ranges, so a clip streamed from its URL could not be seeked.
async function loadClip(src) {
  const seq = ++hist.clipSeq;
  const v = $("#h-video");
  v.dataset.src = src;
  v.removeAttribute("src");
  v.load();
  if (hist.clipUrl) URL.revokeObjectURL(hist.clipUrl);
  hist.clipUrl = null;
  v.hidden = !src;
  if (!src) return;
  try {
    const blob = await (await request(src)).blob();
    if (seq !== hist.clipSeq) return; // another event was selected meanwhile
    hist.clipUrl = URL.createObjectURL(blob);
    v.src = hist.clipUrl;
  } catch (exc) {
    if (seq !== hist.clipSeq) return;
    v.hidden = true;
    clipNotice("Could not load the clip: " + exc.message, true);
  }
}

// The chart's time span: the track and its clip; t = 0 is the clip's first frame (the video's time 0).
function eventSpan(e) {
  const times = [e.started, ...e.timeline.map((p) => p[0]), ...e.changes.map((c) => c.ts)];
  if (e.ended !== null) times.push(e.ended);
  if (e.clip_start !== null) times.push(e.clip_start, e.clip_end);
  const x0 = Math.min(...times), x1 = Math.max(...times, x0 + 1);
  return { x0, x1, origin: e.clip_start !== null ? e.clip_start : e.started };
}

function drawEventChart() {
  const e = hist.selected;
  if (!e) return;
  const canvas = $("#h-chart");
  const { x0, x1, origin } = eventSpan(e);
  const step = tickStep(x1 - x0);
  const ticks = [];
  for (let k = Math.ceil((x0 - origin) / step); origin + k * step <= x1 + 1e-9; k++) {
    const s = k * step;
    const label = step >= 60 ? `${s < 0 ? "-" : ""}${Math.floor(Math.abs(s) / 60)}:${pad(Math.round(Math.abs(s) % 60))}` :
      `${+s.toFixed(1)} s`;
    ticks.push([origin + s, label]);
  }
  let lastLabel = -Infinity;
  const markers = e.changes.map((c) => {
    const labelled = (c.ts - lastLabel) / (x1 - x0) > 0.15;
    if (labelled) lastLabel = c.ts;
    return { t: c.ts, verdict: c.verdict, label: labelled ? c.verdict : "" };
  });
  const video = $("#h-video");
  const cursor = video.dataset.src && e.clip_start !== null && video.readyState >= 1 ? e.clip_start + video.currentTime : null;
  const drawn = plotConfidence(canvas, {
    x0, x1, series: e.timeline, threshold: state.threshold, markers, cursor, xTicks: ticks,
    band: e.clip_start !== null ? [e.clip_start, e.clip_end] : null,
    xTitle: e.clip_start !== null ? "seconds from the clip's start (the video's time)" : "seconds from the track's start",
  });
  if (drawn) {
    canvas.dataset.id = e.id;
    canvas.dataset.cursor = cursor === null ? "" : (cursor - e.clip_start).toFixed(2);
  }
}

// The cursor follows the video: on every time update, and every frame while it plays.
const video = $("#h-video");
for (const type of ["timeupdate", "seeked", "loadedmetadata"]) video.addEventListener(type, drawEventChart);
video.addEventListener("play", function follow() {
  drawEventChart();
  if (!video.paused && !video.ended) requestAnimationFrame(follow);
});
video.addEventListener("error", () => {
  if (!hist.clipUrl || !video.error) return; // not a clip of ours (emptied on purpose)
  clipNotice(`The browser could not play the clip (${video.error.message || "media error " + video.error.code}).`, true);
});
// Clicking the chart inside the clip seeks the video there.
$("#h-chart").addEventListener("click", (ev) => {
  const e = hist.selected;
  if (!e || e.clip_start === null || !video.dataset.src || !(video.duration > 0)) return;
  const { x0, x1 } = eventSpan(e);
  const t = chartTimeAt($("#h-chart"), ev.clientX, x0, x1) - e.clip_start;
  video.currentTime = Math.min(Math.max(t, 0), video.duration);
});

async function deleteSelected() {
  const e = hist.selected;
  if (!e || !confirm(`Delete event ${e.id} (face #${e.track} on ${e.stream}) and its clip? This cannot be undone.`)) return;
  const button = $("#h-delete");
  button.disabled = true;
  try {
    await api(`/api/events/${e.id}`, { method: "DELETE" });
    clearSelection();
  } catch (exc) {
    showListError(`could not delete event ${e.id}: ${exc.message}`);
  } finally {
    button.disabled = false;
  }
  await loadEvents();
}

function clearSelection() {
  clearTimeout(hist.detailTimer);
  hist.detailSeq++;
  hist.selected = null;
  loadClip("");
  $("#h-selected").hidden = true;
  $("#h-none").hidden = false;
}

// ---- wiring -----------------------------------------------------------------------------------------------
$("#h-filters").addEventListener("submit", (ev) => { ev.preventDefault(); hist.offset = 0; loadEvents(); });
for (const id of ["#h-verdict", "#h-range"]) $(id).addEventListener("change", () => $("#h-filters").requestSubmit());
$("#h-range").addEventListener("change", () => {
  const custom = $("#h-range").value === "custom";
  $("#h-custom").hidden = !custom;
  if (custom && !$("#h-since").value) $("#h-since").value = localInput(Date.now() / 1000 - 3600);
});
$("#h-reset").addEventListener("click", () => {
  $("#h-filters").reset();
  $("#h-custom").hidden = true;
  hist.offset = 0;
  loadEvents();
});
$("#h-prev").addEventListener("click", () => { hist.offset = Math.max(0, hist.offset - PAGE); loadEvents(); });
$("#h-next").addEventListener("click", () => { hist.offset += PAGE; loadEvents(); });
$("#h-table tbody").addEventListener("click", (ev) => {
  const tr = ev.target.closest("tr[data-id]");
  if (tr) selectEvent(Number(tr.dataset.id));
});
$("#h-table tbody").addEventListener("keydown", (ev) => {
  const tr = ev.target.closest("tr[data-id]");
  if (tr && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); selectEvent(Number(tr.dataset.id)); }
});
$("#h-delete").addEventListener("click", deleteSelected);

document.addEventListener("tabchange", (ev) => {
  if (ev.detail !== "history") return;
  loadEvents();
  drawEventChart(); // the canvas had no size while the tab was hidden
});
document.addEventListener("streams", (ev) => {
  $("#h-streams").replaceChildren(...ev.detail.map((name) => { const o = el("option"); o.value = name; return o; }));
});
let alertRefresh = null; // a verdict change means a new or changed event: the first page shows it at once
document.addEventListener("alert", () => {
  if (!historyActive() || hist.offset !== 0 || alertRefresh) return;
  alertRefresh = setTimeout(() => { alertRefresh = null; loadEvents(); }, 300);
});
window.addEventListener("resize", () => { if (historyActive()) drawEventChart(); });
setInterval(() => { if (historyActive() && $("#h-auto").checked && !document.hidden) loadEvents(); }, REFRESH_MS);
