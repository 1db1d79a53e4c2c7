// hlmat play --replay: any trajectory file, click by click, with the IoU curve.
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const canvas = $("canvas"), ctx = canvas.getContext("2d");
let episode = 0, step = 0, frame = null;

async function get(path) {
  let resp;
  try {
    resp = await fetch(path, { headers: { "X-HLMAT-Token": token } });
  } catch (e) {
    $("error").textContent = "the server does not answer (" + e + "): is hlmat play --replay still running?";
    $("error").hidden = false;
    throw e;
  }
  const data = await resp.json().catch(() => ({ detail: resp.statusText }));
  if (!resp.ok) {
    $("error").textContent = "error " + resp.status + ": " + (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail));
    $("error").hidden = false;
    throw new Error(data.detail);
  }
  $("error").hidden = true;
  return data;
}

function drawCurve(ious, k) {
  const c = $("curve"), g = c.getContext("2d"), w = c.width, h = c.height, pad = 20;
  g.clearRect(0, 0, w, h);
  g.strokeStyle = "#ccc";
  for (const thr of [0.85, 0.9]) { const y = h - pad - thr * (h - 2 * pad); g.beginPath(); g.moveTo(pad, y); g.lineTo(w - pad, y); g.stroke(); }
  const n = Math.max(1, ious.length - 1), X = (i) => pad + i * (w - 2 * pad) / n, Y = (v) => h - pad - v * (h - 2 * pad);
  g.fillStyle = "#666"; g.font = "10px sans-serif";
  g.fillText("1", 4, Y(1) + 3); g.fillText("0", 4, Y(0) + 3); g.fillText("85/90%", w - pad - 34, Y(0.9) - 3);
  g.fillText("0", X(0) - 3, h - 6); g.fillText(String(ious.length - 1) + " clicks", X(n) - 30, h - 6);
  g.strokeStyle = "#06c"; g.beginPath();
  ious.forEach((v, i) => (i ? g.lineTo(X(i), Y(v)) : g.moveTo(X(i), Y(v))));
  g.stroke();
  g.fillStyle = "#d00"; g.beginPath(); g.arc(X(k), Y(ious[k]), 4, 0, 2 * Math.PI); g.fill();
  g.fillStyle = "#333"; g.fillText((100 * ious[k]).toFixed(1) + "%", Math.min(X(k) + 6, w - 40), Y(ious[k]) - 6);
}

async function show() {
  frame = await get("api/replay/frame?episode=" + episode + "&step=" + step);
  const z = Math.max(1, Math.min(8, Math.floor(640 / Math.max(frame.width, frame.height))));
  canvas.width = frame.width; canvas.height = frame.height;
  canvas.style.width = frame.width * z + "px"; canvas.style.height = frame.height * z + "px";
  const img = new Image();
  img.onload = () => ctx.drawImage(img, 0, 0);
  img.src = frame.image;
  $("caption").textContent = frame.caption;
  $("who").textContent = frame.annotator + " \u00b7 " + frame.episode_id;
  $("step").textContent = step; $("steps").textContent = frame.num_steps;
  const c = frame.click;
  $("clickinfo").textContent = c ? (c.positive ? "positive" : "negative") + " click at (" + c.x + ", " + c.y + ")"
    + (c.t !== null && c.t !== undefined ? " at " + c.t.toFixed(1) + " s" : "") : "start state";
  drawCurve(frame.ious, step);
}

function go(dEpisode, dStep) {
  const n = $("episode").options.length;
  if (dEpisode) { episode = (episode + dEpisode + n) % n; step = 0; $("episode").value = String(episode); }
  if (dStep && frame) step = Math.max(0, Math.min(frame.num_steps, step + dStep));
  show().catch(() => {});
}

$("prev").addEventListener("click", () => go(0, -1));
$("nextstep").addEventListener("click", () => go(0, 1));
$("episode").addEventListener("change", (e) => { episode = Number(e.target.value); step = 0; show().catch(() => {}); });
document.addEventListener("keydown", (e) => {
  if (e.key === "ArrowLeft") go(0, -1);
  else if (e.key === "ArrowRight") go(0, 1);
  else if (e.key === "ArrowUp") { e.preventDefault(); go(-1, 0); }
  else if (e.key === "ArrowDown") { e.preventDefault(); go(1, 0); }
});
get("api/replay/episodes").then((d) => {
  for (const ep of d.episodes) {
    const o = document.createElement("option");
    o.value = String(ep.episode);
    o.textContent = ep.episode + ": " + ep.sample_id + " (" + ep.annotator + ", " + ep.clicks + " clicks, IoU " + (100 * ep.final_iou).toFixed(1) + "%)";
    $("episode").appendChild(o);
  }
  return show();
}).catch(() => {});
