// The audit log (auditors and admins): entries newest first with filters, each entry's detail, and the
// verification of the hash chain. Every read of the log is itself audited by the server.

import { get } from "./api.js";
import { busy, facts, field, fill, fmtTime, h, message, prettyJson, showError } from "./ui.js";

const PAGE = 100;
const filters = { since: "", until: "", action: "", actor: "" };

/** A datetime-local value ("2024-05-01T10:00", local time) as an ISO instant, or null. */
export function isoFromLocal(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

export async function render(root) {
  const since = h("input", { name: "since", type: "datetime-local", value: filters.since });
  const until = h("input", { name: "until", type: "datetime-local", value: filters.until });
  const actions = h("datalist", { id: "audit-actions" });
  const action = h("input", { name: "action", value: filters.action, list: "audit-actions", placeholder: "any", autocomplete: "off" });
  const actors = h("datalist", { id: "audit-actors" });
  const actor = h("input", { name: "actor", value: filters.actor, list: "audit-actors", placeholder: "any", autocomplete: "off" });
  const form = h(
    "form",
    { class: "filters", "aria-label": "Filter the audit log" },
    field("From", since),
    field("Until", until),
    field("Action", action, "Exact, e.g. gallery_update"),
    field("Actor", actor, "Exact, e.g. user:alice or key:etl"),
    actions,
    actors,
    h(
      "div",
      { class: "field" },
      h("button", { type: "submit" }, "Apply filters"),
    ),
    h(
      "div",
      { class: "field" },
      h("button", { type: "reset", class: "secondary" }, "Clear"),
    ),
  );
  const verifyButton = h("button", { type: "button", class: "secondary" }, "Verify chain");
  const verifySlot = h("div", { class: "slot", "aria-live": "polite" });
  const slot = h("div", { class: "slot" });
  const table = h("div", { class: "table-wrap" });
  const more = h("div", { class: "actions left" });
  fill(
    root,
    h("h1", {}, "Audit log"),
    h(
      "p",
      { class: "muted" },
      "Every action on people, watchlists, cameras, alarms, searches and accounts, in a hash chain: " +
        "an entry edited, removed or moved breaks the chain from there on. Reading the log is itself logged.",
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "verify-h" },
      h("h2", { id: "verify-h" }, "Integrity"),
      h("p", {}, "Check every entry against its hash and its link to the one before. Write down the head hash to prove later that nothing was changed up to here."),
      h("div", { class: "actions left" }, verifyButton),
      verifySlot,
    ),
    form,
    slot,
    table,
    more,
  );

  verifyButton.addEventListener("click", async () => {
    try {
      const r = await busy(verifyButton, "Verifying…", () => get("/api/audit/verify"));
      fill(verifySlot, verifyResult(r));
    } catch (err) {
      showError(err, verifySlot, "Could not verify the audit chain");
    }
  });

  let offset = 0;
  let shown = [];
  async function load(append = false) {
    filters.since = since.value;
    filters.until = until.value;
    filters.action = action.value.trim();
    filters.actor = actor.value.trim();
    if (!append) offset = 0;
    try {
      const rows = await get("/api/audit", {
        since: isoFromLocal(filters.since),
        until: isoFromLocal(filters.until),
        action: filters.action,
        actor: filters.actor,
        limit: PAGE,
        offset,
      });
      fill(slot);
      shown = append ? [...shown, ...rows] : rows;
      offset += rows.length;
      suggest(actions, shown.map((e) => e.action));
      suggest(actors, shown.map((e) => e.actor));
      fill(
        table,
        shown.length ? auditTable(shown) : h("p", { class: "muted" }, "No audit entries match these filters."),
      );
      const older = h("button", { type: "button", class: "secondary" }, "Older entries");
      older.addEventListener("click", () => busy(older, "Loading…", () => load(true)));
      fill(
        more,
        shown.length ? h("span", { class: "muted" }, `${shown.length} entr${shown.length === 1 ? "y" : "ies"} shown, newest first.`) : null,
        rows.length === PAGE ? older : null,
      );
    } catch (err) {
      showError(err, slot, "Could not load the audit log");
    }
  }
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(form.querySelector("button[type=submit]"), "Loading…", () => load());
  });
  form.addEventListener("reset", () => {
    Object.assign(filters, { since: "", until: "", action: "", actor: "" });
    setTimeout(() => load(), 0);
  });
  await load();
  return null;
}

function suggest(list, values) {
  fill(list, [...new Set(values)].sort().map((v) => h("option", { value: v })));
}

function verifyResult(r) {
  const head = h("code", { class: "hash", "aria-label": "Head hash" }, r.head_hash);
  if (r.ok) {
    return [
      message("ok", "Audit chain intact", `All ${r.entries} entries match their hashes and links.`),
      facts([
        ["Entries", String(r.entries)],
        ["Head hash", head],
      ]),
    ];
  }
  return [
    message(
      "error",
      `Audit chain BROKEN at entry ${r.first_broken_id}`,
      `Entry ${r.first_broken_id}: ${r.problem}.`,
      "Entries before it are intact; from there on the log cannot be trusted. Report this to the data protection officer.",
    ),
    facts([
      ["Entries checked", String(r.entries)],
      ["Last intact hash", head],
    ]),
  ];
}

function target(e) {
  if (!e.target_type && !e.target_name && !e.target_id) return "—";
  const name = e.target_name ?? (e.target_id != null ? `#${e.target_id}` : "");
  return [e.target_type ? h("small", { class: "muted" }, `${e.target_type} `) : null, name];
}

function detail(e) {
  const keys = Object.keys(e.detail || {});
  if (!keys.length) return h("span", { class: "muted" }, "—");
  const summary = keys.slice(0, 4).join(", ") + (keys.length > 4 ? ", …" : "");
  return h(
    "details",
    { class: "json" },
    h("summary", {}, summary),
    h("pre", {}, prettyJson(e.detail)),
    h("p", { class: "small muted" }, "hash ", h("code", {}, e.hash.slice(0, 16)), "…"),
  );
}

function auditTable(rows) {
  return h(
    "table",
    { class: "grid compact audit", "aria-label": "Audit entries" },
    h("thead", {}, h("tr", {}, ["#", "Time", "Actor", "Action", "Target", "Detail"].map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      rows.map((e) =>
        h(
          "tr",
          { dataset: { entry: String(e.id) } },
          h("td", {}, String(e.id)),
          h("td", { class: "nowrap" }, fmtTime(e.at)),
          h("td", {}, e.actor),
          h("td", {}, h("code", {}, e.action)),
          h("td", {}, target(e)),
          h("td", {}, detail(e)),
        ),
      ),
    ),
  );
}
