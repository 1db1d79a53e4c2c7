// hlmat play: the page sends pixel clicks; the server steps the env and answers with its render.
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const canvas = document.getElementById("canvas");
const ctx = canvas.getContext("2d");
const $ = (id) => document.getElementById(id);
let state = null;
let shownAt = performance.now();
let queue = Promise.resolve();  // requests run one at a time, in the order of the clicks

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function call(method, path, body) {
  const opts = { method, headers: { "X-HLMAT-Token": token } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    showError("the server does not answer (" + e + "): is hlmat play still running?");
    throw e;
  }
  const data = await resp.json().catch(() => ({ detail: resp.statusText }));
  if (!resp.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    showError("error " + resp.status + ": " + detail);
    throw new Error(detail);
  }
  showError("");
  return data;
}

function scale(s) {  // an integer zoom so that every image pixel maps to whole screen pixels
  return Math.max(1, Math.min(8, Math.floor(640 / Math.max(s.width, s.height))));
}

function render(s) {
  const newSample = !state || state.sample_id !== s.sample_id || (state.ended && !s.ended);
  state = s;
  if (newSample) shownAt = performance.now();
  const z = scale(s);
  if (canvas.width !== s.width || canvas.height !== s.height) {
    canvas.width = s.width;
    canvas.height = s.height;
  }
  canvas.style.width = s.width * z + "px";
  canvas.style.height = s.height * z + "px";
  const img = new Image();
  img.onload = () => { ctx.drawImage(img, 0, 0); canvas.dataset.clicks = String(s.num_clicks); };
  img.src = s.image;
  $("caption").textContent = s.caption ? "\u201c" + s.caption + "\u201d" : s.start === "box" ? "(no description: refine the object in the box)" : "(this dataset has no descriptions: start the server with --start box to show which object to annotate)";
  $("sample").textContent = "sample " + s.sample_id;
  $("progress").textContent = (s.index + 1) + " of " + s.n_samples;
  $("clicks").textContent = s.num_clicks;
  $("budget").textContent = s.max_clicks;
  $("iou").textContent = s.iou === null ? "shown after finish" : (100 * s.iou).toFixed(1) + "%";
  $("recorded").textContent = s.recorded + " episode(s) recorded in this session";
  $("result").textContent = s.ended
    ? (s.finished ? "Finished" : "Click budget reached") + ": IoU " + (100 * s.iou).toFixed(1) + "% after "
      + s.num_clicks + " clicks (" + s.seconds.toFixed(1) + " s). Press N for the next sample."
    : "";
  $("curve").textContent = s.ious && s.ious.length
    ? "IoU after each click: " + s.ious.map((v) => (100 * v).toFixed(1)).join(", ")
    : "";
  $("finish").disabled = s.ended;
  document.body.dataset.ended = String(s.ended);
  document.body.dataset.sample = s.sample_id;
}

function enqueue(fn) {
  queue = queue.then(fn).then(render).catch(() => {});
  return queue;
}

function pixelOf(event) {
  const r = canvas.getBoundingClientRect();
  const x = Math.floor((event.clientX - r.left) * canvas.width / r.width);
  const y = Math.floor((event.clientY - r.top) * canvas.height / r.height);
  return [x, y];
}

function sendClick(event, positive) {
  event.preventDefault();
  const [x, y] = pixelOf(event);
  const t = (performance.now() - shownAt) / 1000;
  enqueue(() => call("POST", "api/click", { x, y, positive, client_t: t }));
}

canvas.addEventListener("click", (e) => sendClick(e, !e.shiftKey));
canvas.addEventListener("contextmenu", (e) => sendClick(e, false));
$("finish").addEventListener("click", () => enqueue(() => call("POST", "api/finish")));
$("next").addEventListener("click", () => enqueue(() => call("POST", "api/next", {})));
document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;  // leave the browser's shortcuts alone
  if (e.key === "f" || e.key === "F" || e.key === "Enter") {
    e.preventDefault();  // Enter on a focused button would also press it
    enqueue(() => call("POST", "api/finish"));
  } else if (e.key === "n" || e.key === "N") {
    e.preventDefault();
    enqueue(() => call("POST", "api/next", {}));
  }
});
enqueue(() => call("GET", "api/state"));
