// The transparency report (admins, auditors, supervisors): how the system was used in a period, from the
// audit log — searches, alarms and their review per watchlist and camera, thresholds and FPIR in force,
// camera running periods — as tables and a bar chart, and as a self-contained HTML file to download.

import { get } from "./api.js";
import { busy, facts, field, fill, fmtRate, fmtTime, h, message, showError } from "./ui.js";

const range = { since: "", until: "" };
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = { confirmed: "#c0392b", dismissed: "#7f8c8d", pending: "#e0b000" };

/** A date input's value as the ISO instant of the start of that day (local time), or null. */
function dayStart(value, plusDays = 0) {
  if (!value) return null;
  const [y, m, d] = value.split("-").map(Number);
  return new Date(y, m - 1, d + plusDays).toISOString();
}

function query() {
  // "Until" is inclusive: up to the start of the next day.
  return { since: dayStart(range.since), until: dayStart(range.until, 1) };
}

export async function render(root) {
  const since = h("input", { name: "since", type: "date", value: range.since });
  const until = h("input", { name: "until", type: "date", value: range.until });
  const download = h("a", { class: "button secondary-link", download: "vigil-transparency-report.html" }, "Download HTML");
  const form = h(
    "form",
    { class: "filters", "aria-label": "Report period" },
    field("From", since),
    field("Until (inclusive)", until),
    h("div", { class: "field" }, h("button", { type: "submit" }, "Show report")),
    h("div", { class: "field" }, download),
  );
  const slot = h("div", { class: "slot" });
  const body = h("div", {});
  fill(
    root,
    h("h1", {}, "Transparency report"),
    h(
      "p",
      { class: "muted" },
      "How vigil was used, counted from the audit log. Leave the dates empty for everything on record.",
    ),
    form,
    slot,
    body,
  );

  function setLink() {
    const q = new URLSearchParams({ format: "html" });
    for (const [k, v] of Object.entries(query())) if (v) q.set(k, v);
    download.setAttribute("href", `/api/reports/transparency?${q}`);
  }

  async function load() {
    range.since = since.value;
    range.until = until.value;
    setLink();
    if (range.since && range.until && range.since > range.until) {
      fill(slot, message("error", "Period not understood", "“From” is after “Until”."));
      return;
    }
    try {
      const r = await get("/api/reports/transparency", query());
      fill(slot);
      fill(body, report(r));
    } catch (err) {
      showError(err, slot, "Could not build the report");
    }
  }
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(form.querySelector("button[type=submit]"), "Building…", load);
  });
  await load();
  return null;
}

const share = (x) => (typeof x === "number" ? `${(x * 100).toFixed(1)}%` : "—");
const list = (xs, fmt = String) => (xs && xs.length ? xs.map(fmt).join(", ") : "—");

function table(label, headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "grid compact", "aria-label": label },
      h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))),
    ),
  );
}

function report(r) {
  const searches = Object.entries(r.searches).sort(([a], [b]) => a.localeCompare(b));
  const totalSearches = searches.reduce((n, [, v]) => n + v, 0);
  const period = `${r.since ? fmtTime(r.since) : "the first entry"} to ${r.until ? fmtTime(r.until) : "now"}`;
  return [
    r.audit_chain_ok
      ? null
      : message("error", "Audit chain BROKEN", "These figures come from an audit log that fails verification; see the audit log page."),
    h(
      "section",
      { "aria-labelledby": "tr-summary-h" },
      h("h2", { id: "tr-summary-h" }, "Summary"),
      table(
        "Summary",
        ["Figure", "Value"],
        [
          ["Period", period],
          ["Searches", String(totalSearches)],
          ["Alarms", String(r.alarms)],
          ["Confirmed", String(r.confirmed)],
          ["Dismissed", String(r.dismissed)],
          ["Share dismissed (of reviewed alarms)", share(r.dismissed_share)],
          ["Suppressed by earlier dismissals (not raised)", String(r.suppressed ?? 0)],
          ["Enrolments", String(r.enrolments)],
          ["Erasures (GDPR Art. 17)", String(r.erasures)],
          ["Purges", String(r.purges)],
          ["Stranger alarms", String(r.stranger_alarms ?? 0)],
          ["Audit entries in the period", String(r.audit_entries)],
          ["Audit chain", r.audit_chain_ok ? "intact" : "BROKEN"],
          ["Audit head hash", h("code", { class: "hash" }, r.audit_head_hash)],
        ],
        "",
      ),
    ),
    h(
      "section",
      { "aria-labelledby": "tr-searches-h" },
      h("h2", { id: "tr-searches-h" }, "Searches"),
      table("Searches", ["Kind", "Count"], searches.map(([k, v]) => [k, String(v)]), "No searches in this period."),
    ),
    h(
      "section",
      { "aria-labelledby": "tr-alarms-h" },
      h("h2", { id: "tr-alarms-h" }, "Alarms per watchlist and camera"),
      chart(r.per_watchlist_camera),
      table(
        "Alarms per watchlist and camera",
        ["Watchlist", "Camera", "Alarms", "Confirmed", "Dismissed", "Share dismissed", "Suppressed", "Thresholds in force", "FPIR in force", "Models"],
        r.per_watchlist_camera.map((w) => [
          w.watchlist,
          w.camera,
          String(w.alarms),
          String(w.confirmed),
          String(w.dismissed),
          share(w.dismissed_share),
          String(w.suppressed ?? 0),
          list(w.thresholds, (t) => t.toFixed(3)),
          list(w.fpir, fmtRate),
          list(w.models),
        ]),
        "No alarms in this period.",
      ),
    ),
    h(
      "section",
      { "aria-labelledby": "tr-strangers-h" },
      h("h2", { id: "tr-strangers-h" }, "Stranger rules in force"),
      h(
        "p",
        {},
        "On these cameras every face is checked against the galleries named; a face that matches none of them " +
          "during the hours raises a stranger alarm, whose face crop is kept for the retention shown. Nobody is identified.",
      ),
      table(
        "Stranger rules in force",
        ["Camera", "Galleries", "Hours (local)", "Min quality", "Retention (days)", "Enabled"],
        (r.stranger_rules || []).map((x) => [
          x.camera,
          list(x.galleries),
          x.hours || "always",
          x.min_quality.toFixed(2),
          String(x.retention_days),
          x.enabled ? "yes" : "no",
        ]),
        "No camera has a stranger rule.",
      ),
    ),
    h(
      "section",
      { "aria-labelledby": "tr-runs-h" },
      h("h2", { id: "tr-runs-h" }, "Camera running periods"),
      table(
        "Camera running periods",
        ["Camera", "Started", "Ended", "Watchlists checked", "Frames", "Alarms"],
        r.camera_runs.map((p) => [
          p.camera,
          fmtTime(p.started),
          p.ended ? fmtTime(p.ended) : "running (or not recorded)",
          list(p.watchlists),
          p.frames ?? "—",
          p.alarms ?? "—",
        ]),
        "No camera ran in this period.",
      ),
    ),
    facts([["Report built", fmtTime(new Date().toISOString())]]),
  ];
}

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** Stacked bars per watchlist and camera: confirmed, dismissed, not yet decided. */
function chart(rows) {
  if (!rows.length) return null;
  const bars = rows.map((r) => ({
    label: `${r.watchlist} @ ${r.camera}`,
    confirmed: r.confirmed,
    dismissed: r.dismissed,
    pending: Math.max(0, r.alarms - r.confirmed - r.dismissed),
  }));
  const max = Math.max(1, ...rows.map((r) => r.alarms));
  const step = max <= 5 ? 1 : Math.ceil(max / 5);
  const top = Math.ceil(max / step) * step;
  const W = Math.max(420, 110 * bars.length + 80);
  const H = 260;
  const left = 44;
  const bottom = 50;
  const plotH = H - bottom - 20;
  const bw = Math.min(60, (W - left - 20) / bars.length - 24);
  const y = (v) => 20 + plotH - (v / top) * plotH;
  const grid = [];
  for (let v = 0; v <= top; v += step) {
    grid.push(
      svg("line", { x1: left, x2: W - 10, y1: y(v), y2: y(v), stroke: "#d8dce2" }),
      svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#5b6470" }, v),
    );
  }
  const groups = bars.map((b, i) => {
    const x = left + 16 + i * ((W - left - 20) / bars.length);
    let base = 0;
    const parts = ["confirmed", "dismissed", "pending"].map((k) => {
      const v = b[k];
      const rect = v
        ? svg("rect", { x, y: y(base + v), width: bw, height: y(base) - y(base + v), fill: COLOURS[k] }, svg("title", {}, `${b.label}: ${v} ${k}`))
        : null;
      base += v;
      return rect;
    });
    return svg(
      "g",
      {},
      parts,
      svg("text", { x: x + bw / 2, y: y(base) - 4, "text-anchor": "middle", "font-size": 11, "font-weight": 600 }, base),
      svg("text", { x: x + bw / 2, y: H - bottom + 16, "text-anchor": "middle", "font-size": 11 }, b.label.length > 22 ? `${b.label.slice(0, 21)}…` : b.label),
    );
  });
  const legend = Object.entries(COLOURS).map(([k, c], i) =>
    svg(
      "g",
      {},
      svg("rect", { x: left + i * 110, y: H - 18, width: 12, height: 12, fill: c }),
      svg("text", { x: left + 16 + i * 110, y: H - 8, "font-size": 12 }, k === "pending" ? "not decided" : k),
    ),
  );
  return h(
    "figure",
    { class: "chart" },
    svg(
      "svg",
      { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "Chart: alarms per watchlist and camera" },
      grid,
      groups,
      legend,
    ),
    h("figcaption", {}, "Alarms per watchlist and camera: confirmed, dismissed and not yet decided."),
  );
}
