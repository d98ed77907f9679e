// Webhooks (admins): signed HTTP callbacks for events — list, register (the signing secret is shown
// once), enable or disable, send a test event, remove; and the dead letters (events not delivered).

import { del, get, patch, post } from "./api.js";
import {
  busy,
  checkbox,
  confirmDialog,
  field,
  fill,
  fmtTime,
  h,
  message,
  prettyJson,
  secretDialog,
  showError,
  toast,
} from "./ui.js";

const EVENT_TYPES = [
  ["alarm", "a watchlist alarm"],
  ["alarm_reviewed", "an alarm confirmed, dismissed or closed"],
  ["sighting_started", "a sighting begins"],
  ["sighting_ended", "a sighting ends"],
  ["camera_online", "a camera comes online"],
  ["camera_offline", "a camera goes offline"],
  ["camera_status", "a camera's periodic status"],
];

export async function render(root) {
  const slot = h("div", { class: "slot" });
  const hooksBox = h("div", { class: "table-wrap" });
  const deadBox = h("div", { class: "table-wrap" });
  const refresh = h("button", { type: "button", class: "secondary small" }, "Refresh");
  fill(
    root,
    h("h1", {}, "Webhooks"),
    h(
      "p",
      { class: "muted" },
      "Each event is POSTed as JSON, signed with HMAC-SHA256 under the webhook's secret (header X-Vigil-Signature), " +
        "and retried with backoff; what still fails becomes a dead letter.",
    ),
    slot,
    h("section", { "aria-labelledby": "hooks-h" }, h("h2", { id: "hooks-h" }, "Registered webhooks"), hooksBox, createForm(loadHooks)),
    h(
      "section",
      { "aria-labelledby": "dead-h" },
      h("h2", { id: "dead-h" }, "Dead letters"),
      h(
        "div",
        { class: "actions left" },
        h("span", { class: "small muted" }, "Notifications not delivered after every retry, newest first; kept 30 days."),
        refresh,
      ),
      deadBox,
    ),
  );

  async function loadHooks() {
    try {
      const hooks = await get("/api/webhooks");
      fill(hooksBox, hooks.length ? hooksTable(hooks, loadHooks, loadDead) : h("p", { class: "muted" }, "No webhooks yet."));
    } catch (err) {
      showError(err, slot, "Could not load the webhooks");
    }
  }
  async function loadDead() {
    try {
      const dead = await get("/api/webhooks/dead-letters", { limit: 100 });
      fill(deadBox, dead.length ? deadTable(dead) : h("p", { class: "muted" }, "No dead letters."));
    } catch (err) {
      showError(err, slot, "Could not load the dead letters");
    }
  }
  refresh.addEventListener("click", () => busy(refresh, "Refreshing…", loadDead));
  await Promise.all([loadHooks(), loadDead()]);
  return null;
}

const events = (types) => (types.includes("*") ? "all events" : types.join(", "));

function hooksTable(hooks, reload, reloadDead) {
  return h(
    "table",
    { class: "grid", "aria-label": "Webhooks" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["#", "URL", "Events", "Enabled", "Created"].map((t) => h("th", { scope: "col" }, t)),
        h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
      ),
    ),
    h(
      "tbody",
      {},
      hooks.map((w) => {
        const enabled = h("input", { type: "checkbox", checked: w.enabled, "aria-label": `Webhook ${w.id} is enabled` });
        enabled.addEventListener("change", async () => {
          try {
            await patch(`/api/webhooks/${w.id}`, { enabled: enabled.checked });
            toast("ok", `Webhook ${w.id} ${enabled.checked ? "enabled" : "disabled"}`, w.url);
          } catch (err) {
            showError(err, null, `Could not change webhook ${w.id}`);
          }
          await reload();
        });
        const test = h("button", { type: "button", class: "secondary small", "aria-label": `Test webhook ${w.id}` }, "Test");
        test.addEventListener("click", async () => {
          try {
            const r = await busy(test, "Sending…", () => post(`/api/webhooks/${w.id}/test`));
            toast(
              "ok",
              `Test event queued for webhook ${w.id}`,
              `delivery ${r.delivery}`,
              "a failure after every retry shows up in the dead letters",
            );
            setTimeout(reloadDead, 3000);
          } catch (err) {
            showError(err, null, `Could not test webhook ${w.id}`);
          }
        });
        const remove = h("button", { type: "button", class: "danger small", "aria-label": `Delete webhook ${w.id}` }, "Delete");
        remove.addEventListener("click", async () => {
          const ok = await confirmDialog(`Delete webhook ${w.id}?`, `${w.url} gets no more events. Its dead letters are kept.`);
          if (!ok) return;
          try {
            await busy(remove, "Deleting…", () => del(`/api/webhooks/${w.id}`));
            toast("ok", "Webhook deleted", w.url);
          } catch (err) {
            showError(err, null, `Could not delete webhook ${w.id}`);
          }
          await reload();
        });
        return h(
          "tr",
          { class: w.enabled ? null : "disabled" },
          h("td", {}, String(w.id)),
          h("td", { class: "url" }, w.url),
          h("td", {}, events(w.event_types)),
          h("td", {}, enabled),
          h("td", {}, fmtTime(w.created_at)),
          h("td", {}, h("div", { class: "actions left" }, test, remove)),
        );
      }),
    ),
  );
}

function deadTable(rows) {
  return h(
    "table",
    { class: "grid compact", "aria-label": "Dead letters" },
    h(
      "thead",
      {},
      h("tr", {}, ["When", "Channel", "Target", "Event", "Attempts", "Last error", "Event body"].map((t) => h("th", { scope: "col" }, t))),
    ),
    h(
      "tbody",
      {},
      rows.map((d) =>
        h(
          "tr",
          {},
          h("td", { class: "nowrap" }, fmtTime(d.created_at)),
          h("td", {}, d.channel),
          h("td", { class: "url" }, d.target),
          h("td", {}, d.event_type),
          h("td", {}, String(d.attempts)),
          h("td", { class: "error-text small" }, d.last_error),
          h(
            "td",
            {},
            h(
              "details",
              { class: "json" },
              h("summary", {}, "show"),
              h("pre", {}, typeof d.payload === "string" ? d.payload : prettyJson(d.payload)),
            ),
          ),
        ),
      ),
    ),
  );
}

function createForm(reload) {
  const url = h("input", { name: "url", type: "url", required: true, autocomplete: "off", placeholder: "https://hooks.example.org/vigil" });
  const allBox = checkbox("All events (*)", { name: "all" });
  const all = allBox.querySelector("input");
  const typeBoxes = EVENT_TYPES.map(([t, help]) => {
    const box = checkbox(t, { name: "event_types", value: t, checked: t === "alarm" });
    box.title = help;
    return box;
  });
  const types = typeBoxes.map((b) => b.querySelector("input"));
  all.addEventListener("change", () => {
    for (const t of types) t.disabled = all.checked;
  });
  const secret = h("input", { name: "secret", type: "password", autocomplete: "new-password", minlength: 16 });
  const enabledBox = checkbox("Enabled", { name: "enabled", checked: true });
  const slot = h("div", { class: "slot" });
  const button = h("button", { type: "submit" }, "Create webhook");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "new-hook-h", novalidate: true },
    h("h3", { id: "new-hook-h" }, "New webhook"),
    field("URL", url, "An http:// or https:// address that receives a signed POST per event."),
    h("fieldset", {}, h("legend", {}, "Event types"), allBox, h("div", { class: "checks" }, typeBoxes)),
    field("Signing secret (optional)", secret, "At least 16 characters; leave empty to have one generated and shown once."),
    enabledBox,
    slot,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(slot);
    const chosen = all.checked ? ["*"] : types.filter((t) => t.checked).map((t) => t.value);
    if (!url.value.trim()) {
      fill(slot, message("error", "Missing information", "Give the webhook's URL."));
      return;
    }
    if (!chosen.length) {
      fill(slot, message("error", "No event type chosen", "Choose at least one event type, or all events."));
      return;
    }
    if (secret.value && secret.value.length < 16) {
      fill(slot, message("error", "Secret too short", "Use at least 16 characters, or leave it empty to have one generated."));
      return;
    }
    try {
      const w = await busy(button, "Creating…", () =>
        post("/api/webhooks", {
          url: url.value.trim(),
          event_types: chosen,
          secret: secret.value || null,
          enabled: enabledBox.querySelector("input").checked,
        }),
      );
      form.reset();
      for (const t of types) t.disabled = false;
      await reload();
      await secretDialog(
        `Webhook ${w.id} created`,
        "Signing secret",
        w.secret,
        "It is shown once; vigil does not show it again. Configure the receiver to check X-Vigil-Signature with it.",
      );
    } catch (err) {
      showError(err, slot, "Could not create the webhook");
    }
  });
  return form;
}
