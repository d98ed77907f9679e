// Cameras: the list with health; add, start, stop and delete for supervisors and admins.

import { can, del, get, post } from "./api.js";
import { onLive } from "./live.js";
import { busy, checkbox, confirmDialog, field, fill, fmtTime, h, message, select, showError, stateBadge, toast } from "./ui.js";

const KINDS = ["fixed", "ptz", "street-light", "entrance", "mobile", "body-worn", "other"];
const POLL_MS = 3000;
const enc = encodeURIComponent;

export async function render(root) {
  const slot = h("div", { class: "slot" });
  const table = h("div", { class: "table-wrap" });
  fill(
    root,
    h("h1", {}, "Cameras"),
    can.manage() ? null : message("info", null, "Read-only: supervisors and admins add, start and stop cameras."),
    slot,
    table,
    can.manage() ? addForm(() => load()) : null,
  );
  let stopped = false;

  async function load() {
    try {
      const rows = await get("/api/cameras");
      if (stopped) return;
      fill(slot);
      fill(table, rows.length ? cameraTable(rows, load) : h("p", { class: "muted" }, "No cameras yet."));
    } catch (err) {
      if (!stopped) fill(slot, message("error", "Could not load the cameras", err.detail, err.hint));
    }
  }
  await load();
  const timer = setInterval(() => {
    // Do not redraw under a pressed button or an open dialog.
    if (!document.querySelector("dialog[open]") && !table.querySelector("button[disabled]")) load();
  }, POLL_MS);
  const unsubscribe = onLive((ev) => {
    if (ev.type.startsWith("camera_")) load();
  });
  return () => {
    stopped = true;
    clearInterval(timer);
    unsubscribe();
  };
}

function cameraTable(rows, reload) {
  const manage = can.manage();
  return h(
    "table",
    { class: "grid", "aria-label": "Cameras" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Name", "Address", "Site", "Kind", "State", "FPS", "Frames", "Dropped", "Alarms", "Restarts", "Started"].map(
          (t) => h("th", { scope: "col" }, t),
        ),
        manage ? h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")) : null,
      ),
    ),
    h(
      "tbody",
      {},
      rows.map((c) => {
        const hl = c.health;
        const running = ["running", "starting", "restarting", "offline"].includes(hl.state);
        return h(
          "tr",
          { dataset: { camera: c.name } },
          h("td", {}, c.name),
          h("td", { class: "url" }, c.url),
          h("td", {}, c.site ?? "—", c.location ? h("br") : null, c.location ? h("small", { class: "muted" }, c.location.join(", ")) : null),
          h("td", {}, c.kind),
          h(
            "td",
            {},
            stateBadge(hl.state),
            c.enabled ? null : h("small", { class: "muted" }, " (disabled)"),
            hl.last_error ? [h("br"), h("small", { class: "error-text" }, hl.last_error)] : null,
          ),
          h("td", {}, hl.fps.toFixed(1)),
          h("td", {}, String(hl.frames)),
          h("td", {}, String(hl.dropped)),
          h("td", {}, String(hl.alarms)),
          h("td", {}, String(hl.restarts)),
          h("td", {}, fmtTime(hl.started_at)),
          manage
            ? h(
                "td",
                { class: "actions left" },
                h(
                  "button",
                  {
                    type: "button",
                    class: "secondary small",
                    "aria-label": `${running ? "Stop" : "Start"} camera ${c.name}`,
                    onclick: (e) => act(e.currentTarget, c.name, running ? "stop" : "start", reload),
                  },
                  running ? "Stop" : "Start",
                ),
                h(
                  "button",
                  {
                    type: "button",
                    class: "danger small",
                    "aria-label": `Delete camera ${c.name}`,
                    onclick: (e) => remove(e.currentTarget, c.name, reload),
                  },
                  "Delete",
                ),
              )
            : null,
        );
      }),
    ),
  );
}

async function act(button, name, action, reload) {
  try {
    await busy(button, action === "stop" ? "Stopping…" : "Starting…", () => post(`/api/cameras/${enc(name)}/${action}`));
    toast("ok", `Camera ${name}`, action === "stop" ? "stopped" : "started");
  } catch (err) {
    showError(err, null, `Could not ${action} ${name}`);
  }
  await reload();
}

async function remove(button, name, reload) {
  const ok = await confirmDialog(`Delete camera ${name}?`, "Its worker stops. Alarms it raised are kept.");
  if (!ok) return;
  try {
    await busy(button, "Deleting…", () => del(`/api/cameras/${enc(name)}`));
    toast("ok", "Camera deleted", name);
  } catch (err) {
    showError(err, null, `Could not delete ${name}`);
  }
  await reload();
}

function addForm(reload) {
  const name = h("input", { name: "name", required: true, autocomplete: "off" });
  const url = h("input", { name: "url", required: true, autocomplete: "off", placeholder: "rtsp://host/stream" });
  const site = h("input", { name: "site", autocomplete: "off" });
  const location = h("input", { name: "location", autocomplete: "off", placeholder: "48.8566,2.3522" });
  const kind = select({ name: "kind" }, KINDS, "fixed");
  const startBox = checkbox("Start it now", { name: "start", checked: true });
  const start = startBox.querySelector("input");
  const slot = h("div", { class: "slot" });
  const button = h("button", { type: "submit" }, "Add camera");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "add-cam-h", novalidate: true },
    h("h2", { id: "add-cam-h" }, "Add a camera"),
    h("div", { class: "row" }, field("Camera name", name), field("Kind", kind)),
    field(
      "Address",
      url,
      "rtsp://, rtmp://, http(s):// (MJPEG too), webcam:N, or a video file or image folder on the server.",
    ),
    h("div", { class: "row" }, field("Site", site), field("Location (LAT,LON)", location, "Decimal degrees, optional.")),
    startBox,
    slot,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(slot);
    if (!name.value.trim() || !url.value.trim()) {
      fill(slot, message("error", "Missing information", "Give the camera a name and an address."));
      return;
    }
    const loc = location.value.trim();
    if (loc && !/^\s*-?\d+(\.\d+)?\s*,\s*-?\d+(\.\d+)?\s*$/.test(loc)) {
      fill(slot, message("error", "Location not understood", "Write it as LAT,LON in decimal degrees, e.g. 48.8566,2.3522."));
      return;
    }
    const body = {
      name: name.value.trim(),
      url: url.value.trim(),
      site: site.value.trim() || null,
      location: loc || null,
      kind: kind.value,
      start: start.checked,
    };
    try {
      const c = await busy(button, "Adding…", () => post("/api/cameras", body));
      fill(slot, message("ok", "Camera added", `${c.name}: ${c.health.state}.`));
      toast("ok", "Camera added", c.name);
      form.reset();
      await reload();
    } catch (err) {
      showError(err, slot, "Could not add the camera");
    }
  });
  return form;
}
