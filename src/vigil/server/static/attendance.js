// Attendance: the report of an attendance gallery for a day or a range of days, per person and day
// (first in, last out, late, absent, left early), with its schedule and a CSV download.

import { get } from "./api.js";
import { busy, facts, field, fill, h, isoDate, message, plural, select, showError } from "./ui.js";

const DAY_NAMES = { mon: "Mon", tue: "Tue", wed: "Wed", thu: "Thu", fri: "Fri", sat: "Sat", sun: "Sun" };

/** "08:55" from the report's local ISO time ("2025-03-03T08:55:12+01:00"): the server's time zone, not the browser's. */
function clock(iso) {
  return iso ? iso.slice(11, 16) : "—";
}

function daysText(days) {
  if (!days) return "every day";
  return days
    .split(",")
    .map((d) => DAY_NAMES[d.trim()] || d.trim())
    .join(", ");
}

export function scheduleFacts(s, zone) {
  const none = !s.start && !s.end && !s.days;
  if (none) return message("info", "No schedule", "Without a schedule nobody is late, leaves early or is absent: the report gives arrivals and departures only.");
  return facts([
    ["Expected arrival", s.start ?? "—"],
    ["Expected departure", s.end ?? "—"],
    ["Working days", daysText(s.days)],
    ["Grace before late", s.grace_min != null ? plural(s.grace_min, "minute") : "none"],
    zone ? ["Time zone", zone] : null,
  ]);
}

export async function render(root, params) {
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  let galleries = [];
  try {
    galleries = (await get("/api/galleries")).filter((g) => g.kind === "attendance");
  } catch (err) {
    showError(err, slot, "Could not list the galleries");
  }
  const out = h("section", { "aria-label": "Attendance report", "aria-live": "polite" });
  fill(
    root,
    h("h1", {}, "Attendance"),
    message(
      "info",
      null,
      "Marks come from entrance cameras recognising the people of an attendance gallery, who consented to it.",
      "A mark is a face recognition result, not proof of presence: an absence may be a missed face, a presence a false match. Each row is a prompt for review, never a sanction by itself.",
    ),
    slot,
  );
  if (!galleries.length) {
    root.append(message("warn", "No attendance gallery yet", "Create one on the Galleries & people page (kind: Attendance), with its schedule, and enrol people with their consent."));
    return null;
  }
  const wanted = params[0] && galleries.some((g) => g.name === params[0]) ? params[0] : galleries[0].name;
  const gallery = select({ name: "gallery" }, galleries.map((g) => [g.name, `${g.name} (${plural(g.identities, "person", "people")})`]), wanted);
  const day = h("input", { type: "date", name: "date", required: true, value: isoDate() });
  const until = h("input", { type: "date", name: "until" });
  const button = h("button", { type: "submit" }, "Show report");
  const form = h(
    "form",
    { class: "card filters", "aria-label": "Choose the report", novalidate: true },
    field("Attendance gallery", gallery),
    field("Date", day),
    field("Until (optional)", until, "Last day of a range, inclusive."),
    h("div", { class: "field" }, button),
  );
  root.append(form, out);

  let asked = 0;
  async function load() {
    fill(slot);
    if (!day.value) {
      fill(slot, message("error", "Missing information", "Choose the date."));
      return;
    }
    if (until.value && until.value < day.value) {
      fill(slot, message("error", "Range not understood", "The last day is before the first."));
      return;
    }
    const query = { gallery: gallery.value, date: day.value, until: until.value || null };
    const mine = ++asked;
    try {
      const r = await busy(button, "Loading…", () => get("/api/attendance/report", query));
      if (mine === asked) fill(out, reportView(r, query)); // an answer to an older request is dropped
    } catch (err) {
      if (mine !== asked) return;
      fill(out);
      showError(err, slot, "Could not make the report");
    }
  }
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load();
  });
  gallery.addEventListener("change", load);
  await load();
  return null;
}

function csvHref(q) {
  const p = new URLSearchParams({ gallery: q.gallery, date: q.date, format: "csv" });
  if (q.until) p.set("until", q.until);
  return `/api/attendance/report?${p}`;
}

function statusBadge(row) {
  const badges = [h("span", { class: `badge att-${row.status}` }, row.status)];
  if (row.left_early) badges.push(" ", h("span", { class: "badge att-early" }, "left early"));
  return badges;
}

function reportView(r, q) {
  const range = r.date_from === r.date_until ? r.date_from : `${r.date_from} to ${r.date_until}`;
  const early = r.rows.filter((x) => x.left_early).length;
  return [
    h("h2", {}, `${r.gallery}: ${range}`),
    h(
      "div",
      { class: "two-col" },
      h("section", { "aria-labelledby": "sched-h" }, h("h3", { id: "sched-h" }, "Schedule"), scheduleFacts(r.schedule, r.timezone)),
      h(
        "section",
        { "aria-labelledby": "sum-h" },
        h("h3", { id: "sum-h" }, "Summary"),
        h(
          "ul",
          { class: "plain summary-badges", "aria-label": "Summary" },
          h("li", {}, h("span", { class: "badge att-present" }, "present"), ` ${r.present}`, h("small", { class: "muted" }, " (late included)")),
          h("li", {}, h("span", { class: "badge att-late" }, "late"), ` ${r.late}`),
          h("li", {}, h("span", { class: "badge att-absent" }, "absent"), ` ${r.absent}`),
          h("li", {}, h("span", { class: "badge att-early" }, "left early"), ` ${early}`),
        ),
        h("p", {}, h("a", { class: "button secondary", href: csvHref(q), download: "" }, "Download CSV")),
      ),
    ),
    r.notes?.length ? h("ul", { class: "notes", "aria-label": "Notes" }, r.notes.map((n) => h("li", { class: "small muted" }, n))) : null,
    r.rows.length
      ? h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "grid", "aria-label": "Attendance" },
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                ["Date", "Person", "Status", "First in", "Last out", "Marks", "Late by"].map((t) => h("th", { scope: "col" }, t)),
              ),
            ),
            h(
              "tbody",
              {},
              r.rows.map((row) =>
                h(
                  "tr",
                  { class: `att-row-${row.status}` },
                  h("td", { class: "nowrap" }, row.date, row.working_day ? null : h("small", { class: "muted" }, " (day off)")),
                  h("td", {}, h("a", { href: `#/people/${row.identity_id}` }, row.person), row.external_id ? h("small", { class: "muted" }, ` ${row.external_id}`) : null),
                  h("td", { class: "nowrap" }, statusBadge(row)),
                  h("td", {}, clock(row.first_in)),
                  h("td", {}, row.last_out ? clock(row.last_out) : row.first_in ? h("span", { class: "muted", title: "one mark only: nobody saw them leave" }, "—") : "—"),
                  h("td", {}, String(row.marks)),
                  h("td", {}, row.late_by_min != null ? `${Math.round(row.late_by_min)} min` : "—"),
                ),
              ),
            ),
          ),
        )
      : h("p", { class: "muted" }, "Nobody to report for these days (no marks, and no working day for anyone whose consent was recorded before)."),
    h("p", { class: "small muted" }, `Times are local to ${r.timezone}. Late: first in after the start plus the grace; left early: last out before the end.`),
  ];
}
