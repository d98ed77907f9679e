// The live event stream (/api/events, Server-Sent Events), shared by every page of a session.

import { can } from "./api.js";

const TYPES = ["alarm", "alarm_reviewed", "camera_status", "camera_offline", "camera_online", "compare_progress"];
const KEEP = 50;

const state = {
  source: null,
  listeners: new Set(),
  /** Alarm events received during this session, newest first. */
  alarms: [],
  connected: false,
};

function indicator() {
  const el = document.getElementById("live");
  if (!el) return;
  el.hidden = !state.source;
  el.textContent = state.connected ? "● Live" : "○ Reconnecting…";
  el.classList.toggle("down", !state.connected);
  el.title = state.connected
    ? "Alarms and camera changes arrive as they happen"
    : "The live event stream is down; the browser retries every few seconds";
}

/** Open the stream (roles that may watch live only). Safe to call twice. */
export function startLive() {
  if (state.source || !can.live()) return;
  const es = new EventSource("/api/events");
  state.source = es;
  es.addEventListener("open", () => {
    state.connected = true;
    indicator();
  });
  es.addEventListener("error", () => {
    state.connected = false;
    indicator();
  });
  for (const type of TYPES) {
    es.addEventListener(type, (ev) => {
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return;
      }
      data.type = data.type || type;
      if (type === "alarm") {
        state.alarms.unshift(data);
        state.alarms.length = Math.min(state.alarms.length, KEEP);
      }
      for (const fn of state.listeners) fn(data);
    });
  }
  indicator();
}

export function stopLive() {
  state.source?.close();
  state.source = null;
  state.connected = false;
  state.alarms = [];
  indicator();
}

/** Call ``fn(event)`` for each live event; returns the function that unsubscribes. */
export function onLive(fn) {
  state.listeners.add(fn);
  return () => state.listeners.delete(fn);
}

/** Alarm events received in this session, newest first. */
export function recentAlarms() {
  return state.alarms.slice();
}
