// Investigations: where and when was this person seen? A retrospective search of the sightings kept by
// cameras that opted in, by photo or by an enrolled person, over chosen cameras and a time window, for
// a case (required: every search is audited with it). Ranked hits with the face crops and a timeline.

import { get, media, upload } from "./api.js";
import {
  busy,
  checkbox,
  facts,
  field,
  fill,
  fmtRate,
  fmtScore,
  fmtTime,
  h,
  localInput,
  mediaImg,
  message,
  plural,
  select,
  showError,
} from "./ui.js";

const enc = encodeURIComponent;
const DAY_MS = 86_400_000;
const CASE_HELP =
  "Required. Every search is recorded in the audit log with this reference, who searched, the photo's " +
  "fingerprint, the cameras, the window and every hit: give the case or incident number that justifies it.";

export async function render(root) {
  const slot = h("div", { class: "slot" });
  let cameras = [];
  let galleries = [];
  try {
    [cameras, galleries] = await Promise.all([get("/api/cameras"), get("/api/galleries")]);
  } catch (err) {
    showError(err, slot, "Could not list the cameras and galleries");
  }
  const results = h("section", { class: "results", "aria-label": "Search results", "aria-live": "polite" });
  const urls = [];
  fill(
    root,
    h("h1", {}, "Investigations"),
    message(
      "info",
      null,
      "Where and when was this person seen? vigil searches the sightings (one best face shot per person " +
        "walking past) of the cameras that keep them, for as long as their retention allows.",
      "A hit is a lead for a person to check, never a finding by itself.",
    ),
    slot,
    searchForm(cameras, galleries, results, urls),
    results,
  );
  return () => urls.forEach((u) => URL.revokeObjectURL(u));
}

function searchForm(cameras, galleries, results, urls) {
  const byPhoto = h("input", { type: "radio", name: "probe", value: "photo", checked: true });
  const byPerson = h("input", { type: "radio", name: "probe", value: "person" });
  const file = h("input", { type: "file", name: "file", accept: "image/*" });
  const largestBox = checkbox("Use the largest face of a group photo", { name: "largest" });
  const open = galleries.filter((g) => g.identities > 0);
  const gallery = select({ name: "gallery" }, [["", "— choose a gallery —"], ...open.map((g) => [g.name, `${g.name} (${g.kind})`])], "");
  const person = select({ name: "identity_id", disabled: true }, [["", "— choose the gallery first —"]], "");
  gallery.addEventListener("change", async () => {
    fill(person, h("option", { value: "" }, "loading…"));
    person.disabled = true;
    if (!gallery.value) {
      fill(person, h("option", { value: "" }, "— choose the gallery first —"));
      return;
    }
    try {
      const rows = await get(`/api/galleries/${enc(gallery.value)}/identities`);
      fill(
        person,
        h("option", { value: "" }, rows.length ? "— choose the person —" : "nobody enrolled"),
        rows.map((p) => h("option", { value: String(p.id) }, p.external_id ? `${p.name} (${p.external_id})` : p.name)),
      );
      person.disabled = !rows.length;
    } catch (err) {
      showError(err, null, "Could not list the people");
    }
  });
  const photoPart = h("div", { class: "probe-photo" }, field("Photo of the person", file, "One face; the face at least 80 px wide."), largestBox);
  const personPart = h(
    "div",
    { class: "row probe-person", hidden: true },
    field("Gallery", gallery),
    field("Person", person, "Their enrolled photos are the probe; a sighting scores its best against any of them."),
  );
  const syncProbe = () => {
    photoPart.hidden = !byPhoto.checked;
    personPart.hidden = byPhoto.checked;
  };
  byPhoto.addEventListener("change", syncProbe);
  byPerson.addEventListener("change", syncProbe);

  const keeping = cameras.filter((c) => c.keep_sightings);
  const boxes = cameras.map((c) =>
    checkbox([c.name, c.keep_sightings ? null : h("small", { class: "muted" }, " (keeps no sightings now)")], {
      name: "camera",
      value: c.name,
    }),
  );
  const now = new Date();
  const since = h("input", { type: "datetime-local", name: "since", required: true, value: localInput(new Date(now - DAY_MS)) });
  const until = h("input", { type: "datetime-local", name: "until", value: "" });
  const caseRef = h("input", { name: "case", required: true, autocomplete: "off", placeholder: "e.g. INC-2026-117" });
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Search");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "inv-h", novalidate: true },
    h("h2", { id: "inv-h" }, "Search the sightings"),
    h(
      "fieldset",
      {},
      h("legend", {}, "Who to look for"),
      h("div", { class: "checks" }, h("label", { class: "check" }, byPhoto, " A photo"), h("label", { class: "check" }, byPerson, " An enrolled person")),
      photoPart,
      personPart,
    ),
    cameras.length
      ? h(
          "fieldset",
          {},
          h("legend", {}, "Cameras (none ticked: every camera with sightings)"),
          h("div", { class: "checks" }, boxes),
          keeping.length ? null : h("p", { class: "help" }, "No camera keeps sightings now: turn it on in a camera's Edit dialog (Cameras page)."),
        )
      : message("warn", null, "No cameras yet: sightings come from cameras that keep them."),
    h(
      "div",
      { class: "row" },
      field("From", since, "Sightings first seen from this time (your local time)."),
      field("Until", until, "Empty: now."),
    ),
    h("div", { class: "field" }, h("label", { for: "case-ref", class: "required" }, "Case reference"), caseRef, h("small", { id: "case-ref-help", class: "help" }, CASE_HELP)),
    slot,
    h("div", { class: "actions" }, button),
  );
  caseRef.id = "case-ref";
  caseRef.setAttribute("aria-describedby", "case-ref-help");

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(slot);
    caseRef.removeAttribute("aria-invalid");
    const problems = [];
    const data = new FormData();
    if (byPhoto.checked) {
      const photo = file.files[0];
      if (!photo) problems.push("choose a photo of the person");
      else data.append("file", photo, photo.name);
      data.append("largest", largestBox.querySelector("input").checked ? "true" : "false");
    } else if (!person.value) {
      problems.push("choose the gallery and the person");
    } else {
      data.append("identity_id", person.value);
    }
    if (!since.value) problems.push("give the start of the window");
    const from = since.value ? new Date(since.value) : null;
    const to = until.value ? new Date(until.value) : null;
    if (from && to && to <= from) problems.push("the window ends before it starts");
    if (!caseRef.value.trim()) {
      caseRef.setAttribute("aria-invalid", "true");
      fill(
        slot,
        message(
          "error",
          "A case reference is required",
          "Every search of the sightings is recorded in the audit log with its case reference, so that it can be justified later.",
          problems.length ? `Also: ${problems.join("; ")}.` : "Give the case or incident number, then search again.",
        ),
      );
      caseRef.focus();
      return;
    }
    if (problems.length) {
      fill(slot, message("error", "Missing information", `Please ${problems.join("; ")}.`));
      return;
    }
    data.append("case", caseRef.value.trim());
    data.append("since", from.toISOString());
    if (to) data.append("until", to.toISOString());
    for (const b of boxes) {
      const input = b.querySelector("input");
      if (input.checked) data.append("camera", input.value);
    }
    data.append("plot", "true");
    fill(results, h("progress", { "aria-label": "Searching" }));
    try {
      const r = await busy(button, "Searching…", () => upload("/api/investigations/search", data));
      let probeUrl = null;
      if (byPhoto.checked) {
        probeUrl = URL.createObjectURL(file.files[0]);
        urls.push(probeUrl);
      }
      const who = byPhoto.checked ? null : person.selectedOptions[0]?.textContent;
      fill(results, resultView(r, probeUrl, who));
    } catch (err) {
      fill(results);
      showError(err, slot, err.status === 413 ? "Photo too large" : "Search failed");
    }
  });
  return form;
}

function resultView(r, probeUrl, who) {
  const n = r.hits.length;
  const summary = n
    ? message(
        "ok",
        `${plural(n, "sighting")} above the threshold${r.truncated ? " (more were found: narrow the window)" : ""}`,
        `Best first. Threshold ${fmtScore(r.threshold)} for ${plural(r.searched, "sighting")} searched, at a false-positive identification rate of ${fmtRate(r.fpir)}.`,
        "Check each face yourself: a hit is a lead, not proof.",
      )
    : message(
        "warn",
        "Nobody above the threshold",
        r.searched
          ? `None of the ${plural(r.searched, "sighting")} searched scores ${fmtScore(r.threshold)} or more against this face.`
          : "There are no sightings in this window on these cameras.",
        "This is not proof that the person was not there: a face may have been turned away, too small, or on a camera that keeps no sightings. Widen the window or the cameras.",
      );
  return [
    h("h2", {}, `Results for case ${r.case}`),
    h(
      "div",
      { class: "probe-summary" },
      probeUrl ? h("figure", {}, h("img", { src: probeUrl, alt: "The searched photo", class: "face" }), h("figcaption", {}, "Searched photo")) : null,
      facts([
        ["Case", r.case],
        ["Looked for", probeUrl ? "the face in the photo" : who || `identity ${r.identity_id}`],
        ["Cameras", r.cameras.length ? r.cameras.join(", ") : "all cameras with sightings"],
        ["Window", `${fmtTime(r.since)} – ${fmtTime(r.until)}`],
        ["Sightings searched", String(r.searched)],
        ["Threshold", `${fmtScore(r.threshold)} (FPIR ${fmtRate(r.fpir)}, model ${r.model})`],
        ["Audit entry", `#${r.audit_id}`],
      ]),
    ),
    summary,
    n ? timelineSvg(r) : null,
    n ? hitsTable(r) : null,
    r.timeline_png
      ? h(
          "details",
          { class: "png-timeline" },
          h("summary", {}, "The timeline as an image for the case file (PNG, UTC)"),
          h("img", { src: `data:image/png;base64,${r.timeline_png}`, alt: `Timeline plot of case ${r.case}`, class: "plot" }),
          h("p", {}, h("a", { href: `data:image/png;base64,${r.timeline_png}`, download: `timeline-${r.case}.png` }, "Download the PNG")),
        )
      : null,
  ];
}

function scoreBar(score, threshold) {
  // The part of the scale above the threshold, where hits live.
  const share = Math.max(0, Math.min(1, (score - threshold) / Math.max(1 - threshold, 1e-6)));
  return h(
    "span",
    { class: "scorebar", title: `score ${fmtScore(score)}, threshold ${fmtScore(threshold)}` },
    h("meter", { min: 0, max: 1, value: share, "aria-label": "how far above the threshold" }),
    ` ${fmtScore(score)} ≥ ${fmtScore(threshold)}`,
  );
}

function hitsTable(r) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "grid", "aria-label": "Sightings found" },
      h(
        "thead",
        {},
        h("tr", {}, ["#", "Face", "Camera", "First seen", "Last seen", "Frames", "Score vs threshold", "Watchlist match"].map((t) => h("th", { scope: "col" }, t))),
      ),
      h(
        "tbody",
        {},
        r.hits.map((hit, i) =>
          h(
            "tr",
            { dataset: { sighting: String(hit.sighting_id) } },
            h("td", {}, String(i + 1)),
            h(
              "td",
              {},
              hit.crop_sha256
                ? h("a", { href: media(hit.crop_sha256), target: "_blank", rel: "noopener" }, mediaImg(media(hit.crop_sha256), `Face of sighting ${hit.sighting_id} on ${hit.camera}`, "crop"))
                : h("span", { class: "noimg crop" }, "no crop"),
            ),
            h("td", {}, hit.camera),
            h("td", { class: "nowrap" }, fmtTime(hit.first_seen)),
            h("td", { class: "nowrap" }, fmtTime(hit.last_seen)),
            h("td", {}, String(hit.frames)),
            h("td", { class: "nowrap" }, scoreBar(hit.score, r.threshold)),
            h("td", {}, hit.identity_id ? h("a", { href: `#/people/${hit.identity_id}` }, `person ${hit.identity_id}`) : "—"),
          ),
        ),
      ),
    ),
  );
}

const SVG = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function tickLabel(t, spanMs) {
  const d = new Date(t);
  if (spanMs < 10 * 60_000) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (spanMs < 2 * DAY_MS) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** Colour of a score: from light (at the threshold) to dark (a perfect match). */
function scoreColour(score, threshold) {
  const x = Math.max(0, Math.min(1, (score - threshold) / Math.max(1 - threshold, 1e-6)));
  return `hsl(${210 - 60 * x}, 70%, ${62 - 34 * x}%)`;
}

/** One row per camera; each sighting a bar from first to last seen, numbered by rank. */
function timelineSvg(r) {
  const cams = [...new Set([...r.hits.map((x) => x.camera)])].sort();
  const first = Math.min(...r.hits.map((x) => Date.parse(x.first_seen)));
  const last = Math.max(...r.hits.map((x) => Date.parse(x.last_seen)));
  const pad = Math.max((last - first) * 0.08, 15_000);
  const t0 = first - pad;
  const t1 = last + pad;
  const W = 960;
  const left = 130;
  const right = 44;
  const rowH = 44;
  const top = 16;
  const H = top + rowH * cams.length + 34;
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (W - left - right);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": `Timeline of the sightings found, case ${r.case}` });
  svg.append(s("title", {}, `Timeline: ${plural(r.hits.length, "sighting")} on ${plural(cams.length, "camera")}`));
  cams.forEach((c, i) => {
    const y = top + i * rowH + rowH / 2;
    svg.append(
      s("rect", { x: left, y: top + i * rowH + 2, width: W - left - right, height: rowH - 4, fill: i % 2 ? "#f6f8fa" : "#eef2f7", rx: 3 }),
      s("text", { x: left - 8, y: y + 4, "text-anchor": "end", "font-size": 13, fill: "#1b1f24" }, c),
    );
  });
  const ticks = 6;
  for (let k = 0; k <= ticks; k++) {
    const t = t0 + ((t1 - t0) * k) / ticks;
    const xx = x(t);
    svg.append(
      s("line", { x1: xx, x2: xx, y1: top, y2: top + rowH * cams.length, stroke: "#c4cbd4", "stroke-dasharray": "2 3" }),
      s("text", { x: xx, y: top + rowH * cams.length + 18, "text-anchor": "middle", "font-size": 11, fill: "#5b6470" }, tickLabel(t, t1 - t0)),
    );
  }
  r.hits.forEach((hit, i) => {
    const row = cams.indexOf(hit.camera);
    const y = top + row * rowH + rowH / 2;
    const a = x(Date.parse(hit.first_seen));
    const b = Math.max(x(Date.parse(hit.last_seen)), a + 4);
    const colour = scoreColour(hit.score, r.threshold);
    const g = s(
      "g",
      { class: "hit" },
      s("title", {}, `#${i + 1} ${hit.camera}: ${fmtTime(hit.first_seen)} – ${fmtTime(hit.last_seen)}, score ${fmtScore(hit.score)}`),
      s("rect", { x: a, y: y - 7, width: b - a, height: 14, rx: 4, fill: colour, opacity: 0.55 }),
      s("circle", { cx: a, cy: y, r: 9, fill: colour, stroke: "#1b1f24", "stroke-width": 1 }),
      s("text", { x: a, y: y + 4, "text-anchor": "middle", "font-size": 10, "font-weight": 700, fill: "#fff" }, String(i + 1)),
    );
    svg.append(g);
  });
  return h(
    "figure",
    { class: "chart timeline" },
    svg,
    h(
      "figcaption",
      {},
      "Each mark is a sighting, numbered by rank (1 is the best score); its bar runs from first to last seen; darker is a higher score. " +
        "The axis is zoomed to the hits, in your local time.",
    ),
  );
}
