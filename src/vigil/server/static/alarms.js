// Alarm review: the queue with filters, and one alarm's evidence with Confirm, Dismiss and Close.

import { ApiError, can, get, media, post, session } from "./api.js";
import { onLive } from "./live.js";
import { negativeSection, notThisPersonHint } from "./negatives.js";
import {
  busy,
  errorBox,
  facts,
  field,
  fill,
  fmtRate,
  fmtScore,
  fmtTime,
  h,
  mediaImg,
  message,
  promptDialog,
  select,
  showError,
  stateBadge,
  toast,
} from "./ui.js";

const STATES = [
  ["pending", "Pending review"],
  ["confirmed", "Confirmed"],
  ["dismissed", "Dismissed"],
  ["closed", "Closed"],
  ["suppressed", "Suppressed by earlier dismissals"],
  ["", "Any state"],
];

const HUMAN_REVIEW =
  "A match is a request for human review, never a decision by itself. Compare the faces yourself; " +
  "act only on what you have checked.";

export async function render(root, params) {
  if (params[0]) {
    if (!can.live()) {
      fill(root, h("h1", {}, "Alarm"), message("warn", "Not available for your role", "Auditors see the alarm list only."));
      return null;
    }
    return renderDetail(root, Number(params[0]));
  }
  return renderList(root);
}

const filters = { state: "pending", camera: "", gallery: "", kind: "" };
const KINDS = [["", "All kinds"], ["match", "Watchlist matches"], ["stranger", "Strangers"]];
/** Who an alarm is about: the person matched, or "stranger" (a camera's stranger rule identifies nobody). */
const who = (a) => (a.kind === "stranger" ? "stranger" : a.identity);

async function choices(path) {
  if (!can.live()) return null;
  try {
    return (await get(path)).map((x) => x.name);
  } catch {
    return null;
  }
}

function choiceInput(name, label, values, current) {
  const input = values
    ? select({ name }, [["", `All ${label.toLowerCase()}s`], ...values], current)
    : h("input", { name, value: current, placeholder: "any" });
  return field(label, input);
}

async function renderList(root) {
  const [cams, gals] = await Promise.all([choices("/api/cameras"), choices("/api/galleries")]);
  const stateSel = select({ name: "state" }, STATES, filters.state);
  const form = h(
    "form",
    { class: "filters", "aria-label": "Filter alarms" },
    field("State", stateSel),
    choiceInput("camera", "Camera", cams, filters.camera),
    choiceInput("gallery", "Watchlist", gals, filters.gallery),
    field("Kind", select({ name: "kind" }, KINDS, filters.kind)),
    h("div", { class: "field" }, h("button", { type: "submit" }, "Apply filters")),
  );
  const slot = h("div", { class: "slot" });
  const table = h("div", { class: "table-wrap" });
  fill(
    root,
    h("h1", {}, can.live() ? "Alarm review queue" : "Alarms"),
    message("info", null, HUMAN_REVIEW),
    form,
    slot,
    table,
  );

  async function load() {
    try {
      const rows = await get("/api/alarms", { ...filters, limit: 200 });
      fill(slot);
      fill(table, rows.length ? alarmTable(rows) : h("p", { class: "muted" }, "No alarms match these filters."));
    } catch (err) {
      showError(err, slot, "Could not load the alarms");
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    for (const k of Object.keys(filters)) filters[k] = String(data.get(k) ?? "").trim();
    load();
  });
  await load();

  let pending = null;
  const unsubscribe = onLive((ev) => {
    if (ev.type !== "alarm" && ev.type !== "alarm_reviewed") return;
    clearTimeout(pending);
    pending = setTimeout(load, 300);
  });
  return () => {
    clearTimeout(pending);
    unsubscribe();
  };
}

function alarmTable(rows) {
  const live = can.live();
  return h(
    "table",
    { class: "grid", "aria-label": "Alarms" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        live ? h("th", { scope: "col" }, "Face") : null,
        ["Person", "Watchlist", "Camera", "Time", "Score / threshold", "Confirmations", "State"].map((t) =>
          h("th", { scope: "col" }, t),
        ),
        live ? h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Open")) : null,
      ),
    ),
    h(
      "tbody",
      {},
      rows.map((a) =>
        h(
          "tr",
          { dataset: { alarmId: String(a.id) } },
          live ? h("td", {}, a.crop_sha256 ? mediaImg(media(a.crop_sha256), `Face on ${a.camera}`, "thumb") : "—") : null,
          h("td", {}, who(a)),
          h("td", {}, a.gallery ?? "—"),
          h("td", {}, a.camera),
          h("td", {}, fmtTime(a.captured_at)),
          h("td", {}, `${fmtScore(a.score)} / ${fmtScore(a.threshold)}`),
          h("td", {}, `${a.confirmations} of ${a.confirmations_required}`),
          h("td", {}, stateBadge(a.state)),
          live ? h("td", {}, h("a", { href: `#/alarms/${a.id}`, class: "button small" }, `Open alarm ${a.id}`)) : null,
        ),
      ),
    ),
  );
}

async function renderDetail(root, id) {
  const status = h("div", { class: "slot", role: "region", "aria-label": "Review status" });
  const content = h("div", {});
  fill(
    root,
    h("p", {}, h("a", { href: "#/alarms" }, "← Review queue")),
    h("h1", {}, `Alarm ${id}`),
    message("warn", "Human review", HUMAN_REVIEW),
    status,
    content,
  );
  let current = null;
  let stopped = false;

  async function load() {
    try {
      current = await get(`/api/alarms/${id}`);
      if (!stopped) show(current);
    } catch (err) {
      showError(err, status, "Could not load the alarm");
    }
  }

  function show(a) {
    root.querySelector("h1").textContent = `Alarm ${a.id}: ${who(a)}`;
    const mine = a.reviews.some((r) => r.action === "confirm" && r.actor === `user:${session.name}`);
    fill(
      content,
      h(
        "section",
        { class: "compare", "aria-label": "Faces to compare" },
        h(
          "figure",
          { class: "probe" },
          a.crop_sha256 ? mediaImg(media(a.crop_sha256), `Face seen on camera ${a.camera}`, "face") : h("span", { class: "noimg face" }, "no crop stored"),
          h("figcaption", {}, `Seen on ${a.camera}`),
        ),
        h("div", { class: "versus", "aria-hidden": "true" }, "vs"),
        a.kind === "stranger"
          ? h("p", { class: "muted" }, "A stranger: this face matched none of the galleries of the camera's stranger rule. Nobody is identified.")
          : a.enrolled_photos.length
          ? a.enrolled_photos.map((sha, i) =>
              h(
                "figure",
                { class: "enrolled" },
                mediaImg(media(sha), `Enrolled photo ${i + 1} of ${a.identity}`, "face"),
                h("figcaption", {}, `Enrolled photo ${i + 1}`),
              ),
            )
          : h("p", { class: "muted" }, "The enrolled photos are gone (the person was removed)."),
      ),
      h(
        "div",
        { class: "detail-grid" },
        h(
          "section",
          { "aria-labelledby": "facts-h" },
          h("h2", { id: "facts-h" }, "Match"),
          facts([
            ["State", stateBadge(a.state)],
            ["Confirmations", `${a.confirmations} of ${a.confirmations_required} required`],
            ["Person", who(a)],
            ["Watchlist", a.gallery ?? "—"],
            ["Score", fmtScore(a.score)],
            ["Threshold", fmtScore(a.threshold)],
            ["False-positive identification rate (FPIR)", fmtRate(a.fpir)],
            ["Model", a.model],
            ["Camera", a.camera],
            ["Time", fmtTime(a.captured_at)],
            ["Face quality", a.quality.toFixed(2)],
            ["Track / frame", `${a.track_id} / ${a.frame}`],
            a.dismiss_reason ? ["Dismiss reason", a.dismiss_reason] : null,
          ]),
        ),
        h(
          "section",
          { "aria-labelledby": "frame-h" },
          h("h2", { id: "frame-h" }, "Frame"),
          a.thumbnail_sha256
            ? mediaImg(media(a.thumbnail_sha256), `Frame from camera ${a.camera}`, "frame")
            : h("p", { class: "muted" }, "No frame stored."),
        ),
      ),
      h("section", { "aria-labelledby": "review-h" }, h("h2", { id: "review-h" }, "Review"), actions(a, mine)),
      negativeSection(a, load),
      can.live() ? exportSection(a) : null,
      h(
        "section",
        { "aria-labelledby": "hist-h" },
        h("h2", { id: "hist-h" }, "Review history"),
        a.reviews.length
          ? h(
              "ol",
              { class: "history" },
              a.reviews.map((r) =>
                h("li", {}, `${fmtTime(r.at)} — ${r.actor}: ${r.action}`, r.reason ? ` (“${r.reason}”)` : ""),
              ),
            )
          : h("p", { class: "muted" }, "Nobody has reviewed this alarm yet."),
      ),
    );
  }

  function actions(a, mine) {
    const box = h("div", { class: "actions left" });
    if (a.state === "pending") {
      const left = a.confirmations_required - a.confirmations;
      // The server refuses a second confirmation by the same person: do not offer one.
      box.append(
        h(
          "button",
          {
            type: "button",
            class: "confirm",
            disabled: mine,
            "aria-describedby": "review-note",
            onclick: (e) => review(e.currentTarget, "confirm"),
          },
          "Confirm",
        ),
        h("button", { type: "button", class: "danger", onclick: (e) => review(e.currentTarget, "dismiss") }, "Dismiss"),
        h("button", { type: "button", class: "danger", onclick: (e) => review(e.currentTarget, "dismiss", true) }, "Not this person"),
      );
      const others = left === 1 ? "another person" : `${left} other people`;
      const note = mine
        ? `You confirmed; waiting for ${others} to confirm (nobody confirms twice).`
        : a.confirmations_required > 1
          ? `This watchlist needs ${a.confirmations_required} confirmations by different people; ${left} more needed.`
          : "One confirmation closes the question.";
      return [box, h("p", { class: "muted small", id: "review-note" }, note), notThisPersonHint()];
    }
    if (a.state === "suppressed") return h("p", { class: "muted" }, "Nothing to review: this alarm was not raised.");
    if (a.state === "confirmed" || a.state === "dismissed") {
      box.append(h("button", { type: "button", onclick: (e) => review(e.currentTarget, "close") }, "Close"));
      return [box, h("p", { class: "muted small" }, `The alarm is ${a.state}; close it when it has been dealt with.`)];
    }
    return h("p", { class: "muted" }, "This alarm is closed.");
  }

  async function review(button, action, notThisPerson = false) {
    let reason = null;
    if (action === "dismiss") {
      const title = notThisPerson ? "Not this person: dismiss and keep the face as a negative example" : "Dismiss the alarm";
      reason = await promptDialog(title, "Reason for dismissing", "Dismiss");
      if (reason === null) return;
    }
    fill(status);
    try {
      const d = await busy(button, "Saving…", () =>
        post(`/api/alarms/${id}/review`, { action, version: current.version, reason, not_this_person: notThisPerson }),
      );
      current = d;
      const text =
        action === "confirm" && d.state === "pending"
          ? `Your confirmation is recorded (${d.confirmations} of ${d.confirmations_required}); another person must confirm too.`
          : `The alarm is now ${d.state}.`;
      fill(status, message("ok", "Review saved", text));
      toast("ok", "Review saved", text);
      show(d);
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        fill(status, errorBox(err, "Not saved"), message("info", null, "The alarm was reloaded; look at it again."));
        toast("error", "Not saved", err.detail, err.hint);
        await load();
      } else {
        showError(err, status, "Not saved");
      }
    }
  }

  await load();
  const unsubscribe = onLive((ev) => {
    if (ev.type !== "alarm_reviewed" || ev.alarm_id !== id || !current) return;
    if (ev.by !== `user:${session.name}`) {
      fill(status, message("info", "Reviewed elsewhere", `${ev.by} chose “${ev.action}”; the alarm is now ${ev.state}.`));
      load();
    }
  });
  return () => {
    stopped = true;
    unsubscribe();
  };
}

// Evidence export: a zip of the crop, the frame with every other face blurred and a manifest of
// hashes, recorded in the audit log (docs/redaction.md).
function exportSection(a) {
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const button = h("button", { type: "button" }, "Export evidence");
  button.addEventListener("click", async () => {
    try {
      const { blob, name, sha } = await busy(button, "Exporting…", () => fetchExport(a.id));
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: name });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      fill(slot, message("ok", "Evidence exported", `${name}, manifest sha256 ${sha}`));
    } catch (err) {
      showError(err, slot, "Could not export the evidence");
    }
  });
  return h(
    "section",
    { "aria-labelledby": "export-h" },
    h("h2", { id: "export-h" }, "Evidence"),
    h("p", { class: "muted small" }, "The export is personal data: hand it over only under the watchlist's legal basis. Other faces in the frame are blurred; the export is audited with its hashes."),
    button,
    slot,
  );
}

async function fetchExport(id) {
  const res = await fetch(`/api/alarms/${id}/export`, { credentials: "same-origin" });
  if (!res.ok) {
    const problem = await res.json().catch(() => ({ title: res.statusText || "error", detail: `HTTP ${res.status}` }));
    throw new ApiError(res.status, problem);
  }
  const m = /filename="?([^";]+)"?/.exec(res.headers.get("content-disposition") || "");
  return { blob: await res.blob(), name: m ? m[1] : `alarm-${id}-evidence.zip`, sha: res.headers.get("x-manifest-sha256") || "" };
}
