// The sluice page: a WHIP publisher and a WHEP player (RFC 9725 and its WHEP
// counterpart), with trickle ICE over PATCH and DELETE on stop.
"use strict";

const $ = (id) => document.getElementById(id);
const sessions = { publish: null, play: null };

// The bearer token, typed in or given in the URL fragment (#token=…, which
// never reaches a server log); the fragment is dropped from the address bar.
const fromFragment = new URLSearchParams(window.location.hash.slice(1)).get("token");
if (fromFragment) {
  $("token").value = fromFragment;
  history.replaceState(null, "", window.location.pathname + window.location.search);
}
const auth = (headers = {}) => {
  const t = $("token").value.trim();
  return t ? { ...headers, Authorization: "Bearer " + t } : headers;
};

// iceServers asks the endpoint (OPTIONS) for the STUN/TURN servers its Link
// headers name (RFC 9725 §4.6), as RTCPeerConnection's iceServers.
async function iceServers(url) {
  const resp = await fetch(url, { method: "OPTIONS" }).catch(() => null);
  const links = resp && resp.headers.get("Link");
  if (!links) return [];
  const servers = [];
  // Link values joined with ", ": <url>; key="quoted \"string\""; ...
  const re = /<([^>]*)>((?:\s*;\s*[\w-]+\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^;,]*))*)/g;
  for (const m of links.matchAll(re)) {
    const params = {};
    for (const p of m[2].matchAll(/;\s*([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;,]*))/g)) {
      params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3].trim();
    }
    if (params.rel !== "ice-server") continue;
    const s = { urls: m[1] };
    if (params.username !== undefined) s.username = params.username;
    if (params.credential !== undefined) s.credential = params.credential;
    servers.push(s);
  }
  return servers;
}

const endpoint = (kind, stream) => (kind === "publish" ? "/whip/" : "/whep/") + encodeURIComponent(stream);

// negotiate posts an offer and applies the answer. Candidates gathered after the
// offer are trickled with PATCH to the session's Location.
async function negotiate(kind, pc, stream) {
  const url = endpoint(kind, stream);
  const pending = [];
  let resource = null, etag = null;
  const patch = async (cands) => {
    if (!resource || cands.length === 0) return;
    const frag = cands.map((c) => "a=" + c.candidate + "\r\n").join("");
    await fetch(resource, { method: "PATCH", headers: auth({ "Content-Type": "application/trickle-ice-sdpfrag", "If-Match": etag }), body: frag });
  };
  pc.onicecandidate = (e) => {
    if (!e.candidate || !e.candidate.candidate) return;
    if (resource) patch([e.candidate]); else pending.push(e.candidate);
  };
  await pc.setLocalDescription(await pc.createOffer());
  const resp = await fetch(url, { method: "POST", headers: auth({ "Content-Type": "application/sdp" }), body: pc.localDescription.sdp });
  if (resp.status !== 201) {
    let msg = resp.status + " " + resp.statusText;
    try { const p = await resp.json(); msg = p.title + (p.detail ? ": " + p.detail : ""); } catch (_) {}
    throw new Error(msg);
  }
  resource = new URL(resp.headers.get("Location"), window.location.href).toString();
  etag = resp.headers.get("ETag");
  await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
  patch(pending.splice(0));
  return resource;
}

async function stop(kind) {
  const s = sessions[kind];
  sessions[kind] = null;
  if (!s) return;
  s.pc.close();
  if (s.stream) s.stream.getTracks().forEach((t) => t.stop());
  if (s.location) await fetch(s.location, { method: "DELETE", headers: auth() }).catch(() => {});
}

function status(kind, text, isErr) {
  const el = $(kind === "publish" ? "pubStatus" : "playStatus");
  el.textContent = text;
  el.className = "status" + (isErr ? " err" : "");
}

async function publish() {
  await stop("publish");
  const id = $("stream").value;
  try {
    const media = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    $("local").srcObject = media;
    const pc = new RTCPeerConnection({ iceServers: await iceServers(endpoint("publish", id)) });
    for (const t of media.getTracks()) pc.addTransceiver(t, { direction: "sendonly" });
    sessions.publish = { pc, stream: media };
    pc.onconnectionstatechange = () => status("publish", "publishing " + id + ": " + pc.connectionState);
    sessions.publish.location = await negotiate("publish", pc, id);
  } catch (e) {
    status("publish", "publish failed: " + e.message, true);
    await stop("publish");
  }
}

async function play() {
  await stop("play");
  const id = $("stream").value;
  try {
    const pc = new RTCPeerConnection({ iceServers: await iceServers(endpoint("play", id)) });
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const ms = new MediaStream();
    $("remote").srcObject = ms;
    pc.ontrack = (e) => ms.addTrack(e.track);
    sessions.play = { pc };
    pc.onconnectionstatechange = () => status("play", "playing " + id + ": " + pc.connectionState);
    sessions.play.location = await negotiate("play", pc, id);
  } catch (e) {
    status("play", "play failed: " + e.message, true);
    await stop("play");
  }
}

// --- The operator's view: cluster, streams, processes, policies, charts. ---
// Every read goes to the JSON API with the page's token, so auth applies as
// for any client; a 401 or 403 is shown where the section would be.

const el = (tag, text, cls) => {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
};
const row = (cells, cls) => {
  const tr = el("tr", undefined, cls);
  for (const c of cells) {
    if (c instanceof Node) { const td = el("td"); td.append(c); tr.append(td); }
    else if (typeof c === "number") tr.append(el("td", String(c), "num"));
    else tr.append(el("td", c === undefined || c === null ? "" : String(c)));
  }
  return tr;
};
// alignNumbers right-aligns the cells under a numeric column's header.
const alignNumbers = (tbody) => {
  const ths = [...tbody.parentElement.querySelectorAll("thead th")];
  for (const tr of tbody.rows) [...tr.cells].forEach((td, i) => { if (ths[i] && ths[i].classList.contains("num")) td.classList.add("num"); });
};
const uptime = (since) => {
  if (!since) return "";
  let s = Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000));
  if (s >= 86400) return Math.floor(s / 86400) + "d" + Math.floor((s % 86400) / 3600) + "h";
  if (s >= 3600) return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
  if (s >= 60) return Math.floor(s / 60) + "m" + (s % 60) + "s";
  return s + "s";
};
const kbps = (bps) => (bps ? (bps / 1000).toFixed(0) + " kbit/s" : "");

// getJSON reads an API path; a refusal becomes an Error that says what to do.
async function getJSON(path) {
  const resp = await fetch(path, { headers: auth() });
  if (resp.status === 401 || resp.status === 403) throw new Error(resp.status + ": a token with the read or admin role shows this");
  if (!resp.ok) throw new Error(path + ": " + resp.status);
  return resp.json();
}

function renderMembers({ self, members }) {
  $("self").textContent = "gateway " + self;
  $("members").replaceChildren(...members.map((m) => {
    const t = m.tags || {};
    let state = m.status;
    if (m.status === "alive" && t.state === "draining") state = "draining";
    const st = el("span", state, m.status === "failed" ? "bad" : state === "draining" || m.status === "left" ? "warn" : "");
    if (t.failed) st.append(el("span", " (failed pools: " + t.failed + ")", "bad"));
    const load = t.cap ? (t.load || "0") + " / " + t.cap : "";
    const shown = Object.entries(t).filter(([k]) => !["role", "id", "state", "load", "cap", "failed"].includes(k));
    const tags = el("span", shown.map(([k, v]) => k + "=" + v).join("  "));
    const tr = row([m.name, m.role, st, load, tags]);
    tr.lastChild.className = "tags";
    return tr;
  }));
  alignNumbers($("members"));
}

function renderStreams(streams) {
  $("streams").replaceChildren(...streams.map((s) => {
    const p = s.publisher || {};
    const who = p.gateway ? (p.client ? p.client + " via " : "via ") + p.gateway : "";
    const b = el("button", "Play");
    b.onclick = () => { $("stream").value = s.stream; play(); };
    return row([s.stream, p.protocol || "", who, s.viewers, kbps(s.bitrateBps), s.agent || "", s.node || "", uptime(s.since), b]);
  }));
  alignNumbers($("streams"));
}

// renderProcesses is `sluice status`: a summary line, then each agent and its
// nodes (an idle running node is "sleeping", as M2 prints it).
function renderProcesses({ agents = [], errors = {} }) {
  const sum = { running: 0, sleeping: 0, respawns: 0, active: 0, avail: 0 };
  const rows = [];
  for (const a of agents) {
    const streams = (a.nodes || []).reduce((n, x) => n + x.streams, 0);
    rows.push(row(["agent/" + a.agent, a.pid, uptime(a.started), a.cpu.toFixed(1), Math.round(a.rss / 1048576), streams, a.state]));
    for (const n of a.nodes || []) {
      const state = n.state === "running" && n.streams === 0 ? "sleeping" : n.state;
      if (state === "running") sum.running++;
      if (state === "sleeping") sum.sleeping++;
      rows.push(row([n.id, n.pid, uptime(n.startedAt), n.cpu.toFixed(1), Math.round(n.rss / 1048576), n.streams, state], "sub"));
    }
    for (const p of a.pools || []) {
      if (p.failed) rows.push(row(["pool/" + p.purpose, "-", "-", "-", "-", "-", el("span", "failed: " + (p.reason || ""), "bad")], "sub"));
    }
    sum.respawns += a.summary.respawns;
    sum.active += a.summary.memActive;
    sum.avail += a.summary.memAvailable;
  }
  for (const [id, e] of Object.entries(errors)) rows.push(row(["agent/" + id, "-", "-", "-", "-", "-", el("span", "unreachable: " + e, "bad")]));
  $("procs").replaceChildren(...rows);
  alignNumbers($("procs"));
  $("procSummary").textContent = `processes: ${sum.running} running, ${sum.sleeping} sleeping, ${sum.respawns} respawns   memory: ${Math.round(sum.active / 1048576)} MB active / ${Math.round(sum.avail / 1048576)} MB available`;
}

// renderSlots lists the policy slots. Upload swaps the file in (PUT, the
// module as the body); rollback returns to the previous module. Both need a
// token with the admin role when auth is on.
function renderSlots({ slots }) {
  $("slots").replaceChildren(...slots.map((s) => {
    const m = s.module;
    const file = el("input");
    file.type = "file";
    file.accept = ".wasm,application/wasm";
    const up = el("button", "Upload");
    up.onclick = () => slotAction(s.slot, "PUT", "/v1/plugins/" + s.slot, file.files[0]);
    const swap = el("span");
    swap.append(file, up);
    const back = el("button", "Rollback");
    back.disabled = !s.previous;
    back.title = s.previous ? "back to " + s.previous.source + " (" + s.previous.sha256.slice(0, 12) + ")" : "no previous module";
    back.onclick = () => { if (confirm("Roll slot " + s.slot + " back to its previous module?")) slotAction(s.slot, "POST", "/v1/plugins/" + s.slot + "/rollback"); };
    const breaker = el("span", s.breaker, s.breaker === "open" ? "bad" : "");
    const sha = el("code", m ? m.sha256.slice(0, 16) : "");
    if (m) sha.title = m.sha256;
    return row([s.slot, m ? m.source : "(none: " + s.failure + ")", sha, s.calls, s.traps, s.fallbacks, s.latencyMicros.p99.toFixed(1), breaker, swap, back]);
  }));
  alignNumbers($("slots"));
}

async function slotAction(slot, method, path, file) {
  const say = (text, isErr) => { $("slotAction").textContent = text; $("slotAction").className = "status" + (isErr ? " err" : ""); };
  if (method === "PUT" && !file) return say("choose a .wasm file for slot " + slot + " first", true);
  const resp = await fetch(path, { method, headers: auth(file ? { "Content-Type": "application/wasm" } : {}), body: file || undefined }).catch((e) => ({ ok: false, statusText: e.message }));
  let detail = "";
  try { const p = await resp.json(); detail = p.title ? p.title + (p.detail ? ": " + p.detail : "") : ""; } catch (_) {}
  if (!resp.ok) return say(slot + ": " + (resp.status || "") + " " + (detail || resp.statusText), true);
  say(slot + ": " + (method === "PUT" ? "module swapped in" : "rolled back"));
  refresh();
}

// History keeps the last n samples of named series, aligned on one time axis
// (null where a series had no value), as uPlot wants its data.
class History {
  constructor(n) { this.n = n; this.t = []; this.series = new Map(); }
  push(t, values) {
    this.t.push(t);
    for (const [k, arr] of this.series) arr.push(values.has(k) ? values.get(k) : null);
    for (const [k, v] of values) {
      if (!this.series.has(k)) this.series.set(k, [...new Array(this.t.length - 1).fill(null), v]);
    }
    if (this.t.length > this.n) {
      this.t.shift();
      for (const arr of this.series.values()) arr.shift();
    }
    for (const [k, arr] of this.series) if (arr.every((v) => v === null)) this.series.delete(k);
  }
}

const palette = ["#2a7de1", "#e1572a", "#2aa876", "#b04ad8", "#d8a62a", "#d84a7a", "#4ac3d8", "#7a7a7a"];

// LiveChart draws a History with uPlot, made anew when its series change.
class LiveChart {
  // incrs, if given, are the y axis's tick steps (whole numbers for counts).
  constructor(id, title, fmt, incrs) { this.root = $(id); this.title = title; this.fmt = fmt; this.incrs = incrs; this.keys = ""; this.plot = null; }
  draw(h) {
    const keys = [...h.series.keys()].sort();
    const data = [h.t, ...keys.map((k) => h.series.get(k))];
    if (keys.length === 0 || h.t.length === 0) {
      if (this.plot) { this.plot.destroy(); this.plot = null; }
      this.keys = "";
      this.root.replaceChildren(el("h3", this.title), el("div", "nothing to draw yet", "empty"));
      return;
    }
    if (this.plot && keys.join("\n") === this.keys) { this.plot.setData(data); return; }
    if (this.plot) this.plot.destroy();
    this.root.replaceChildren();
    this.keys = keys.join("\n");
    const fmt = this.fmt;
    this.plot = new uPlot({
      title: this.title,
      width: Math.max(300, this.root.clientWidth),
      height: 200,
      scales: { x: { time: true } },
      series: [{}, ...keys.map((k, i) => ({ label: k, stroke: palette[i % palette.length], width: 1.5, spanGaps: false, value: (u, v) => (v === null ? "" : fmt(v)) }))],
      axes: [{}, { size: 84, values: (u, vals) => vals.map(fmt), ...(this.incrs ? { incrs: this.incrs } : {}) }],
    }, data, this.root);
  }
}

const hist = { bitrate: new History(150), viewers: new History(150), cpu: new History(150), rss: new History(150) };
const charts = {
  bitrate: new LiveChart("chartBitrate", "Bitrate per stream", kbps),
  viewers: new LiveChart("chartViewers", "Viewers per stream", (v) => String(Math.round(v)), [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]),
  cpu: new LiveChart("chartCPU", "CPU per node (%)", (v) => v.toFixed(1)),
  rss: new LiveChart("chartRSS", "RSS per node (MB)", (v) => (v / 1048576).toFixed(1)),
};

// section runs one section's refresh, showing its error in place.
async function section(statusId, load) {
  try {
    await load();
    $(statusId).textContent = "";
    $(statusId).className = "status";
  } catch (e) {
    $(statusId).textContent = e.message;
    $(statusId).className = "status err";
  }
}

async function refresh() {
  const now = Date.now() / 1000;
  await Promise.all([
    section("clusterStatus", async () => renderMembers(await getJSON("/v1/cluster"))),
    section("listStatus", async () => {
      const { streams } = await getJSON("/v1/streams");
      renderStreams(streams);
      hist.bitrate.push(now, new Map(streams.map((s) => [s.stream, s.bitrateBps || 0])));
      hist.viewers.push(now, new Map(streams.map((s) => [s.stream, s.viewers])));
    }),
    section("procStatus", async () => {
      const st = await getJSON("/v1/status");
      renderProcesses(st);
      const nodes = (st.agents || []).flatMap((a) => a.nodes || []);
      hist.cpu.push(now, new Map(nodes.map((n) => [n.agent + "/" + n.id, n.cpu])));
      hist.rss.push(now, new Map(nodes.map((n) => [n.agent + "/" + n.id, n.rss])));
    }),
    section("slotStatus", async () => renderSlots(await getJSON("/v1/plugins"))),
  ]);
  for (const k of Object.keys(charts)) charts[k].draw(hist[k]);
}

$("publish").onclick = publish;
$("play").onclick = play;
$("stop").onclick = () => { stop("publish"); stop("play"); };
window.addEventListener("beforeunload", () => { stop("publish"); stop("play"); });
refresh();
setInterval(refresh, 2000);

// For tests: how many points each live chart has drawn, by chart.
window.sluiceChartPoints = () => Object.fromEntries(Object.entries(charts).map(([k, c]) => [k, c.plot ? c.plot.data[0].length : 0]));

// For tests: the number of video frames the player has decoded.
window.sluiceFramesDecoded = async () => {
  const s = sessions.play;
  if (!s) return 0;
  let n = 0;
  (await s.pc.getStats()).forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "video") n += r.framesDecoded || 0; });
  return n;
};
