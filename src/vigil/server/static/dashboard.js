// Dashboard: camera tiles with the live preview and health, and the latest alarms as they arrive.

import { can, get, media, post } from "./api.js";
import { onLive, recentAlarms } from "./live.js";
import { busy, fill, fmtScore, fmtTime, h, mediaImg, message, showError, stateBadge } from "./ui.js";

const POLL_MS = 3000;
/** Live MJPEG streams per page; each holds one of the browser's ~6 connections to the server. */
const MAX_STREAMS = 4;
const SNAPSHOT_MS = 2000;
const BLANK = "data:image/gif;base64,R0lGODlhAQABAAAAACw=";
/** Camera states in which new frames come (or will come again soon). */
const RUNNING = ["running", "starting", "restarting", "offline"];

/** One alarm as the list shows it, from a list row (AlarmInfo) or a live `alarm` event. */
function normalise(a) {
  return {
    id: a.id ?? a.alarm_id,
    identity: a.kind === "stranger" ? "stranger" : a.identity,
    gallery: a.gallery,
    camera: a.camera,
    score: a.score,
    threshold: a.threshold,
    ts: a.captured_at ?? a.ts,
    crop: a.crop_sha256,
    state: a.state || "pending",
  };
}

export function alarmItem(a, isNew) {
  const al = normalise(a);
  const label = `${al.identity}, ${al.gallery ?? "no gallery"}, on ${al.camera}`;
  return h(
    "li",
    { class: `alarm-item${isNew ? " new" : ""}`, dataset: { alarmId: String(al.id) } },
    h(
      "a",
      { href: `#/alarms/${al.id}`, "aria-label": `Review alarm ${al.id}: ${label}` },
      al.crop ? mediaImg(media(al.crop), `Face seen on ${al.camera}`, "thumb") : h("span", { class: "noimg thumb" }, "no crop"),
      h(
        "span",
        { class: "alarm-text" },
        h("strong", { class: "identity" }, al.identity),
        " ",
        isNew ? [h("span", { class: "badge new-badge" }, "new"), " "] : null,
        stateBadge(al.state),
        h("br"),
        " ",
        `watchlist ${al.gallery ?? "—"} · camera ${al.camera}`,
        h("br"),
        " ",
        h("span", { class: "muted" }, `score ${fmtScore(al.score)} ≥ threshold ${fmtScore(al.threshold)} · ${fmtTime(al.ts)}`),
      ),
    ),
  );
}

function stats(c) {
  const hl = c.health || {};
  return [
    ["state", stateBadge(hl.state || "unknown")],
    ["fps", (hl.fps ?? 0).toFixed(1)],
    ["frames", hl.frames ?? 0],
    ["dropped", hl.dropped ?? 0],
    ["alarms", hl.alarms ?? 0],
  ];
}

export async function render(root) {
  const tiles = h("div", { class: "tiles" });
  const list = h("ol", { class: "alarm-list", "aria-label": "Latest alarms" });
  const camSlot = h("div", { class: "slot" });
  fill(
    root,
    h("h1", {}, "Dashboard"),
    h(
      "div",
      { class: "dash" },
      h("section", { "aria-labelledby": "cams-h" }, h("h2", { id: "cams-h" }, "Cameras"), camSlot, tiles),
      h(
        "section",
        { "aria-labelledby": "alarms-h", class: "dash-alarms" },
        h("h2", { id: "alarms-h" }, "Latest alarms"),
        h("p", { class: "muted small" }, "New alarms appear here as they happen. Each one is a request for human review."),
        list,
      ),
    ),
  );

  const tileByName = new Map();
  const timers = [];
  let stopped = false;

  function tileFor(c, index) {
    const img = h("img", { class: "preview", alt: `Live view of camera ${c.name}` });
    const note = h("span", { class: "preview-note" }, "waiting for a picture…");
    const body = h("div", { class: "tile-stats" });
    const err = h("div", { class: "tile-error" });
    const actions = h("div", { class: "actions" });
    const tile = h(
      "article",
      { class: "tile", "aria-label": `Camera ${c.name}` },
      h("h3", {}, c.name, c.site ? h("span", { class: "muted" }, ` · ${c.site}`) : null),
      h("div", { class: "preview-box" }, img, note, h("span", { class: "still-label" }, "last picture")),
      body,
      err,
      actions,
    );
    const t = { name: c.name, tile, img, note, body, err, actions, canStream: index < MAX_STREAMS, mode: null, snapTimer: null, pictureTimer: null };
    // Chromium may fire no load event for the frames of a multipart (MJPEG) stream: look at the picture.
    const check = () => {
      const shown = img.naturalWidth > 1 && !img.src.startsWith("data:");
      tile.classList.toggle("has-picture", shown);
      if (shown) img.classList.remove("broken");
    };
    img.addEventListener("load", check);
    img.addEventListener("error", () => {
      tile.classList.remove("has-picture");
      img.classList.add("broken");
      note.textContent = t.mode === "still" ? "no picture yet" : "no picture (the stream is not available)";
    });
    t.pictureTimer = setInterval(check, 500);
    return t;
  }

  /**
   * What a tile shows: the live MJPEG stream while its camera runs (the first MAX_STREAMS cameras), a
   * snapshot refreshed every few seconds for the others, and the last snapshot of a camera that is not
   * running (finished, stopped, failed): a stream would never get a new frame.
   */
  function setMode(t, state) {
    const live = RUNNING.includes(state);
    const mode = live ? (t.canStream ? "stream" : "poll") : "still";
    if (mode === t.mode) return;
    t.mode = mode;
    clearInterval(t.snapTimer);
    t.snapTimer = null;
    const base = `/api/cameras/${encodeURIComponent(t.name)}`;
    const snapshot = () => {
      t.img.src = `${base}/snapshot.jpg?t=${Date.now()}`;
    };
    t.tile.classList.remove("has-picture");
    t.img.classList.remove("broken");
    t.tile.dataset.mode = mode;
    if (mode === "stream") {
      t.note.textContent = "waiting for a picture…";
      t.img.alt = `Live view of camera ${t.name}`;
      t.img.src = `${base}/preview.mjpg?t=${Date.now()}`;
    } else if (mode === "poll") {
      t.note.textContent = "waiting for a picture…";
      t.img.alt = `Live view of camera ${t.name}`;
      snapshot();
      t.snapTimer = setInterval(snapshot, SNAPSHOT_MS);
    } else {
      t.note.textContent = "loading the last picture…";
      t.img.alt = `Last picture of camera ${t.name} (${state || "not running"})`;
      snapshot();
    }
  }

  function updateTile(t, c) {
    fill(
      t.body,
      h(
        "dl",
        { class: "mini" },
        stats(c).map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))),
      ),
    );
    setMode(t, c.health?.state);
    const last = c.health?.last_error;
    fill(t.err, last ? h("small", { class: "error-text" }, last) : null);
    if (can.manage()) {
      const running = RUNNING.includes(c.health?.state);
      const b = h("button", { type: "button", class: "secondary small" }, running ? "Stop" : "Start");
      b.addEventListener("click", async () => {
        try {
          const updated = await busy(b, running ? "Stopping…" : "Starting…", () =>
            post(`/api/cameras/${encodeURIComponent(c.name)}/${running ? "stop" : "start"}`),
          );
          updateTile(t, updated);
        } catch (err) {
          showError(err, null, `Could not ${running ? "stop" : "start"} ${c.name}`);
        }
      });
      fill(t.actions, b);
    }
  }

  async function refreshCameras() {
    let cams;
    try {
      cams = await get("/api/cameras");
    } catch (err) {
      if (!stopped) fill(camSlot, message("error", "Camera status unavailable", err.detail, err.hint));
      return;
    }
    if (stopped) return;
    fill(camSlot);
    const seen = new Set();
    for (const c of cams) {
      seen.add(c.name);
      let t = tileByName.get(c.name);
      if (!t) {
        t = tileFor(c, tileByName.size);
        tileByName.set(c.name, t);
        tiles.append(t.tile);
      }
      updateTile(t, c);
    }
    for (const [name, t] of tileByName) {
      if (!seen.has(name)) {
        stopTile(t);
        t.tile.remove();
        tileByName.delete(name);
      }
    }
    if (!cams.length) {
      fill(
        camSlot,
        message("info", null, "No cameras yet.", can.manage() ? "Add one on the Cameras page." : null),
      );
    }
  }

  function stopTile(t) {
    clearInterval(t.snapTimer);
    clearInterval(t.pictureTimer);
    t.img.src = BLANK; // closes the MJPEG connection
  }

  const shown = new Set();
  function addAlarm(a, isNew) {
    const al = normalise(a);
    if (al.id == null || shown.has(al.id)) return;
    shown.add(al.id);
    const item = alarmItem(a, isNew);
    if (isNew) list.prepend(item);
    else list.append(item);
    if (list.children.length > 30) list.lastChild.remove();
  }

  const unsubscribe = onLive((ev) => {
    if (stopped) return;
    if (ev.type === "alarm") {
      list.querySelector(".empty")?.remove();
      addAlarm(ev, true);
    } else if (ev.type === "alarm_reviewed") {
      const li = list.querySelector(`[data-alarm-id="${ev.alarm_id}"]`);
      const badge = li?.querySelector(".badge[class*='state-']");
      if (badge) badge.replaceWith(stateBadge(ev.state));
    } else if (ev.type.startsWith("camera_")) {
      refreshCameras();
    }
  });

  await refreshCameras();
  timers.push(setInterval(refreshCameras, POLL_MS));

  try {
    const rows = await get("/api/alarms", { limit: 20 });
    // Alarms that arrived live before this page opened stay marked as new.
    const live = recentAlarms();
    for (const ev of live.slice().reverse()) addAlarm(ev, true);
    for (const row of rows) addAlarm(row, false);
    if (!list.children.length) list.append(h("li", { class: "empty muted" }, "No alarms yet."));
  } catch (err) {
    showError(err, null, "Could not load the alarms");
  }

  return () => {
    stopped = true;
    unsubscribe();
    for (const id of timers) clearInterval(id);
    for (const t of tileByName.values()) stopTile(t);
  };
}
