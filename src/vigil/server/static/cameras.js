// Cameras: the list with health; add, edit (site, kind, location, retention, sightings, stranger rule),
// start, stop and delete for supervisors and admins.

import { can, del, get, patch, post } from "./api.js";
import { onLive } from "./live.js";
import {
  busy,
  checkbox,
  confirmDialog,
  dialogShell,
  field,
  fill,
  fmtTime,
  h,
  message,
  openDialog,
  select,
  showError,
  stateBadge,
  toast,
} from "./ui.js";

const KINDS = ["fixed", "ptz", "street-light", "entrance", "mobile", "body-worn", "other"];
const POLL_MS = 3000;
const enc = encodeURIComponent;
const LOCATION = /^\s*-?\d+(\.\d+)?\s*,\s*-?\d+(\.\d+)?\s*$/;
const RETENTION_HELP = "Frame snapshots (and sightings) are deleted this many days after capture; empty: no time limit.";
const SIGHTINGS_HELP =
  "Keep who was seen when on this camera (sightings) for investigations; off: only alarms are kept.";

/** The retention and sightings inputs shared by the add and edit forms. */
function retentionInputs(camera = {}) {
  const days = h("input", {
    name: "retention_days",
    type: "number",
    min: 1,
    step: 1,
    value: camera.retention_days ?? "",
    placeholder: "no limit",
  });
  const keepBox = checkbox("Keep sightings (investigations)", { name: "keep_sightings", checked: Boolean(camera.keep_sightings) });
  return { days, keep: keepBox.querySelector("input"), keepBox };
}

/** A retention input's value: a whole number of days, null for no limit, or an error text. */
function retentionValue(input) {
  const v = input.value.trim();
  if (!v) return null;
  const n = Number(v);
  return Number.isInteger(n) && n >= 1 ? n : "Give the retention as a whole number of days (1 or more), or leave it empty.";
}

const STRANGER_HELP =
  "Restricted places only: every face is checked against these galleries (comma-separated) and one that matches none " +
  "of them during the hours raises a stranger alarm; its face crop is kept for the alarm's retention. Empty: no rule.";
const HOURS_HELP = "Local time, e.g. mon-fri 07:00-19:00, 22:00-06:00 or sat,sun; empty: always.";
const QUALITY_HELP = "Faces below this quality (0 to 1) are never strangers; empty: the server's default.";

/** The stranger rule inputs shared by the add and edit forms. */
function strangerInputs(camera = {}) {
  const r = camera.strangers || {};
  return {
    galleries: h("input", { name: "stranger_galleries", value: (r.galleries || []).join(", "), autocomplete: "off", placeholder: "staff, students" }),
    hours: h("input", { name: "stranger_hours", value: r.hours ?? "", autocomplete: "off", placeholder: "always" }),
    quality: h("input", { name: "stranger_min_quality", type: "number", min: 0, max: 1, step: 0.01, value: r.min_quality ?? "", placeholder: "default" }),
  };
}

function strangerFields(inputs) {
  return [
    field("Stranger alarms: galleries of who belongs here", inputs.galleries, STRANGER_HELP),
    h("div", { class: "row" }, field("Stranger hours", inputs.hours, HOURS_HELP), field("Stranger min quality", inputs.quality, QUALITY_HELP)),
  ];
}

/** The rule the inputs describe: null (no rule), the rule, or an error text. */
function strangerValue(inputs) {
  const galleries = inputs.galleries.value.split(",").map((g) => g.trim()).filter(Boolean);
  const hours = inputs.hours.value.trim() || null;
  const q = inputs.quality.value.trim();
  if (!galleries.length) return hours || q ? "Name the galleries of the people who belong here, or clear the stranger hours and quality." : null;
  const min_quality = q ? Number(q) : null;
  if (min_quality !== null && !(min_quality >= 0 && min_quality <= 1)) return "Give the stranger min quality between 0 and 1, or leave it empty.";
  return { galleries, hours, min_quality };
}

function strangerText(c) {
  const r = c.strangers;
  if (!r) return null;
  return [h("br"), h("small", { class: "stranger-rule" }, `strangers: not in ${r.galleries.join(", ")}${r.hours ? ` (${r.hours})` : ""}`)];
}

function retentionText(c) {
  return [
    c.retention_days ? `${c.retention_days} days` : "no limit",
    c.keep_sightings ? [h("br"), h("small", {}, "keeps sightings")] : null,
  ];
}

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
        ["Name", "Address", "Site", "Kind", "Retention", "State", "FPS", "Frames", "Dropped", "Alarms", "Restarts", "Started"].map(
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
          h("td", {}, c.kind, strangerText(c)),
          h("td", { class: "nowrap" }, retentionText(c)),
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
                {},
                h(
                  "div",
                  { class: "actions left nowrap" },
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
                      class: "secondary small",
                      "aria-label": `Edit camera ${c.name}`,
                      onclick: (e) => edit(e.currentTarget, c, reload),
                    },
                    "Edit",
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

async function edit(button, c, reload) {
  const site = h("input", { name: "site", value: c.site ?? "", autocomplete: "off" });
  const location = h("input", {
    name: "location",
    value: c.location ? c.location.join(",") : "",
    autocomplete: "off",
    placeholder: "48.8566,2.3522",
  });
  const kind = select({ name: "kind" }, KINDS.includes(c.kind) ? KINDS : [...KINDS, c.kind], c.kind);
  const { days, keep, keepBox } = retentionInputs(c);
  const strangers = strangerInputs(c);
  const dlg = dialogShell(
    `Edit camera ${c.name}`,
    [
      h("div", { class: "row" }, field("Site", site), field("Kind", kind)),
      field("Location (LAT,LON)", location, "Decimal degrees; empty: none."),
      field("Retention days", days, RETENTION_HELP),
      keepBox,
      h("p", { class: "help" }, SIGHTINGS_HELP),
      ...strangerFields(strangers),
    ],
    [h("button", { value: "no", class: "secondary", formnovalidate: true }, "Cancel"), h("button", { value: "yes" }, "Save")],
  );
  const answer = await openDialog(dlg, () => {
    if (location.value.trim() && !LOCATION.test(location.value)) return "Write the location as LAT,LON in decimal degrees, e.g. 48.8566,2.3522.";
    const r = retentionValue(days);
    if (typeof r === "string") return r;
    const rule = strangerValue(strangers);
    return typeof rule === "string" ? rule : null;
  });
  if (answer !== "yes") return;
  const wanted = {
    site: site.value.trim() || null,
    kind: kind.value,
    location: location.value.trim() || null,
    retention_days: retentionValue(days),
    keep_sightings: keep.checked,
    strangers: strangerValue(strangers),
  };
  const before = {
    site: c.site ?? null,
    kind: c.kind,
    location: c.location ? c.location.join(",") : null,
    retention_days: c.retention_days ?? null,
    keep_sightings: Boolean(c.keep_sightings),
    strangers: c.strangers ?? null,
  };
  const body = {};
  for (const [k, v] of Object.entries(wanted)) {
    const old = before[k];
    const same =
      k === "location"
        ? (v || "").replace(/\s/g, "") === (old || "").replace(/\s/g, "")
        : k === "strangers"
          ? JSON.stringify(v) === JSON.stringify(old)
          : v === old;
    if (!same) body[k] = v;
  }
  if (!Object.keys(body).length) {
    toast("info", `Camera ${c.name}`, "Nothing changed.");
    return;
  }
  try {
    await busy(button, "Saving…", () => patch(`/api/cameras/${enc(c.name)}`, body));
    toast("ok", `Camera ${c.name} updated`, `changed: ${Object.keys(body).join(", ").replaceAll("_", " ")}`);
  } catch (err) {
    showError(err, null, `Could not update ${c.name}`);
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
  const { days, keep, keepBox } = retentionInputs();
  const strangers = strangerInputs();
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
    h("div", { class: "row" }, field("Retention days", days, RETENTION_HELP), h("div", { class: "field" }, keepBox, h("small", { class: "help" }, SIGHTINGS_HELP))),
    ...strangerFields(strangers),
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
    if (loc && !LOCATION.test(loc)) {
      fill(slot, message("error", "Location not understood", "Write it as LAT,LON in decimal degrees, e.g. 48.8566,2.3522."));
      return;
    }
    const retention = retentionValue(days);
    if (typeof retention === "string") {
      fill(slot, message("error", "Retention not understood", retention));
      return;
    }
    const rule = strangerValue(strangers);
    if (typeof rule === "string") {
      fill(slot, message("error", "Stranger rule not understood", rule));
      return;
    }
    const body = {
      strangers: rule,
      name: name.value.trim(),
      url: url.value.trim(),
      site: site.value.trim() || null,
      location: loc || null,
      kind: kind.value,
      retention_days: retention,
      keep_sightings: keep.checked,
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
