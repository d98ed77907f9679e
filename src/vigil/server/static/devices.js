// Edge devices (admin page): the machines on poles and sites that run cameras and send their events
// here. Each with its state, online or offline, when it was last heard from, its cameras, version,
// outbox depth and alarms; adding one shows its one-time pairing token (once) and the command to run
// on the device; revoking one refuses it at once. Refreshed every few seconds (online follows).

import { get, post } from "./api.js";
import { busy, checkbox, confirmDialog, dialogShell, field, fill, fmtTime, h, message, showError, stateBadge, toast } from "./ui.js";

const REFRESH_MS = 5000;

/** The "Edge devices" section: ``{el, stop}`` (``stop`` ends the refresh when the page is left). */
export function devicesSection() {
  const table = h("div", { class: "table-wrap" });
  const slot = h("div", { class: "slot" });
  let timer = null;
  let stopped = false;
  const el = h(
    "section",
    { class: "card", "aria-labelledby": "devices-h" },
    h("h2", { id: "devices-h" }, "Edge devices"),
    h(
      "p",
      {},
      "An edge device (a pole, a site's box) runs the cameras assigned to it and sends their events and face crops here, never video. " +
        "It gets the watchlists allowed at its site; a site that keeps no templates on its devices has them matched here.",
    ),
    slot,
    table,
    deviceForm(load),
  );

  async function load() {
    clearTimeout(timer);
    timer = null;
    try {
      const devices = await get("/api/devices");
      fill(table, devices.length ? devicesTable(devices, load) : h("p", { class: "muted" }, "No edge devices."));
      fill(slot);
    } catch (err) {
      showError(err, slot, "Could not load the edge devices");
    }
    if (!stopped) timer = setTimeout(load, REFRESH_MS);
  }
  load();
  return {
    el,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

function onlineBadge(d) {
  if (d.state !== "active") return stateBadge(d.state);
  return h("span", { class: `badge state-${d.online ? "running" : "offline"}` }, d.online ? "online" : "offline");
}

function devicesTable(devices, reload) {
  const heads = ["Device", "Site", "State", "Last seen", "Cameras", "Version", "Queue", "Alarms"];
  return h(
    "table",
    { class: "grid", "aria-label": "Edge devices" },
    h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")))),
    h(
      "tbody",
      {},
      devices.map((d) =>
        h(
          "tr",
          { class: d.state === "revoked" ? "revoked" : "" },
          h("td", {}, h("strong", {}, d.name), d.keeps_templates ? null : [h("br"), h("small", { class: "muted" }, "keeps no templates")]),
          h("td", {}, d.site ?? "—"),
          h("td", {}, onlineBadge(d)),
          h("td", {}, d.last_seen_at ? fmtTime(d.last_seen_at) : "never"),
          h("td", {}, d.cameras.length ? d.cameras.join(", ") : "—"),
          h("td", {}, d.version ?? "—"),
          h("td", {}, d.queue_depth == null ? "—" : String(d.queue_depth)),
          h("td", {}, String(d.alarms)),
          h("td", {}, d.state === "pending" ? [tokenButton(d, reload), " "] : null, d.state === "revoked" ? null : revokeButton(d, reload)),
        ),
      ),
    ),
  );
}

function tokenButton(d, reload) {
  const button = h("button", { type: "button", class: "secondary small", "aria-label": `New pairing token for ${d.name}` }, "New token");
  button.addEventListener("click", async () => {
    try {
      const added = await busy(button, "Making…", () => post(`/api/devices/${encodeURIComponent(d.name)}/token`));
      await tokenDialog(added.device, added.token, "New pairing token");
    } catch (err) {
      showError(err, null, `Could not make a new token for ${d.name}`);
    }
    await reload();
  });
  return button;
}

function revokeButton(d, reload) {
  const button = h("button", { type: "button", class: "danger small", "aria-label": `Revoke device ${d.name}` }, "Revoke");
  button.addEventListener("click", async () => {
    const ok = await confirmDialog(
      `Revoke device ${d.name}?`,
      "It is refused at once: its credential, its heartbeats and its events. It cannot pair again; its cameras stay assigned to it.",
      "Revoke",
    );
    if (!ok) return;
    try {
      await busy(button, "Revoking…", () => post(`/api/devices/${encodeURIComponent(d.name)}/revoke`));
      toast("ok", "Device revoked", d.name);
    } catch (err) {
      showError(err, null, `Could not revoke ${d.name}`);
    }
    await reload();
  });
  return button;
}

function deviceForm(reload) {
  const name = h("input", { name: "device-name", required: true, autocomplete: "off", placeholder: "pole-17" });
  const site = h("input", { name: "device-site", required: true, autocomplete: "off", placeholder: "market-street" });
  const noTemplates = checkbox("Keep no templates on the device (it sends embeddings, the server matches)", { name: "no-templates" });
  const slot = h("div", { class: "slot" });
  const button = h("button", { type: "submit" }, "Add device");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "new-device-h", novalidate: true },
    h("h3", { id: "new-device-h" }, "New edge device"),
    h("div", { class: "row" }, field("Device name", name), field("Site", site, "It gets the watchlists allowed at this site.")),
    noTemplates,
    slot,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(slot);
    if (!name.value.trim() || !site.value.trim()) {
      fill(slot, message("error", "Missing information", "Give the device a name and a site."));
      return;
    }
    const body = { name: name.value.trim(), site: site.value.trim(), keeps_templates: !noTemplates.querySelector("input").checked };
    try {
      const added = await busy(button, "Adding…", () => post("/api/devices", body));
      form.reset();
      await reload();
      await tokenDialog(added.device, added.token);
    } catch (err) {
      showError(err, slot, "Could not add the device");
    }
  });
  return form;
}

function copyable(label, text) {
  const code = h("code", { class: "secret", "aria-label": label }, text);
  const copy = h("button", { type: "button", class: "secondary small", "aria-label": `Copy the ${label.toLowerCase()}` }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Select and copy it by hand";
    }
  });
  return h("p", {}, code, " ", copy);
}

/** The one-time pairing token, shown once, with the command to run on the device. */
function tokenDialog(device, token, title = `Device ${device.name} added`) {
  const command = `vigil worker --server ${location.origin} --token ${token}`;
  const dlg = dialogShell(
    title,
    [
      h("p", {}, "Pairing token"),
      copyable("Pairing token", token),
      h("p", {}, "On the device, run:"),
      copyable("Command", command),
      h("p", { class: "warn-text" }, "The token is shown once and pairs once, within 24 hours (a new one replaces it); only its hash is stored."),
    ],
    [h("button", { value: "done" }, "Done")],
  );
  dlg.showModal();
  return new Promise((resolve) => dlg.addEventListener("close", () => resolve()));
}
