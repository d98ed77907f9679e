// Compare galleries: every enrolled face of gallery A searched in gallery B (or in A itself, to find the
// same person enrolled twice), for a case; a background job with live progress, then the identity
// pairs with both enrolled photos side by side, paged, and a CSV download.

import { get, media, post } from "./api.js";
import { onLive } from "./live.js";
import {
  busy,
  facts,
  field,
  fill,
  fmtRate,
  fmtScore,
  fmtTime,
  h,
  mediaImg,
  message,
  plural,
  progressBar,
  select,
  showError,
  stateBadge,
} from "./ui.js";

const enc = encodeURIComponent;
const POLL_MS = 800;
const PAGE = 20;
const CASE_HELP =
  "Required. The comparison is recorded in the audit log with this reference, who asked, both galleries, " +
  "the threshold and the pairs found.";

export async function render(root, params) {
  photoCache.clear();
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const jobBox = h("section", { class: "job", "aria-label": "Comparison job" });
  const jobsBox = h("section", { "aria-labelledby": "jobs-h" });
  let galleries = [];
  try {
    galleries = (await get("/api/galleries")).filter((g) => !g.expired);
  } catch (err) {
    showError(err, slot, "Could not list the galleries");
  }
  fill(
    root,
    h("h1", {}, "Compare galleries"),
    message(
      "info",
      null,
      "Every enrolled face of gallery A is searched in gallery B: a wanted list against a larger gallery, or a gallery against itself to find the same person enrolled under two names.",
      "Each pair is a lead for a person to check, never a finding by itself: about one probe in a hundred (the FPIR) whose person is not in B still shows a pair.",
    ),
    slot,
    galleries.length ? startForm(galleries, (job) => showJob(job.id)) : message("warn", null, "No galleries to compare yet."),
    jobBox,
    jobsBox,
  );

  let stopJob = null;
  let stopped = false;
  async function showJob(id) {
    stopJob?.();
    if (location.hash !== `#/compare/${enc(id)}`) showInAddress(id);
    stopJob = watchJob(id, jobBox, loadJobs);
  }
  async function loadJobs() {
    if (stopped) return;
    try {
      const jobs = await get("/api/compare");
      fill(jobsBox, h("h2", { id: "jobs-h" }, "Previous comparisons"), jobs.length ? jobsTable(jobs) : h("p", { class: "muted" }, "None yet (jobs are kept across restarts; the newest 50 finished ones stay listed, and the audit log keeps every comparison)."));
    } catch (err) {
      showError(err, null, "Could not list the comparisons");
    }
  }
  await loadJobs();
  if (params[0]) showJob(params[0]);
  return () => {
    stopped = true;
    stopJob?.();
  };
}

/** Put the job in the address without routing again (the page is already showing it). */
function showInAddress(id) {
  window.history.replaceState(null, "", `#/compare/${enc(id)}`);
}

function startForm(galleries, onStarted) {
  const opts = galleries.map((g) => [g.name, `${g.name} (${g.kind}, ${plural(g.identities, "person", "people")})`]);
  const a = select({ name: "gallery_a" }, opts, galleries[0].name);
  const b = select({ name: "gallery_b" }, opts, galleries[0].name);
  const topK = h("input", { name: "top_k", type: "number", min: 1, max: 100, step: 1, value: 5 });
  const caseRef = h("input", { name: "case", id: "cmp-case", autocomplete: "off", placeholder: "e.g. 2026-17 audit of the staff list", "aria-describedby": "cmp-case-help" });
  const same = h("p", { class: "help" });
  const syncSame = () => {
    same.textContent =
      a.value === b.value ? "Same gallery: pairs of two different people in it (the same person enrolled twice), each pair once." : "";
  };
  a.addEventListener("change", syncSame);
  b.addEventListener("change", syncSame);
  syncSame();
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Start comparison");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "cmp-h", novalidate: true },
    h("h2", { id: "cmp-h" }, "New comparison"),
    h(
      "div",
      { class: "row" },
      field("Gallery A (searched for)", a),
      field("Gallery B (searched in)", b),
      field("Best matches kept per face (top-k)", topK, "People of B kept per enrolled face of A, 1 to 100."),
    ),
    same,
    h("div", { class: "field" }, h("label", { for: "cmp-case", class: "required" }, "Case reference"), caseRef, h("small", { id: "cmp-case-help", class: "help" }, CASE_HELP)),
    slot,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(slot);
    const k = Number(topK.value);
    if (!caseRef.value.trim()) {
      caseRef.setAttribute("aria-invalid", "true");
      fill(slot, message("error", "A case reference is required", "Every comparison is recorded in the audit log with its case reference. Give the case or file it is for."));
      caseRef.focus();
      return;
    }
    caseRef.removeAttribute("aria-invalid");
    if (!Number.isInteger(k) || k < 1 || k > 100) {
      fill(slot, message("error", "Top-k not understood", "Give a whole number from 1 to 100."));
      return;
    }
    try {
      const job = await busy(button, "Starting…", () => post("/api/compare", { gallery_a: a.value, gallery_b: b.value, top_k: k, case: caseRef.value.trim() }));
      onStarted(job);
    } catch (err) {
      showError(err, slot, "Could not start the comparison");
    }
  });
  return form;
}

/** Follow a job (events and polling) in ``box`` until it ends, then show its result; returns a stop function. */
function watchJob(id, box, onEnd) {
  let stopped = false;
  let ended = false;
  const bar = progressBar("Comparison progress");
  const head = h("div", {});
  const body = h("div", {});
  fill(box, h("h2", {}, `Comparison ${id}`), head, bar.el, body);

  function showState(j) {
    fill(
      head,
      facts([
        ["State", stateBadge(j.state)],
        ["Case", j.case],
        ["Galleries", j.gallery_a === j.gallery_b ? `${j.gallery_a} against itself` : `${j.gallery_a} against ${j.gallery_b}`],
        j.requested_by ? ["Requested by", j.requested_by] : null,
        ["Started", fmtTime(j.created_at)],
        j.finished_at ? ["Finished", fmtTime(j.finished_at)] : null,
        j.runs > 1 ? ["Runs", `${j.runs} (it went on from its checkpoint after a restart)`] : null,
      ]),
    );
    const note =
      j.state === "queued"
        ? "queued: waiting for the comparison before it to finish…"
        : j.state === "interrupted"
          ? `interrupted at ${j.done} of ${j.total}: it goes on from there when the server starts again`
        : j.state === "done"
          ? `done: ${plural(j.total, "enrolled face")} of ${j.gallery_a} searched`
          : undefined;
    bar.set(j.state === "done" ? j.total : j.done, j.total, note ? note : `${j.done} of ${plural(j.total, "enrolled face")} searched (${j.total ? Math.round((100 * j.done) / j.total) : 0}%)`);
  }

  async function poll() {
    if (stopped || ended) return;
    let j;
    try {
      j = await get(`/api/compare/${enc(id)}`, { limit: PAGE });
    } catch (err) {
      ended = true;
      showError(err, body, "Could not follow the comparison");
      return;
    }
    if (stopped) return;
    showState(j);
    if (j.state === "done" || j.state === "failed") {
      ended = true;
      clearInterval(timer);
      unsubscribe();
      if (j.state === "failed") fill(body, message("error", "The comparison failed", j.error || "see the server log"));
      else resultView(j, body);
      onEnd?.();
    }
  }
  const unsubscribe = onLive((ev) => {
    if (ev.type !== "compare_progress" || ev.id !== id || stopped || ended) return;
    showState(ev);
    if (ev.state === "done" || ev.state === "failed") poll();
  });
  const timer = setInterval(poll, POLL_MS);
  poll();
  return () => {
    stopped = true;
    clearInterval(timer);
    unsubscribe();
  };
}

const photoCache = new Map();

/** The first enrolled photo of an identity (or null), fetched once per page view. */
function firstPhoto(identityId) {
  if (!photoCache.has(identityId)) {
    photoCache.set(
      identityId,
      get(`/api/identities/${identityId}`).then(
        (p) => p.photo_list?.[0]?.sha256 ?? null,
        () => null,
      ),
    );
  }
  return photoCache.get(identityId);
}

function personCell(id, name) {
  const fig = h("figure", { class: "pair-person" }, h("span", { class: "noimg face-sm" }, "…"), h("figcaption", {}, h("a", { href: `#/people/${id}` }, name)));
  firstPhoto(id).then((sha) => {
    fig.firstChild.replaceWith(sha ? mediaImg(media(sha), `Enrolled photo of ${name}`, "face-sm") : h("span", { class: "noimg face-sm" }, "no photo"));
  });
  return fig;
}

function resultView(job, box) {
  const r = job.result;
  const total = job.identity_pairs ?? 0;
  const pager = h("div", { class: "pager" });
  const table = h("div", { class: "table-wrap" });
  const csv = `/api/compare/${enc(job.id)}.csv`;

  async function page(offset) {
    let j = job;
    if (offset !== job.offset) {
      try {
        j = await get(`/api/compare/${enc(job.id)}`, { offset, limit: PAGE });
      } catch (err) {
        showError(err, null, "Could not load the page");
        return;
      }
    }
    const rows = j.result.identities;
    fill(
      table,
      h(
        "table",
        { class: "grid pairs", "aria-label": "Identity pairs" },
        h("thead", {}, h("tr", {}, ["#", `Person in ${r.gallery_a}`, "", `Person in ${r.gallery_b}`, "Score", "Face pairs"].map((t) => h("th", { scope: "col" }, t)))),
        h(
          "tbody",
          {},
          rows.map((p, i) =>
            h(
              "tr",
              {},
              h("td", {}, String(offset + i + 1)),
              h("td", {}, personCell(p.identity_a_id, p.identity_a)),
              h("td", { class: "versus" }, "↔"),
              h("td", {}, personCell(p.identity_b_id, p.identity_b)),
              h("td", { class: "nowrap" }, `${fmtScore(p.score)} ≥ ${fmtScore(r.threshold)}`),
              h("td", {}, String(p.template_pairs)),
            ),
          ),
        ),
      ),
    );
    const prev = h("button", { type: "button", class: "secondary small", disabled: offset === 0 }, "← Previous");
    const next = h("button", { type: "button", class: "secondary small", disabled: offset + PAGE >= total }, "Next →");
    prev.addEventListener("click", () => page(Math.max(0, offset - PAGE)));
    next.addEventListener("click", () => page(offset + PAGE));
    fill(pager, prev, h("span", { class: "muted" }, ` Pairs ${offset + 1}–${Math.min(offset + PAGE, total)} of ${total} `), next);
  }

  fill(
    box,
    total
      ? message("ok", `${plural(total, "pair")} of people found`, `Best first; each is a lead to check by looking at both people.`)
      : message("info", "No pairs above the threshold", `No enrolled face of ${r.gallery_a} reaches the threshold against ${r.gallery_b}.`),
    facts([
      ["Threshold", `${fmtScore(r.threshold)} (FPIR ${fmtRate(r.fpir)}, model ${r.model})`],
      ["Threshold source", r.threshold_source],
      ["Faces searched", `${r.templates_a} of ${r.gallery_a} in ${r.templates_b} of ${r.gallery_b} (${plural(r.identities_b, "person", "people")})`],
      ["Face pairs above the threshold", String(job.template_pairs ?? 0)],
      ["Took", `${r.elapsed_s.toFixed(2)} s`],
    ]),
    h(
      "p",
      { class: "actions left" },
      h("a", { class: "button secondary", href: csv, download: "" }, "Download CSV (pairs of people)"),
      h("a", { class: "button secondary", href: `${csv}?level=pairs`, download: "" }, "Download CSV (every face pair)"),
    ),
    total ? [table, pager] : null,
  );
  if (total) page(0);
}

function jobsTable(jobs) {
  return h(
    "table",
    { class: "grid compact", "aria-label": "Comparisons" },
    h("thead", {}, h("tr", {}, ["Job", "State", "Case", "Gallery A", "Gallery B", "By", "Started", "Progress"].map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      jobs.map((j) =>
        h(
          "tr",
          {},
          h("td", {}, h("a", { href: `#/compare/${enc(j.id)}` }, j.id)),
          h("td", {}, stateBadge(j.state), j.error ? [h("br"), h("small", { class: "error-text" }, j.error)] : null),
          h("td", {}, j.case),
          h("td", {}, j.gallery_a),
          h("td", {}, j.gallery_b),
          h("td", {}, j.requested_by),
          h("td", { class: "nowrap" }, fmtTime(j.created_at)),
          h("td", {}, `${j.done} / ${j.total}`),
        ),
      ),
    ),
  );
}
