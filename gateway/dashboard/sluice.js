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

async function refresh() {
  try {
    const resp = await fetch("/v1/streams", { headers: auth() });
    if (!resp.ok) {
      $("listStatus").textContent = "stream list: " + resp.status + (resp.status === 401 || resp.status === 403 ? " (a token with the read or admin role shows it)" : "");
      return;
    }
    $("listStatus").textContent = "";
    const { streams } = await resp.json();
    const body = $("streams");
    body.replaceChildren(...streams.map((s) => {
      const tr = document.createElement("tr");
      for (const v of [s.stream, s.agent || "", s.node || "", s.viewers, s.bitrateBps ? (s.bitrateBps / 1000).toFixed(0) + " kbit/s" : ""]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.append(td);
      }
      const td = document.createElement("td");
      const b = document.createElement("button");
      b.textContent = "Play";
      b.onclick = () => { $("stream").value = s.stream; play(); };
      td.append(b);
      tr.append(td);
      return tr;
    }));
  } catch (_) {}
}

$("publish").onclick = publish;
$("play").onclick = play;
$("stop").onclick = () => { stop("publish"); stop("play"); };
window.addEventListener("beforeunload", () => { stop("publish"); stop("play"); });
refresh();
setInterval(refresh, 2000);

// For tests: the number of video frames the player has decoded.
window.sluiceFramesDecoded = async () => {
  const s = sessions.play;
  if (!s) return 0;
  let n = 0;
  (await s.pc.getStats()).forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "video") n += r.framesDecoded || 0; });
  return n;
};
