// The operator's view of cudainfer-run: one tile per camera, polled from the
// service's own API. The token (when the service has one) lives in this
// tab's sessionStorage and goes only into an Authorization header: snapshots
// are fetched as blobs, so no address ever carries it.
"use strict";

const TOKEN_KEY = "cudainfer-run-token";
const LIST_EVERY_MS = 1000;
const SNAPSHOT_EVERY_MS = 400;
const HISTORY_MS = 5 * 60 * 1000;

const tiles = new Map(); // camera id -> tile state
let polling = null;
let announced = new Map(); // camera id -> last announced state

const $ = (id) => document.getElementById(id);

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

class Unauthorised extends Error {}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const t = token();
  if (t) headers.set("Authorization", "Bearer " + t);
  const reply = await fetch(path, { ...options, headers, cache: "no-store", credentials: "omit" });
  if (reply.status === 401) throw new Unauthorised();
  return reply;
}

async function errorOf(reply) {
  try {
    const body = await reply.json();
    if (body && body.error) return body.error;
  } catch (_) { /* not JSON */ }
  return "HTTP " + reply.status;
}

function announce(text) {
  $("announce").textContent = text;
}

function showLogin(message) {
  stopPolling();
  $("view").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("summary").textContent = "Sign in to see the cameras.";
  $("token").focus();
}

function showView() {
  $("login").hidden = true;
  $("view").hidden = false;
  $("logout").hidden = !token();
}

function fmt(v, digits) {
  return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
}

function makeTile(camera) {
  const node = $("tile-template").content.firstElementChild.cloneNode(true);
  node.dataset.camera = camera.id;
  const q = (sel) => node.querySelector(sel);
  q(".name").textContent = camera.id;
  q(".name").id = "name-" + camera.id;
  node.querySelector("article").setAttribute("aria-labelledby", "name-" + camera.id);
  q(".snapshot").alt = "Latest frame of " + camera.id + " with its detections";
  q(".remove").textContent = "Remove " + camera.id;
  q(".remove").addEventListener("click", () => removeCamera(camera.id, q(".remove")));
  const tile = { node, q, history: [], url: null, inFlight: false, lastSnap: 0, state: null };
  $("tiles").appendChild(node);
  return tile;
}

function updateTile(tile, c) {
  const q = tile.q;
  if (tile.state !== c.state) {
    tile.node.className = "tile state-" + c.state;
    tile.state = c.state;
  }
  q(".state").textContent = c.state;
  q(".error-text").textContent = c.state === "running" || !c.last_error ? "" : "Last error: " + c.last_error;
  q(".fps").textContent = fmt(c.fps, 1);
  q(".latency").textContent = fmt(c.latency_p50_ms, 0) + " / " + fmt(c.latency_p99_ms, 0) + " ms";
  q(".frames").textContent = c.frames_in + " / " + c.frames_out;
  q(".dropped").textContent = String(c.dropped);
  q(".skipped").textContent = String(c.skipped);
  q(".reconnects").textContent = String(c.reconnects);
  const objects = Object.entries(c.objects || {});
  q(".objects").textContent = objects.length
    ? "Objects: " + objects.map(([label, n]) => n + " " + label).join(", ")
    : "Objects: none";
  const now = Date.now();
  tile.history.push({ t: now, fps: c.fps, latency: c.latency_p50_ms });
  while (tile.history.length && tile.history[0].t < now - HISTORY_MS) tile.history.shift();
  drawChart(q("canvas"), tile.history, now);
  const previous = announced.get(c.id);
  if (previous !== undefined && previous !== c.state) {
    announce(c.id + " is now " + c.state + (c.state === "retrying" && c.last_error ? ": " + c.last_error : ""));
  }
  announced.set(c.id, c.state);
}

// Two lines on one canvas, each scaled to its own maximum, which the
// canvas's label tells.
function drawChart(canvas, history, now) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const fpsMax = Math.max(1, ...history.map((p) => p.fps || 0));
  const latMax = Math.max(1, ...history.map((p) => p.latency || 0));
  const x = (t) => w - ((now - t) / HISTORY_MS) * w;
  const line = (colour, value, max) => {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let started = false;
    for (const p of history) {
      const v = value(p);
      if (v === null || v === undefined) { started = false; continue; }
      const y = h - 4 - (v / max) * (h - 8);
      if (started) ctx.lineTo(x(p.t), y); else ctx.moveTo(x(p.t), y);
      started = true;
    }
    ctx.stroke();
  };
  line("#7cc4ff", (p) => p.fps, fpsMax);
  line("#ffcf5c", (p) => p.latency, latMax);
  const last = history[history.length - 1] || {};
  canvas.setAttribute(
    "aria-label",
    "Chart: fps up to " + fmt(fpsMax, 1) + ", latency p50 up to " + fmt(latMax, 0) +
      " ms over the last 5 minutes; now " + fmt(last.fps, 1) + " fps, " + fmt(last.latency, 0) + " ms",
  );
  ctx.fillStyle = "#b8c0c8";
  ctx.font = "11px sans-serif";
  ctx.fillText(fmt(fpsMax, 1) + " fps", 4, 12);
  ctx.fillText(fmt(latMax, 0) + " ms", 4, 24);
}

function snapshotWidth(tile) {
  const shown = tile.q(".frame").clientWidth * (window.devicePixelRatio || 1);
  return Math.min(1920, Math.max(160, Math.round(shown / 32) * 32 || 640));
}

async function refreshSnapshot(tile, id) {
  if (tile.inFlight || document.hidden) return;
  if (tile.state !== "running") return;
  tile.inFlight = true;
  try {
    const reply = await api("/cameras/" + encodeURIComponent(id) + "/snapshot.jpg?width=" + snapshotWidth(tile));
    if (!reply.ok) return;
    const blob = await reply.blob();
    if (!tiles.has(id)) return;
    const url = URL.createObjectURL(blob);
    const img = tile.q(".snapshot");
    img.onload = () => {
      tile.q(".frame").classList.add("has-frame");
      tile.node.dataset.frameWidth = String(img.naturalWidth);
      tile.node.dataset.frameHeight = String(img.naturalHeight);
      tile.node.dataset.frames = String(Number(tile.node.dataset.frames || 0) + 1);
    };
    img.src = url;
    if (tile.url) URL.revokeObjectURL(tile.url);
    tile.url = url;
  } catch (e) {
    if (e instanceof Unauthorised) showLogin("The token was refused.");
  } finally {
    tile.inFlight = false;
  }
}

async function refreshList() {
  let cameras;
  try {
    const reply = await api("/cameras");
    if (!reply.ok) {
      $("summary").textContent = "The service answered: " + (await errorOf(reply));
      return;
    }
    cameras = await reply.json();
  } catch (e) {
    if (e instanceof Unauthorised) {
      showLogin(token() ? "The token was refused." : "");
    } else {
      $("summary").textContent = "The service does not answer.";
    }
    return;
  }
  showView();
  const seen = new Set();
  for (const c of cameras) {
    seen.add(c.id);
    let tile = tiles.get(c.id);
    if (!tile) {
      tile = makeTile(c);
      tiles.set(c.id, tile);
    }
    updateTile(tile, c);
  }
  for (const [id, tile] of tiles) {
    if (!seen.has(id)) dropTile(id, tile);
  }
  const running = cameras.filter((c) => c.state === "running").length;
  $("summary").textContent = cameras.length + " camera" + (cameras.length === 1 ? "" : "s") + ", " + running + " running";
  $("empty").hidden = cameras.length > 0;
}

function dropTile(id, tile) {
  if (tile.url) URL.revokeObjectURL(tile.url);
  tile.node.remove();
  tiles.delete(id);
  announced.delete(id);
}

async function removeCamera(id, button) {
  button.disabled = true;
  try {
    const reply = await api("/cameras/" + encodeURIComponent(id), { method: "DELETE" });
    if (reply.status === 204 || reply.status === 404) {
      const tile = tiles.get(id);
      if (tile) dropTile(id, tile);
      announce(id + " removed");
      $("add-uri").focus();
    } else {
      announce("Cannot remove " + id + ": " + (await errorOf(reply)));
      button.disabled = false;
    }
  } catch (e) {
    if (e instanceof Unauthorised) showLogin("The token was refused.");
    button.disabled = false;
  }
}

async function addCamera(event) {
  event.preventDefault();
  const uri = $("add-uri").value.trim();
  const result = $("add-result");
  result.textContent = "Adding…";
  try {
    const reply = await api("/cameras", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ uri, loop: $("add-loop").checked }),
    });
    if (reply.status === 201) {
      const camera = await reply.json();
      result.textContent = "Added " + camera.id + ".";
      $("add-uri").value = "";
      refreshList();
    } else {
      result.textContent = "Not added: " + (await errorOf(reply));
    }
  } catch (e) {
    if (e instanceof Unauthorised) showLogin("The token was refused.");
    else result.textContent = "The service does not answer.";
  }
}

function tick() {
  refreshList();
}

function snapshots() {
  for (const [id, tile] of tiles) refreshSnapshot(tile, id);
}

function startPolling() {
  stopPolling();
  tick();
  polling = [setInterval(tick, LIST_EVERY_MS), setInterval(snapshots, SNAPSHOT_EVERY_MS)];
}

function stopPolling() {
  if (polling) polling.forEach(clearInterval);
  polling = null;
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    startPolling();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    for (const [id, tile] of tiles) dropTile(id, tile);
    showLogin("");
  });
  $("add-form").addEventListener("submit", addCamera);
  startPolling();
});
