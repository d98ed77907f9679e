// Redact a video (supervisors and admins; docs/redaction.md): a video file of a media folder written
// again with every face blurred but those kept, as a background job polled for its progress, then a
// download link and the output's SHA-256 (the same as in the audit log's redact entry).

import { get, post } from "./api.js";
import { busy, facts, field, fill, h, message, plural, progressBar, showError, splitList } from "./ui.js";

const enc = encodeURIComponent;
const POLL_MS = 700;

export async function render(root) {
  const jobBox = h("section", { class: "job", "aria-label": "Redaction job", "aria-live": "polite" });
  let timer = null;
  let stopped = false;
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
  };
  function watch(job) {
    clearTimeout(timer);
    const bar = progressBar("Frames redacted");
    const status = h("div", {});
    fill(jobBox, h("h2", {}, `Redacting ${job.source}`), bar.el, status);
    const poll = async () => {
      if (stopped) return;
      try {
        const now = await get(`/api/redactions/${enc(job.id)}`);
        bar.set(now.frames_done, now.frames_total, now.frames_total ? null : "reading the video…");
        if (now.state === "running") {
          timer = setTimeout(poll, POLL_MS);
        } else if (now.state === "failed") {
          fill(status, message("error", "The redaction failed", now.error || "no reason given"));
        } else {
          fill(status, done(now));
        }
      } catch (err) {
        showError(err, status, "Could not follow the redaction");
      }
    };
    poll();
  }
  fill(
    root,
    h("h1", {}, "Redact a video"),
    message(
      "info",
      null,
      "A copy of a video file with every face blurred (pixelated beyond recognition), but the faces of the people you name: for handing footage to someone who may see only them.",
      "The file must lie in a media folder of the server (setting media_dirs). Folders of images: use `vigil redact` on the server. Jobs are kept in memory: a restarted server forgets them (the files stay in its data directory).",
    ),
    startForm(watch),
    jobBox,
  );
  return stop;
}

function done(job) {
  const r = job.result;
  const link = h("a", { href: r.download, download: "", class: "button" }, "Download the redacted video");
  return h(
    "div",
    {},
    message("ok", "Redaction done", `${plural(r.frames, "frame")}, ${plural(r.faces_blurred, "face")} blurred`),
    facts([
      ["SHA-256", h("code", { class: "sha" }, r.output_sha256)],
      ["Kept", r.kept_identities.length ? r.kept_identities.join(", ") : "nobody: every face is blurred"],
      ["Detection", r.detect_every === 1 ? "every frame" : `every ${r.detect_every} frames`],
    ]),
    h("div", { class: "actions left" }, link),
  );
}

function startForm(onStarted) {
  const source = h("input", { name: "source", autocomplete: "off", placeholder: "/srv/media/lobby-2026-05-01.mp4", required: true });
  const keep = h("input", { name: "keep", autocomplete: "off", placeholder: "e.g. Ada Lovelace, Alan Turing" });
  const every = h("input", { name: "detect_every", type: "number", min: 1, max: 30, step: 1, value: 1 });
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Start redaction");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "red-h", novalidate: true },
    h("h2", { id: "red-h" }, "New redaction"),
    field("Video file on the server", source, "Its full path, inside a media folder."),
    field("Keep visible (optional)", keep, "Enrolled names, separated by commas: their faces are left, every other face is blurred."),
    field("Detect on every N-th frame", every, "1 (every frame) is the safest; more is faster, with the boxes between detections grown."),
    slot,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(slot);
    if (!source.value.trim()) {
      source.setAttribute("aria-invalid", "true");
      fill(slot, message("error", "A video file is required", "Give the full path of a video file in a media folder."));
      source.focus();
      return;
    }
    source.removeAttribute("aria-invalid");
    const body = { source: source.value.trim(), keep: splitList(keep.value) || [], detect_every: Number(every.value) || 1 };
    try {
      const job = await busy(button, "Starting…", () => post("/api/redactions", body));
      onStarted(job);
    } catch (err) {
      showError(err, slot, "Could not start the redaction");
    }
  });
  return form;
}
