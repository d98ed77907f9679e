// Galleries and people: list, create (watchlists with their legal basis), edit a watchlist's terms and
// renew it, delete; enrol by upload with face-quality feedback and metadata; a person's photos, details,
// more photos, removal, and erasure (GDPR Art. 17).

import { can, del, get, media, patch, post, upload } from "./api.js";
import {
  busy,
  checkbox,
  confirmDialog,
  dialogShell,
  facts,
  field,
  fill,
  fmtTime,
  h,
  keyValueEditor,
  mediaImg,
  message,
  openDialog,
  qualityMeter,
  qualityWord,
  refusedKey,
  select,
  showError,
  splitList,
  toast,
} from "./ui.js";

const KINDS = [
  ["watchlist", "Watchlist (alarms on cameras)"],
  ["attendance", "Attendance"],
  ["investigation", "Investigation"],
  ["reference", "Reference"],
];
const WATCHLIST_FIELDS = [
  ["purpose", "Purpose", "What the watchlist is for, e.g. “missing persons, case 2024-17”."],
  ["legal_basis", "Legal basis", "The law, court order or decision that allows it."],
  ["authorized_by", "Authorised by", "Who authorised it (name and office)."],
];

const enc = encodeURIComponent;
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const today = () => {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
};
const METADATA_HELP =
  "Operator data such as an employee or case number. Never sensitive traits (origin, skin colour, religion, " +
  "politics, sexual orientation, health, emotion): vigil refuses them.";

const WEEK = [
  ["mon", "Mon"],
  ["tue", "Tue"],
  ["wed", "Wed"],
  ["thu", "Thu"],
  ["fri", "Fri"],
  ["sat", "Sat"],
  ["sun", "Sun"],
];
const WEEK_NAMES = Object.fromEntries(WEEK);

/** "Mon, Tue, Wed" from the stored "mon,tue,wed". */
function daysText(days) {
  return days ? days.split(",").map((d) => WEEK_NAMES[d.trim()] || d.trim()).join(", ") : "every day";
}

/**
 * The schedule inputs of an attendance gallery: arrival, departure, working days, grace. ``value()`` is
 * the API's fields (attendance_start...), or an error text.
 */
function scheduleInputs(g = {}) {
  const start = h("input", { name: "attendance_start", type: "time", value: g.attendance_start ?? "09:00" });
  const end = h("input", { name: "attendance_end", type: "time", value: g.attendance_end ?? "17:00" });
  const chosen = g.attendance_days ? g.attendance_days.split(",").map((d) => d.trim()) : ["mon", "tue", "wed", "thu", "fri"];
  const days = WEEK.map(([v, label]) => checkbox(label, { name: "attendance_days", value: v, checked: chosen.includes(v) }));
  const grace = h("input", { name: "attendance_grace_min", type: "number", min: 0, max: 720, step: 1, value: g.attendance_grace_min ?? 10 });
  const el = h(
    "fieldset",
    { class: "schedule" },
    h("legend", {}, "Schedule (local time of the server)"),
    h(
      "div",
      { class: "row" },
      field("Expected arrival", start, "Later than this plus the grace is late."),
      field("Expected departure", end, "Leaving before this is leaving early."),
      field("Grace minutes", grace, "0 to 720."),
    ),
    h("fieldset", { class: "schedule-days" }, h("legend", {}, "Working days"), days),
    h("p", { class: "help" }, "On a working day, someone whose consent was recorded before it and who is not seen is absent."),
  );
  return {
    el,
    value() {
      const picked = days.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
      if (!start.value || !end.value) return "Give the expected arrival and departure times.";
      if (end.value <= start.value) return "The departure must be after the arrival (shifts over midnight are not supported).";
      if (!picked.length) return "Tick at least one working day.";
      const n = Number(grace.value || 0);
      if (!Number.isInteger(n) || n < 0 || n > 720) return "Give the grace as a whole number of minutes, 0 to 720.";
      return { attendance_start: start.value, attendance_end: end.value, attendance_days: picked.join(","), attendance_grace_min: n };
    },
  };
}

/** The expiry of a gallery as text and, when expired, a clear EXPIRED badge. */
function expiry(g) {
  if (!g.expires_on) return "—";
  if (!g.expired) return g.expires_on;
  return [h("span", { class: "badge expired" }, "EXPIRED"), " ", g.expires_on, h("br"), h("small", { class: "error-text" }, "no alarms")];
}

/** Where a gallery applies and how long its alarms are kept, as short text. */
function limits(g) {
  const parts = [];
  if (g.sites?.length) parts.push(`sites: ${g.sites.join(", ")}`);
  if (g.cameras?.length) parts.push(`cameras: ${g.cameras.join(", ")}`);
  if (g.retention_days) parts.push(`alarms kept ${plural(g.retention_days, "day")}`);
  return parts.length ? parts.join("; ") : "—";
}

export async function render(root, params, page) {
  if (page === "people") return renderPerson(root, Number(params[0]));
  if (params[0]) return renderGallery(root, params[0]);
  return renderList(root);
}

function uploadTitle(err) {
  if (err.status === 413) return "Photo too large";
  if (err.status === 415 || err.status === 422) return "Photo refused";
  return "Upload failed";
}

// ---- list and create --------------------------------------------------------------------------

async function renderList(root) {
  const slot = h("div", { class: "slot" });
  const table = h("div", { class: "table-wrap" });
  fill(root, h("h1", {}, "Galleries & people"), slot, table, can.manage() ? createForm(load) : null);

  async function load() {
    try {
      const rows = await get("/api/galleries");
      fill(table, rows.length ? galleryTable(rows, load) : h("p", { class: "muted" }, "No galleries yet."));
    } catch (err) {
      showError(err, slot, "Could not load the galleries");
    }
  }
  await load();
  return null;
}

function galleryTable(rows, reload) {
  return h(
    "table",
    { class: "grid", "aria-label": "Galleries" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Name", "Kind", "Purpose", "Legal basis", "Authorised by", "Expires", "Limits", "Confirmations", "People", "Photos"].map(
          (t) => h("th", { scope: "col" }, t),
        ),
        can.manage() ? h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")) : null,
      ),
    ),
    h(
      "tbody",
      {},
      rows.map((g) =>
        h(
          "tr",
          { class: g.expired ? "expired" : null },
          h("td", {}, h("a", { href: `#/galleries/${enc(g.name)}` }, g.name)),
          h("td", {}, g.kind),
          h("td", {}, g.purpose ?? "—"),
          h("td", {}, g.legal_basis ?? "—"),
          h("td", {}, g.authorized_by ?? "—"),
          h("td", { class: "nowrap" }, expiry(g)),
          h("td", { class: "small" }, limits(g)),
          h("td", {}, String(g.confirmations_required)),
          h("td", {}, String(g.identities)),
          h("td", {}, String(g.photos)),
          can.manage()
            ? h(
                "td",
                {},
                h(
                  "button",
                  {
                    type: "button",
                    class: "danger small",
                    "aria-label": `Delete gallery ${g.name}`,
                    onclick: (e) => deleteGallery(e.currentTarget, g, reload),
                  },
                  "Delete",
                ),
              )
            : null,
        ),
      ),
    ),
  );
}

async function deleteGallery(button, g, reload) {
  const ok = await confirmDialog(
    `Delete gallery ${g.name}?`,
    `This removes its ${plural(g.identities, "person", "people")} with their ${plural(g.photos, "photo")} and templates. Alarms already raised are kept.`,
  );
  if (!ok) return;
  try {
    await busy(button, "Deleting…", () => del(`/api/galleries/${enc(g.name)}`));
    toast("ok", "Gallery deleted", g.name);
    await reload();
  } catch (err) {
    showError(err, null, `Could not delete ${g.name}`);
  }
}

function createForm(reload) {
  const name = h("input", { name: "name", required: true, autocomplete: "off" });
  const kind = select({ name: "kind" }, KINDS, "watchlist");
  const inputs = {};
  const wlFields = WATCHLIST_FIELDS.map(([key, label, help]) => {
    inputs[key] = h("input", { name: key, autocomplete: "off" });
    return field(label, inputs[key], help);
  });
  inputs.expires_on = h("input", { name: "expires_on", type: "date" });
  wlFields.push(field("Expires on", inputs.expires_on, "After this date the watchlist stops raising alarms."));
  const confirmations = select(
    { name: "confirmations_required" },
    [
      ["1", "1 person confirms an alarm"],
      ["2", "2 different people confirm an alarm"],
    ],
    "1",
  );
  const note = h("p", { class: "small" });
  const fs = h("fieldset", {}, h("legend", {}, "Safeguards"), note, wlFields);
  let schedule = scheduleInputs();
  const schedSlot = h("div", { class: "attendance-part", hidden: true });
  const resetSchedule = () => {
    schedule = scheduleInputs();
    fill(
      schedSlot,
      message("info", null, "An attendance gallery enrols only people who consented: each enrolment asks for the day of their consent and who recorded it."),
      schedule.el,
    );
  };
  resetSchedule();
  const slot = h("div", { class: "slot" });
  const button = h("button", { type: "submit" }, "Create gallery");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "new-gallery-h", novalidate: true },
    h("h2", { id: "new-gallery-h" }, "New gallery"),
    h("div", { class: "row" }, field("Gallery name", name), field("Kind", kind), field("Confirmations required", confirmations)),
    fs,
    schedSlot,
    slot,
    h("div", { class: "actions" }, button),
  );

  function syncKind() {
    schedSlot.hidden = kind.value !== "attendance";
    const wl = kind.value === "watchlist";
    for (const input of Object.values(inputs)) {
      input.required = wl;
      const label = form.querySelector(`label[for="${input.id}"]`);
      label?.classList.toggle("required", wl);
    }
    fill(
      note,
      wl
        ? h("strong", {}, "Required for a watchlist: purpose, legal basis, who authorised it and an expiry date.")
        : "Optional for this kind of gallery.",
    );
  }
  kind.addEventListener("change", syncKind);
  // Labels exist once the form is built.
  queueMicrotask(syncKind);

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(slot);
    const body = { name: name.value.trim(), kind: kind.value, confirmations_required: Number(confirmations.value) };
    for (const [k, input] of Object.entries(inputs)) body[k] = input.value.trim() || null;
    const missing = [];
    if (!body.name) missing.push("gallery name");
    if (body.kind === "watchlist") {
      for (const [k, label] of [...WATCHLIST_FIELDS, ["expires_on", "Expires on"]]) if (!body[k]) missing.push(label.toLowerCase());
    }
    if (missing.length) {
      fill(slot, message("error", "Missing information", `Fill in: ${missing.join(", ")}.`));
      return;
    }
    if (body.kind === "attendance") {
      const sched = schedule.value();
      if (typeof sched === "string") {
        fill(slot, message("error", "Schedule not understood", sched));
        return;
      }
      Object.assign(body, sched);
    }
    try {
      const g = await busy(button, "Creating…", () => post("/api/galleries", body));
      fill(slot, message("ok", "Gallery created", `${g.name} (${g.kind}).`));
      toast("ok", "Gallery created", g.name);
      form.reset();
      resetSchedule();
      syncKind();
      await reload();
    } catch (err) {
      showError(err, slot, "Could not create the gallery");
    }
  });
  return form;
}

// ---- one gallery: people and enrolment ---------------------------------------------------------

async function renderGallery(root, name) {
  const slot = h("div", { class: "slot" });
  const banner = h("div", {});
  const info = h("div", {});
  const terms = h("div", {});
  const people = h("div", { class: "table-wrap" });
  const enrol = can.manage() ? enrolForm(name, load) : null;
  const check = checkSection(name, () => load());
  fill(
    root,
    h("p", {}, h("a", { href: "#/galleries" }, "← Galleries")),
    h("h1", {}, `Gallery ${name}`),
    slot,
    banner,
    info,
    terms,
    h("section", { "aria-labelledby": "people-h" }, h("h2", { id: "people-h" }, "People"), people),
    check,
    enrol,
  );

  async function load() {
    try {
      const [g, rows] = await Promise.all([
        get(`/api/galleries/${enc(name)}`),
        get(`/api/galleries/${enc(name)}/identities`),
      ]);
      fill(banner, g.expired ? expiredBanner(g, load) : null);
      if (enrol) {
        enrol.hidden = g.expired; // the server refuses enrolment into an expired watchlist
        enrol.setKind(g.kind);
      }
      fill(
        info,
        facts([
          ["Kind", g.kind],
          ["Purpose", g.purpose ?? "—"],
          ["Legal basis", g.legal_basis ?? "—"],
          ["Authorised by", g.authorized_by ?? "—"],
          ["Expires on", expiry(g)],
          ["Confirmations required", String(g.confirmations_required)],
          ["Limited to sites", g.sites?.length ? g.sites.join(", ") : "all sites"],
          ["Limited to cameras", g.cameras?.length ? g.cameras.join(", ") : "all cameras"],
          ["Alarms kept", g.retention_days ? plural(g.retention_days, "day") : "no time limit"],
          g.kind === "attendance" ? ["Schedule", [scheduleText(g), " · ", h("a", { href: `#/attendance/${enc(g.name)}` }, "Attendance report")]] : null,
          ["Created", fmtTime(g.created_at)],
        ]),
      );
      if (can.manage()) {
        const open = terms.querySelector("form:not([hidden])");
        fill(terms, termsEditor(g, load, Boolean(open)));
      }
      fill(people, rows.length ? peopleTable(rows) : h("p", { class: "muted" }, "Nobody is enrolled yet."));
      check.hidden = rows.length === 0; // nothing to check in an empty gallery
    } catch (err) {
      showError(err, slot, `Could not load gallery ${name}`);
    }
  }
  await load();
  return null;
}

function scheduleText(g) {
  if (!g.attendance_start && !g.attendance_end && !g.attendance_days) return "none (arrivals and departures only)";
  const grace = g.attendance_grace_min ? `, ${plural(g.attendance_grace_min, "minute")} of grace` : "";
  return `${g.attendance_start ?? "?"} to ${g.attendance_end ?? "?"}, ${daysText(g.attendance_days)}${grace}`;
}

function expiredBanner(g, reload) {
  const renew = h("button", { type: "button" }, "Renew");
  renew.addEventListener("click", () => renewWatchlist(renew, g, reload));
  return h(
    "div",
    { class: "msg msg-error expired-banner", role: "alert" },
    h("strong", {}, `EXPIRED on ${g.expires_on}: this ${g.kind} raises no alarms`),
    h(
      "p",
      {},
      "Its authorisation ran out. Renew it only with a new decision by whoever authorises it, and record " +
        "that decision in its terms. People cannot be enrolled while it is expired.",
    ),
    can.manage() ? h("div", { class: "actions left" }, renew) : null,
  );
}

async function renewWatchlist(button, g, reload) {
  const date = h("input", { name: "expires_on", type: "date", min: today(), required: true });
  const basis = h("input", { name: "legal_basis", value: g.legal_basis ?? "", autocomplete: "off" });
  const by = h("input", { name: "authorized_by", value: g.authorized_by ?? "", autocomplete: "off" });
  const dlg = dialogShell(
    `Renew ${g.name}`,
    [
      h("p", {}, "A new expiry date starts alarms again. Update the legal basis and who authorised it if the renewal rests on a new decision."),
      field("New expiry date", date),
      field("Legal basis", basis),
      field("Authorised by", by),
    ],
    [h("button", { value: "no", class: "secondary", formnovalidate: true }, "Cancel"), h("button", { value: "yes" }, "Renew")],
  );
  const answer = await openDialog(dlg, () => {
    if (!date.value) return "Choose the new expiry date.";
    if (date.value <= today()) return "The new expiry date must be in the future.";
    if (g.kind === "watchlist" && (!basis.value.trim() || !by.value.trim())) return "A watchlist needs its legal basis and who authorised it.";
    return null;
  });
  if (answer !== "yes") return;
  const body = { expires_on: date.value };
  if (basis.value.trim() !== (g.legal_basis ?? "")) body.legal_basis = basis.value.trim() || null;
  if (by.value.trim() !== (g.authorized_by ?? "")) body.authorized_by = by.value.trim() || null;
  try {
    await busy(button, "Renewing…", () => patch(`/api/galleries/${enc(g.name)}`, body));
    toast("ok", `${g.name} renewed`, `until ${date.value}`);
  } catch (err) {
    showError(err, null, `Could not renew ${g.name}`);
  }
  await reload();
}

/** The "Edit terms" button and its form (PATCH; only the fields changed are sent, each change is audited). */
function termsEditor(g, reload, startOpen) {
  const wl = g.kind === "watchlist";
  const inputs = {
    purpose: h("input", { name: "purpose", value: g.purpose ?? "", autocomplete: "off" }),
    legal_basis: h("input", { name: "legal_basis", value: g.legal_basis ?? "", autocomplete: "off" }),
    authorized_by: h("input", { name: "authorized_by", value: g.authorized_by ?? "", autocomplete: "off" }),
    expires_on: h("input", { name: "expires_on", type: "date", value: g.expires_on ?? "" }),
    confirmations_required: select(
      { name: "confirmations_required" },
      [
        ["1", "1 person confirms an alarm"],
        ["2", "2 different people confirm an alarm"],
        ["3", "3 different people confirm an alarm"],
      ],
      String(g.confirmations_required),
    ),
    sites: h("input", { name: "sites", value: (g.sites ?? []).join(", "), autocomplete: "off", placeholder: "all sites" }),
    cameras: h("input", { name: "cameras", value: (g.cameras ?? []).join(", "), autocomplete: "off", placeholder: "all cameras" }),
    retention_days: h("input", { name: "retention_days", type: "number", min: 1, step: 1, value: g.retention_days ?? "", placeholder: "no limit" }),
  };
  const schedule = g.kind === "attendance" ? scheduleInputs(g) : null;
  const slot = h("div", { class: "slot" });
  const save = h("button", { type: "submit" }, "Save terms");
  const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
  const req = wl ? " (required)" : "";
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "terms-h", novalidate: true, hidden: !startOpen },
    h("h2", { id: "terms-h" }, wl ? "Edit watchlist terms" : "Edit gallery terms"),
    h("p", { class: "small" }, "Every change is recorded in the audit log with the terms before and after."),
    field(`Purpose${req}`, inputs.purpose, WATCHLIST_FIELDS[0][2]),
    h("div", { class: "row" }, field(`Legal basis${req}`, inputs.legal_basis, WATCHLIST_FIELDS[1][2]), field(`Authorised by${req}`, inputs.authorized_by, WATCHLIST_FIELDS[2][2])),
    h(
      "div",
      { class: "row" },
      field(`Expires on${req}`, inputs.expires_on, "After this date the watchlist raises no alarms."),
      field("Confirmations required", inputs.confirmations_required),
      field("Retention days", inputs.retention_days, "Its alarms (with crops and snapshots) are deleted this many days after capture; empty: no time limit."),
    ),
    h(
      "div",
      { class: "row" },
      field("Limited to sites", inputs.sites, "Comma-separated sites; empty: every site."),
      field("Limited to cameras", inputs.cameras, "Comma-separated camera names; empty: every camera."),
    ),
    schedule ? schedule.el : null,
    slot,
    h("div", { class: "actions" }, cancel, save),
  );
  const toggle = h("button", { type: "button", class: "secondary", "aria-expanded": String(startOpen) }, "Edit terms");
  const show = (on) => {
    form.hidden = !on;
    toggle.hidden = on;
    toggle.setAttribute("aria-expanded", String(on));
    if (on) inputs.purpose.focus();
  };
  toggle.hidden = startOpen;
  toggle.addEventListener("click", () => show(true));
  cancel.addEventListener("click", () => {
    form.reset();
    fill(slot);
    show(false);
  });

  const current = {
    purpose: g.purpose,
    legal_basis: g.legal_basis,
    authorized_by: g.authorized_by,
    expires_on: g.expires_on,
    confirmations_required: g.confirmations_required,
    sites: g.sites?.length ? g.sites : null,
    cameras: g.cameras?.length ? g.cameras : null,
    retention_days: g.retention_days,
  };
  if (schedule) {
    Object.assign(current, {
      attendance_start: g.attendance_start,
      attendance_end: g.attendance_end,
      attendance_days: g.attendance_days,
      attendance_grace_min: g.attendance_grace_min,
    });
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(slot);
    const days = inputs.retention_days.value.trim();
    if (days && !(Number.isInteger(Number(days)) && Number(days) >= 1)) {
      fill(slot, message("error", "Retention not understood", "Give a whole number of days (1 or more), or leave it empty."));
      return;
    }
    const wanted = {
      purpose: inputs.purpose.value.trim() || null,
      legal_basis: inputs.legal_basis.value.trim() || null,
      authorized_by: inputs.authorized_by.value.trim() || null,
      expires_on: inputs.expires_on.value || null,
      confirmations_required: Number(inputs.confirmations_required.value),
      sites: splitList(inputs.sites.value),
      cameras: splitList(inputs.cameras.value),
      retention_days: days ? Number(days) : null,
    };
    if (schedule) {
      const sched = schedule.value();
      if (typeof sched === "string") {
        fill(slot, message("error", "Schedule not understood", sched));
        return;
      }
      Object.assign(wanted, sched);
    }
    if (wl) {
      const missing = [...WATCHLIST_FIELDS, ["expires_on", "Expires on"]].filter(([k]) => !wanted[k]).map(([, label]) => label.toLowerCase());
      if (missing.length) {
        fill(slot, message("error", "Missing information", `A watchlist needs: ${missing.join(", ")}.`));
        return;
      }
    }
    const body = {};
    for (const [k, v] of Object.entries(wanted)) if (JSON.stringify(v) !== JSON.stringify(current[k])) body[k] = v;
    if (!Object.keys(body).length) {
      fill(slot, message("info", null, "Nothing changed."));
      return;
    }
    try {
      await busy(save, "Saving…", () => patch(`/api/galleries/${enc(g.name)}`, body));
      form.hidden = true;
      toast("ok", `Terms of ${g.name} saved`, `changed: ${Object.keys(body).join(", ").replaceAll("_", " ")}`);
      await reload();
    } catch (err) {
      showError(err, slot, "Could not save the terms");
    }
  });
  return [h("div", { class: "actions left" }, toggle), form];
}

function peopleTable(rows) {
  const consent = rows.some((p) => p.consent_on);
  return h(
    "table",
    { class: "grid", "aria-label": "People" },
    h("thead", {}, h("tr", {}, ["Name", "External id", "Photos", "Templates", consent ? "Consent" : null].filter(Boolean).map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      rows.map((p) =>
        h(
          "tr",
          {},
          h("td", {}, h("a", { href: `#/people/${p.id}` }, p.name)),
          h("td", {}, p.external_id ?? "—"),
          h("td", {}, String(p.photos)),
          h("td", {}, String(p.templates)),
          consent ? h("td", { class: "small" }, p.consent_on ? `${p.consent_on}, recorded by ${p.consent_by}` : "—") : null,
        ),
      ),
    ),
  );
}

// ---- the gallery check: wrong photos, people enrolled twice, weak photos, single photos ----------

const FINDING_TITLES = {
  "wrong-photo": "Likely wrong photo",
  "same-person": "Probably one person",
  "low-quality": "Photo below the quality the matcher needs",
  "single-photo": "Only one photo",
  "no-photo": "No photo",
};

/** The "Check gallery" action: GET .../check, each finding with its photos side by side and its fixes. */
function checkSection(name, reloadPeople) {
  const out = h("div", {});
  const run = h("button", { type: "button", class: "secondary" }, "Check gallery");
  async function check() {
    try {
      const report = await busy(run, "Checking…", () => get(`/api/galleries/${enc(name)}/check`));
      fill(out, checkReport(report, async () => {
        await check();
        reloadPeople();
      }));
    } catch (err) {
      showError(err, out, `Could not check gallery ${name}`);
    }
  }
  run.addEventListener("click", check);
  return h(
    "section",
    { "aria-labelledby": "check-h" },
    h("h2", { id: "check-h" }, "Check"),
    h(
      "p",
      { class: "muted small" },
      "Compares the people's photos with each other and with the other galleries you may see (audited). " +
        "A finding is a hint: look at the photos and decide.",
    ),
    h("div", { class: "actions" }, run),
    out,
  );
}

function checkReport(report, recheck) {
  const summary = h(
    "p",
    {},
    `${plural(report.identities, "person", "people")}, ${plural(report.photos, "photo")}; compared with ` +
      `${report.compared_with.length ? report.compared_with.join(", ") : "no other gallery"}: ` +
      `${plural(report.findings.length, "finding")}.`,
  );
  const list = h(
    "ul",
    { class: "findings", "aria-label": "Findings" },
    report.findings.map((f) => findingItem(report.gallery, f, recheck)),
  );
  return h("div", {}, summary, report.findings.length ? list : null);
}

function findingItem(gallery, f, recheck) {
  const photos = h(
    "div",
    { class: "photo-row", style: "display:flex;gap:.6em;flex-wrap:wrap" },
    f.photos.map((p) =>
      h(
        "figure",
        { style: "margin:0;text-align:center" },
        mediaImg(media(p.sha256), `Photo ${p.photo_id} of ${p.identity}`, "thumb"),
        h("figcaption", { class: "small" }, `${p.identity} (${p.gallery}) · photo ${p.photo_id}`),
      ),
    ),
  );
  const fixes = can.manage()
    ? f.fixes.filter((x) => x.action !== "add-photos").map((x) => fixButton(x, f, recheck))
    : [];
  return h(
    "li",
    { class: `finding finding-${f.kind}`, "aria-label": FINDING_TITLES[f.kind] ?? f.kind },
    h("strong", {}, FINDING_TITLES[f.kind] ?? f.kind),
    h("p", {}, f.message),
    photos,
    h("p", { class: "small muted" }, "Fix: ", f.fixes.map((x) => h("code", {}, x.command)).flatMap((c, i) => (i ? [" or ", c] : [c]))),
    fixes.length ? h("div", { class: "actions" }, fixes) : null,
  );
}

function fixLabel(x, f) {
  if (x.action === "remove-photo") return `Remove photo ${x.ids[0]}`;
  if (x.action === "merge") {
    const keep = f.identities[f.identity_ids.indexOf(x.ids[0])];
    return `Keep ${keep}, merge the other into it`;
  }
  const who = f.identities[f.identity_ids.indexOf(x.ids[0])];
  return `Remove ${who} from ${x.gallery}`;
}

function fixButton(x, f, recheck) {
  const label = fixLabel(x, f);
  const b = h("button", { type: "button", class: "danger" }, label);
  b.addEventListener("click", async () => {
    if (!(await confirmDialog(`${label}?`, f.message, "Apply fix"))) return;
    try {
      const r = await busy(b, "Fixing…", () =>
        post(`/api/galleries/${enc(x.gallery)}/check/fix`, { action: x.action, ids: x.ids }),
      );
      toast("ok", "Fixed", r.done);
      await recheck();
    } catch (err) {
      showError(err, null, "Could not apply the fix");
    }
  });
  return b;
}

function photoFeedback(result) {
  const warnings = (result.warnings ?? []).map((w) => message("warn", "Check this photo", w));
  return h(
    "div",
    {},
    warnings,
    photoFeedbackList(result),
  );
}

function photoFeedbackList(result) {
  return h(
    "ul",
    { class: "photo-results", "aria-label": "Photo quality" },
    result.photos.map((p) => {
      const [word, advice] = qualityWord(p.quality);
      return h(
        "li",
        { class: `q-${word}` },
        mediaImg(media(p.sha256), `Photo ${p.name}`, "thumb"),
        h(
          "span",
          {},
          h("strong", {}, p.name),
          ` — ${p.status === "enrolled" ? "enrolled" : "already enrolled"}, `,
          `${p.faces_found} face${p.faces_found === 1 ? "" : "s"} found`,
          h("br"),
          "Face quality ",
          qualityMeter(p.quality),
          word === "good" ? null : h("br"),
          word === "good" ? null : h("small", {}, advice),
        ),
      );
    }),
  );
}

/** The file inputs' photos as multipart ``files`` plus ``largest``. */
function photoForm(fileInput, largest, extra = {}) {
  const form = new FormData();
  for (const [k, v] of Object.entries(extra)) if (v) form.append(k, v);
  for (const f of fileInput.files) form.append("files", f, f.name);
  form.append("largest", largest.checked ? "true" : "false");
  return form;
}

function photoInputs() {
  const files = h("input", { type: "file", name: "files", multiple: true, accept: "image/*", required: true });
  const largestBox = checkbox("Use the largest face of a group photo", { name: "largest" });
  return { files, largest: largestBox.querySelector("input"), largestBox };
}

function enrolForm(gallery, reload) {
  const identity = h("input", { name: "identity", required: true, autocomplete: "off" });
  const externalId = h("input", { name: "external_id", autocomplete: "off" });
  const { files, largest, largestBox } = photoInputs();
  const meta = keyValueEditor("Metadata (optional)", {}, METADATA_HELP);
  const consentOn = h("input", { name: "consent_on", id: "enrol-consent-on", type: "date", max: today(), "aria-describedby": "consent-help" });
  const consentBy = h("input", { name: "consent_by", id: "enrol-consent-by", autocomplete: "off", placeholder: "e.g. HR, J. Doe" });
  const consent = h(
    "fieldset",
    { class: "consent", hidden: true },
    h("legend", {}, "Consent (attendance gallery)"),
    h(
      "p",
      { id: "consent-help", class: "help" },
      "This gallery enrols only people who consented. Record the day they consented and who recorded it; offer " +
        "another way to record attendance (a badge, a signature) to anyone who declines.",
    ),
    h(
      "div",
      { class: "row" },
      h("div", { class: "field" }, h("label", { for: "enrol-consent-on", class: "required" }, "Consent given on"), consentOn),
      h("div", { class: "field" }, h("label", { for: "enrol-consent-by", class: "required" }, "Consent recorded by"), consentBy),
    ),
  );
  let attendance = false;
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Enrol");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "enrol-h", novalidate: true },
    h("h2", { id: "enrol-h" }, "Enrol a person"),
    h("div", { class: "row" }, field("Person's name", identity), field("External id (optional)", externalId)),
    field("Photos", files, "One face per photo; several photos of the same person improve matching."),
    largestBox,
    consent,
    meta.el,
    slot,
    h("div", { class: "actions" }, button),
  );
  form.setKind = (kind) => {
    attendance = kind === "attendance";
    consent.hidden = !attendance;
    consentOn.required = consentBy.required = attendance;
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!identity.value.trim() || !files.files.length) {
      fill(slot, message("error", "Missing information", "Give the person's name and choose at least one photo."));
      return;
    }
    if (attendance && (!consentOn.value || !consentBy.value.trim())) {
      const missing = [!consentOn.value ? "the day they consented" : null, !consentBy.value.trim() ? "who recorded the consent" : null].filter(Boolean);
      fill(slot, message("error", "Consent required", `An attendance gallery enrols only people who consented: give ${missing.join(" and ")}.`));
      (consentOn.value ? consentBy : consentOn).focus();
      return;
    }
    if (attendance && consentOn.value > today()) {
      fill(slot, message("error", "Consent date in the future", "Give the day the person consented (today or earlier)."));
      consentOn.focus();
      return;
    }
    const metadata = meta.value();
    if (typeof metadata === "string") {
      fill(slot, message("error", "Metadata incomplete", metadata));
      return;
    }
    const n = files.files.length;
    fill(slot, message("info", null, `Uploading ${n} photo${n === 1 ? "" : "s"} and checking the face…`), h("progress", { "aria-label": "Uploading" }));
    try {
      const result = await busy(button, "Uploading…", () =>
        upload(
          `/api/galleries/${enc(gallery)}/identities`,
          photoForm(files, largest, {
            identity: identity.value.trim(),
            external_id: externalId.value.trim(),
            metadata: Object.keys(metadata).length ? JSON.stringify(metadata) : null,
            consent_on: attendance ? consentOn.value : null,
            consent_by: attendance ? consentBy.value.trim() : null,
          }),
        ),
      );
      fill(
        slot,
        message(
          "ok",
          `Enrolled ${result.identity}`,
          result.created ? "A new person in this gallery." : "Photos added to the person already enrolled.",
          result.consent_on ? `Consent of ${result.consent_on} recorded by ${result.consent_by}.` : null,
        ),
        photoFeedback(result),
      );
      toast("ok", `Enrolled ${result.identity}`, `${result.photos.length} photo(s)`);
      // Ready for the next person: nothing of this one stays in the form (the result above names them).
      for (const input of [identity, externalId, files, consentOn, consentBy]) input.value = "";
      largest.checked = false;
      meta.reset();
      await reload();
    } catch (err) {
      fill(slot);
      showError(err, slot, uploadTitle(err));
      const key = refusedKey(err);
      if (key) meta.mark(key);
    }
  });
  return form;
}

// ---- one person ---------------------------------------------------------------------------------

async function renderPerson(root, id) {
  const slot = h("div", { class: "slot" });
  const content = h("div", {});
  fill(root, h("p", {}, h("a", { href: "#/galleries" }, "← Galleries")), h("h1", {}, `Person ${id}`), slot, content);

  async function load() {
    let p;
    try {
      p = await get(`/api/identities/${id}`);
    } catch (err) {
      showError(err, slot, "Could not load the person");
      return;
    }
    const attrs = Object.entries(p.attributes || {});
    root.querySelector("h1").textContent = p.name;
    root.querySelector("p a").setAttribute("href", `#/galleries/${enc(p.gallery)}`);
    root.querySelector("p a").textContent = `← Gallery ${p.gallery}`;
    fill(
      content,
      facts([
        ["Gallery", p.gallery],
        ["External id", p.external_id ?? "—"],
        ["Notes", p.notes ?? "—"],
        ["Metadata", attrs.length ? h("ul", { class: "plain", "aria-label": "Metadata" }, attrs.map(([k, v]) => h("li", {}, h("span", { class: "muted" }, `${k}: `), v))) : "—"],
        ["Photos", String(p.photos)],
        ["Templates", String(p.templates)],
      ]),
      h(
        "section",
        { "aria-labelledby": "photos-h" },
        h("h2", { id: "photos-h" }, "Photos"),
        h(
          "div",
          { class: "photos" },
          p.photo_list.map((ph) =>
            h(
              "figure",
              {},
              mediaImg(media(ph.sha256), `Photo ${ph.original_name ?? ph.id} of ${p.name}`, "face"),
              h("figcaption", {}, `${ph.original_name ?? "photo"} · ${ph.width_px}×${ph.height_px}`),
            ),
          ),
        ),
      ),
      can.manage() ? detailsForm(p, load) : null,
      can.manage() ? addPhotosForm(p, load) : null,
      can.manage() ? removeSection(p) : null,
      can.manage() ? eraseSection(p, root) : null,
    );
  }
  await load();
  return null;
}

function detailsForm(person, reload) {
  const name = h("input", { name: "name", value: person.name, required: true, autocomplete: "off" });
  const externalId = h("input", { name: "external_id", value: person.external_id ?? "", autocomplete: "off" });
  const notes = h("textarea", { name: "notes", rows: 2 }, person.notes ?? "");
  const meta = keyValueEditor("Metadata", person.attributes || {}, METADATA_HELP);
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Save details");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "details-h", novalidate: true },
    h("h2", { id: "details-h" }, "Edit details"),
    h("div", { class: "row" }, field("Person's name", name), field("External id", externalId)),
    field("Notes", notes),
    meta.el,
    slot,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(slot);
    if (!name.value.trim()) {
      fill(slot, message("error", "Missing information", "The person needs a name."));
      return;
    }
    const metadata = meta.value();
    if (typeof metadata === "string") {
      fill(slot, message("error", "Metadata incomplete", metadata));
      return;
    }
    const body = { name: name.value.trim(), external_id: externalId.value.trim(), notes: notes.value.trim(), metadata };
    try {
      await busy(button, "Saving…", () => patch(`/api/identities/${person.id}`, body));
      toast("ok", "Details saved", body.name);
      await reload();
      const again = document.querySelector("form[aria-labelledby='details-h'] .slot");
      if (again) fill(again, message("ok", "Details saved", null));
    } catch (err) {
      showError(err, slot, "Could not save the details");
      const key = refusedKey(err);
      if (key) meta.mark(key);
    }
  });
  return form;
}

function addPhotosForm(person, reload) {
  const { files, largest, largestBox } = photoInputs();
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Add photos");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "add-h", novalidate: true },
    h("h2", { id: "add-h" }, "Add photos"),
    field("Photos", files),
    largestBox,
    slot,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!files.files.length) {
      fill(slot, message("error", "No photo chosen", "Choose at least one photo."));
      return;
    }
    fill(slot, h("progress", { "aria-label": "Uploading" }));
    try {
      const result = await busy(button, "Uploading…", () =>
        upload(`/api/identities/${person.id}/photos`, photoForm(files, largest)),
      );
      await reload();
      toast("ok", "Photos added", `${result.photos.length} photo(s) of ${person.name}`);
      const again = document.querySelector("form[aria-labelledby='add-h'] .slot");
      if (again) fill(again, message("ok", "Photos added", null), photoFeedback(result));
    } catch (err) {
      fill(slot);
      showError(err, slot, uploadTitle(err));
    }
  });
  return form;
}

function removeSection(person) {
  const slot = h("div", { class: "slot" });
  const button = h("button", { type: "button", class: "danger" }, "Remove person");
  button.addEventListener("click", async () => {
    const ok = await confirmDialog(
      `Remove ${person.name}?`,
      "Their templates and photos are deleted from this gallery; alarms already raised are kept. To erase everything about them, use Erase instead.",
      "Remove",
    );
    if (!ok) return;
    try {
      await busy(button, "Removing…", () => del(`/api/identities/${person.id}`));
      toast("ok", "Person removed", person.name);
      location.hash = `#/galleries/${enc(person.gallery)}`;
    } catch (err) {
      showError(err, slot, "Could not remove the person");
    }
  });
  return h(
    "section",
    { class: "card danger-zone", "aria-labelledby": "remove-h" },
    h("h2", { id: "remove-h" }, "Remove"),
    h("p", {}, "Removing a person deletes their templates and photos from this gallery; alarms already raised (with their crops and snapshots) are kept."),
    slot,
    button,
  );
}

const ERASES = [
  "their templates and enrolment photos",
  "their alarms, with the face crops and frame snapshots",
  "their sightings",
  "their entries in the search index",
];

function eraseSection(person, root) {
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const button = h("button", { type: "button", class: "danger" }, "Erase (GDPR Art. 17)");
  button.addEventListener("click", async () => {
    const reason = h("textarea", { name: "reason", rows: 2, required: true, placeholder: "e.g. Art. 17 request 2026-114" });
    const understood = checkbox("I understand that this cannot be undone", { name: "understood" });
    const dlg = dialogShell(
      `Erase ${person.name}?`,
      [
        h("p", {}, "Erasure deletes everything vigil holds about this person, files included:"),
        h("ul", {}, ERASES.map((x) => h("li", {}, x))),
        h(
          "p",
          {},
          "The audit log keeps only a pseudonymous record that an erasure happened (who did it, when and why), " +
            "without the name or the face. This cannot be undone.",
        ),
        field("Reason", reason, "Kept in the audit log, e.g. the request's reference."),
        understood,
      ],
      [h("button", { value: "no", class: "secondary", formnovalidate: true }, "Cancel"), h("button", { value: "yes", class: "danger" }, "Erase")],
    );
    const answer = await openDialog(dlg, () => {
      if (!reason.value.trim()) return "Give the reason for the erasure.";
      if (!understood.querySelector("input").checked) return "Tick that you understand it cannot be undone.";
      return null;
    });
    if (answer !== "yes") return;
    try {
      const r = await busy(button, "Erasing…", () => post(`/api/identities/${person.id}/erase`, { reason: reason.value.trim() }));
      toast("ok", "Person erased", r.pseudonym);
      showErasure(root, person, r);
    } catch (err) {
      showError(err, slot, "Could not erase the person");
    }
  });
  return h(
    "section",
    { class: "card danger-zone", "aria-labelledby": "erase-h" },
    h("h2", { id: "erase-h" }, "Erase (GDPR Art. 17)"),
    h(
      "p",
      {},
      "For a request to erase personal data: unlike Remove, erasure also deletes their alarms with the face crops and snapshots, and their sightings. The audit keeps a pseudonymous record only.",
    ),
    slot,
    button,
  );
}

function showErasure(root, person, r) {
  fill(
    root,
    h("p", {}, h("a", { href: `#/galleries/${enc(r.gallery)}` }, `← Gallery ${r.gallery}`)),
    h("h1", {}, "Person erased"),
    message(
      "ok",
      "Erasure done",
      `Everything vigil held about the person with id ${person.id} in gallery ${r.gallery} is deleted. The audit log records it under the pseudonym below.`,
    ),
    h(
      "section",
      { "aria-labelledby": "erasure-h" },
      h("h2", { id: "erasure-h" }, "Erasure report"),
      facts([
        ["Pseudonym", h("code", { "aria-label": "Pseudonym" }, r.pseudonym)],
        ["Gallery", r.gallery],
        ["Templates deleted", String(r.templates)],
        ["Photos deleted", String(r.photos)],
        ["Alarms deleted", String(r.alarms)],
        ["Files deleted", String(r.files_deleted)],
        ["Files left", r.files_left ? `${r.files_left} (the same photo is enrolled for someone else)` : "0"],
      ]),
    ),
    h("p", { class: "small muted" }, "Keep the pseudonym with the request: it is how the audit log names this erasure."),
  );
}
