"""The live viewer's single HTML page (kept as a Python string so it ships without package-data rules).

No build step and no external assets (the device may have no internet): the annotated stream is a plain
``<img>`` on ``/stream.mjpg``; a small script polls ``/api/latest`` every 500 ms and fills in the stats.
The access token, when the page was opened with ``?token=``, is passed on to both, and so is ``?stream=N``
(a multi-stream run: which stream to show; the selector lists every stream seen and follows new ones).
"""

from __future__ import annotations

__all__ = ["PAGE_HTML"]

PAGE_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgevision live</title>
<style>
 body{margin:0;font:14px system-ui,sans-serif;background:#111;color:#ddd;display:flex;flex-wrap:wrap}
 #view{flex:1 1 640px;padding:8px} #view img{width:100%;background:#000;min-height:120px;display:block}
 #side{flex:0 0 320px;padding:8px} h1{font-size:16px;margin:4px 0 8px} table{border-collapse:collapse;width:100%}
 td,th{padding:2px 6px;text-align:right;border-bottom:1px solid #333} td:first-child,th:first-child{text-align:left}
 .ok{color:#6d6} .bad{color:#e66} select{background:#222;color:#ddd}
</style></head>
<body>
<div id="view"><img id="stream" alt="annotated stream"></div>
<div id="side">
 <h1>edgevision <span id="status" class="bad">connecting</span></h1>
 <div id="streams"></div>
 <table id="stats">
  <tr><td>frame</td><td id="frame">-</td></tr>
  <tr><td>fps</td><td id="fps">-</td></tr>
  <tr><td>results</td><td id="frames">-</td></tr>
  <tr><td>dropped</td><td id="dropped">-</td></tr>
  <tr><td>latency p50 / p99 (ms)</td><td id="latency">-</td></tr>
  <tr><td>detections</td><td id="ndet">-</td></tr>
  <tr><td>source</td><td id="source">-</td></tr>
 </table>
 <div id="stagebox" style="display:none"><h1>stages (ms)</h1>
 <table><thead><tr><th>stage</th><th>p50</th><th>p99</th></tr></thead><tbody id="stages"></tbody></table></div>
 <h1>detections</h1>
 <table><tbody id="dets"></tbody></table>
 <p id="updated">-</p>
</div>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
let stream = new URLSearchParams(location.search).get("stream");  // null: the server's default (lowest id)
function q(extra) {
  const p = new URLSearchParams(extra || {});
  if (token) p.set("token", token);
  if (stream !== null) p.set("stream", stream);
  const s = p.toString(); return s ? "?" + s : "";
}
const $ = (id) => document.getElementById(id);
const f1 = (x) => (typeof x === "number" ? x.toFixed(1) : "-");
function startStream() {
  const img = $("stream");
  img.onerror = () => setTimeout(startStream, 1000);
  img.src = "stream.mjpg" + q({t: Date.now()});
}
function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
  return tr;
}
async function poll() {
  try {
    const r = await fetch("api/latest" + q(), {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    const d = await r.json(), s = d.stats || {}, res = d.result;
    $("status").textContent = s.running === false ? "stopped" : "live";
    $("status").className = "ok";
    const box = $("streams");
    if (d.streams.length > 1 && box.dataset.ids !== d.streams.join(",")) {  // (re)built when a stream appears
      const sel = document.createElement("select");
      for (const id of d.streams) {
        const o = document.createElement("option"); o.textContent = id; o.value = String(id);
        o.selected = id === d.stream_id; sel.appendChild(o);
      }
      sel.onchange = () => { stream = Number(sel.value); startStream(); };
      box.replaceChildren(sel);
      box.dataset.ids = d.streams.join(",");
    }
    $("frame").textContent = res ? res.frame : "-";
    $("fps").textContent = f1(s.fps);
    $("frames").textContent = s.frames ?? "-";
    $("dropped").textContent = s.dropped ?? "-";
    const l = s.latency_ms || {};
    $("latency").textContent = f1(l.p50) + " / " + f1(l.p99);
    $("ndet").textContent = res ? res.scores.length : "-";
    $("source").textContent = s.source || "-";
    const st = $("stages"); st.replaceChildren();
    const stages = Object.entries(s.stages || {});
    for (const [name, v] of stages) st.appendChild(row([name, f1(v.p50), f1(v.p99)]));
    $("stagebox").style.display = stages.length ? "" : "none";
    const dt = $("dets"); dt.replaceChildren();
    const ids = res && res.track_ids;  // set by `run --track`: "#12" before the class
    if (res) res.scores.slice(0, 20).forEach((sc, i) => dt.appendChild(
      row(ids ? ["#" + ids[i], res.classes[i], sc.toFixed(2)] : [res.classes[i], sc.toFixed(2)])));
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    $("status").textContent = "offline"; $("status").className = "bad";
  }
}
startStream();
poll();
setInterval(poll, 500);
</script>
</body></html>
"""
