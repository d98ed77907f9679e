// Unknown faces: sightings that matched nobody, grouped when the same face comes back (clusters).
// Update the clusters, review one with all its crops, promote it to a person of a gallery, or dismiss it.

import { ApiError, can, get, media, post } from "./api.js";
import {
  busy,
  confirmDialog,
  facts,
  field,
  fill,
  fmtScore,
  fmtTime,
  h,
  isoDate,
  mediaImg,
  message,
  plural,
  select,
  showError,
  stateBadge,
  toast,
} from "./ui.js";

const PREVIEW_CROPS = 6;
const DETAILS_FETCHED = 24;

export async function render(root, params) {
  if (params[0]) return renderCluster(root, Number(params[0]));
  return renderList(root);
}

function seenText(c) {
  if (!c.first_seen) return "—";
  return c.first_seen === c.last_seen ? fmtTime(c.first_seen) : `${fmtTime(c.first_seen)} – ${fmtTime(c.last_seen)}`;
}

async function renderList(root) {
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const grid = h("div", { class: "cluster-grid", role: "list", "aria-label": "Clusters" });
  const state = select(
    { name: "state" },
    [
      ["open", "Open (to review)"],
      ["promoted", "Promoted"],
      ["dismissed", "Dismissed"],
      ["all", "All"],
    ],
    "open",
  );
  const update = h("button", { type: "button" }, "Update clusters");
  fill(
    root,
    h("h1", {}, "Unknown faces"),
    message(
      "info",
      null,
      "Faces that matched nobody, on the cameras that keep sightings, are grouped when the same face comes back " +
        "(at least two sightings alike). A face seen once is not a cluster.",
      "A cluster is a lead for review: look at every crop before promoting it to a person.",
    ),
    h(
      "div",
      { class: "filters" },
      field("Show", state),
      h("div", { class: "field" }, update, h("small", { class: "help" }, "Groups the sightings since the last update.")),
    ),
    slot,
    grid,
  );

  async function load() {
    let rows;
    try {
      rows = await get("/api/investigations/clusters", { state: state.value });
    } catch (err) {
      showError(err, slot, "Could not load the clusters");
      return;
    }
    if (!rows.length) {
      fill(
        grid,
        h(
          "p",
          { class: "muted", role: "listitem" },
          state.value === "open" ? "No open clusters. Update the clusters to group new sightings." : "No clusters in this state.",
        ),
      );
      return;
    }
    const cards = rows.map((c) => clusterCard(c));
    fill(grid, cards.map((x) => x.el));
    // The first clusters show a few of their crops, not only the best one.
    await Promise.all(
      rows.slice(0, DETAILS_FETCHED).map(async (c, i) => {
        try {
          const d = await get(`/api/investigations/clusters/${c.id}`);
          cards[i].showCrops(d.members);
        } catch {
          // The cover crop stays.
        }
      }),
    );
  }

  state.addEventListener("change", load);
  update.addEventListener("click", async () => {
    fill(slot);
    try {
      const r = await busy(update, "Updating…", () => post("/api/investigations/clusters/update"));
      const changed = r.new_clusters || r.assigned;
      fill(
        slot,
        message(
          changed ? "ok" : "info",
          changed ? "Clusters updated" : "No new clusters",
          `${plural(r.considered, "sighting")} that matched nobody considered: ${plural(r.new_clusters, "new cluster")} ` +
            `(${plural(r.clustered, "sighting")}), ${plural(r.assigned, "sighting")} joined existing clusters, ` +
            `${r.left_unclustered} left unclustered (seen once so far).`,
          `Faces belong together at a similarity of ${fmtScore(r.threshold)} or more (false-match rate ${r.fmr}, model ${r.model}); took ${r.seconds} s.`,
        ),
      );
      await load();
    } catch (err) {
      showError(err, slot, "Could not update the clusters");
    }
  });
  await load();
  return null;
}

function clusterCard(c) {
  const crops = h(
    "div",
    { class: "crops" },
    c.cover_sha256 ? mediaImg(media(c.cover_sha256), `Best face of cluster ${c.id}`, "crop") : h("span", { class: "noimg crop" }, "no crop"),
  );
  const el = h(
    "article",
    { class: "cluster-card", role: "listitem", "aria-label": `Cluster ${c.id}` },
    h("h3", {}, h("a", { href: `#/clusters/${c.id}` }, `Cluster ${c.id}`), " ", stateBadge(c.state)),
    crops,
    h(
      "dl",
      { class: "mini" },
      h("div", {}, h("dt", {}, "sightings"), h("dd", {}, String(c.size))),
      h("div", {}, h("dt", {}, "cameras"), h("dd", {}, c.cameras.join(", ") || "—")),
    ),
    h("p", { class: "small muted" }, seenText(c)),
    h("div", { class: "actions left" }, h("a", { class: "button small", href: `#/clusters/${c.id}`, "aria-label": `Review cluster ${c.id}` }, "Review")),
  );
  return {
    el,
    showCrops(members) {
      const shown = members.filter((m) => m.crop_sha256).slice(0, PREVIEW_CROPS);
      if (!shown.length) return;
      fill(
        crops,
        shown.map((m) => mediaImg(media(m.crop_sha256), `Face of sighting ${m.id} on ${m.camera}`, "crop")),
        members.length > shown.length ? h("span", { class: "more" }, `+${members.length - shown.length}`) : null,
      );
    },
  };
}

// ---- one cluster ---------------------------------------------------------------------------------

async function renderCluster(root, id) {
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const content = h("div", {});
  fill(root, h("p", {}, h("a", { href: "#/clusters" }, "← Unknown faces")), h("h1", {}, `Cluster ${id}`), slot, content);

  async function load() {
    let c;
    try {
      c = await get(`/api/investigations/clusters/${id}`);
    } catch (err) {
      showError(err, slot, "Could not load the cluster");
      return;
    }
    const open = c.state === "open";
    fill(
      content,
      facts([
        ["State", stateBadge(c.state)],
        ["Sightings", String(c.size)],
        ["Cameras", c.cameras.join(", ") || "—"],
        ["First seen", fmtTime(c.first_seen)],
        ["Last seen", fmtTime(c.last_seen)],
        c.promoted_identity_id ? ["Promoted to", h("a", { href: `#/people/${c.promoted_identity_id}` }, `person ${c.promoted_identity_id}`)] : null,
        c.decided_by ? ["Decided by", `${c.decided_by}, ${fmtTime(c.decided_at)}`] : null,
      ]),
      h(
        "section",
        { "aria-labelledby": "members-h" },
        h("h2", { id: "members-h" }, `All ${plural(c.members.length, "face")}`),
        h(
          "ul",
          { class: "member-grid", "aria-label": "Member faces" },
          c.members.map((m) =>
            h(
              "li",
              {},
              h(
                "figure",
                {},
                m.crop_sha256 ? mediaImg(media(m.crop_sha256), `Face of sighting ${m.id} on ${m.camera}`, "face") : h("span", { class: "noimg face" }, "no crop"),
                h("figcaption", {}, `${m.camera} · ${fmtTime(m.first_seen)}`, h("br"), `${plural(m.frames, "frame")} · quality ${m.quality.toFixed(2)}`),
              ),
            ),
          ),
        ),
      ),
      open && can.manage() ? await decideSection(c, load, slot) : null,
      open && !can.manage() ? message("info", null, "Supervisors and admins promote or dismiss a cluster.") : null,
    );
  }
  await load();
  return null;
}

async function decideSection(c, reload, pageSlot) {
  let galleries = [];
  try {
    galleries = (await get("/api/galleries")).filter((g) => !g.expired);
  } catch (err) {
    showError(err, null, "Could not list the galleries");
  }
  return h("div", { class: "two-col" }, promoteForm(c, galleries, reload, pageSlot), dismissSection(c, reload));
}

function promoteForm(c, galleries, reload, pageSlot) {
  const kindOf = Object.fromEntries(galleries.map((g) => [g.name, g.kind]));
  const gallery = select({ name: "gallery" }, [["", "— choose a gallery —"], ...galleries.map((g) => [g.name, `${g.name} (${g.kind})`])], "");
  const name = h("input", { name: "name", autocomplete: "off", placeholder: "e.g. Visitor 2026-03-02 or the person's name" });
  const consentOn = h("input", { name: "consent_on", type: "date", max: isoDate() });
  const consentBy = h("input", { name: "consent_by", autocomplete: "off", placeholder: "e.g. HR, J. Doe" });
  const consent = h(
    "fieldset",
    { hidden: true },
    h("legend", {}, "Consent (attendance galleries)"),
    h("p", { class: "help" }, "An attendance gallery enrols only a person who consented: record the day and who recorded it."),
    h(
      "div",
      { class: "row" },
      h("div", { class: "field" }, h("label", { for: "promote-consent-on", class: "required" }, "Consent given on"), consentOn),
      h("div", { class: "field" }, h("label", { for: "promote-consent-by", class: "required" }, "Consent recorded by"), consentBy),
    ),
  );
  consentOn.id = "promote-consent-on";
  consentBy.id = "promote-consent-by";
  gallery.addEventListener("change", () => {
    consent.hidden = kindOf[gallery.value] !== "attendance";
  });
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Promote");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "promote-h", novalidate: true },
    h("h2", { id: "promote-h" }, "Promote to a person"),
    h("p", { class: "small" }, "Enrols every crop of this cluster in which a face is found as a new person of the gallery; crops without a usable face are skipped. The sightings are linked to the person (erasing them erases these too)."),
    h("div", { class: "row" }, field("Gallery", gallery), field("Name", name)),
    consent,
    slot,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(slot);
    const missing = [];
    if (!gallery.value) missing.push("the gallery");
    if (!name.value.trim()) missing.push("a name");
    const attendance = kindOf[gallery.value] === "attendance";
    if (attendance && !consentOn.value) missing.push("the consent date");
    if (attendance && !consentBy.value.trim()) missing.push("who recorded the consent");
    if (missing.length) {
      fill(slot, message("error", "Missing information", `Give ${missing.join(", ")}.`));
      return;
    }
    const body = { gallery: gallery.value, name: name.value.trim() };
    if (attendance) Object.assign(body, { consent_on: consentOn.value, consent_by: consentBy.value.trim() });
    try {
      const r = await busy(button, "Promoting…", () => post(`/api/investigations/clusters/${c.id}/promote`, body));
      toast("ok", `Cluster ${c.id} promoted`, `${r.identity} in ${r.gallery}`);
      await reload();
      fill(
        pageSlot,
        message(
          "ok",
          `Promoted to ${r.identity} (${r.gallery})`,
          `${plural(r.enrolled, "crop")} enrolled, ${r.skipped.length} skipped (no usable face).`,
          r.skipped.length ? `Skipped sightings: ${r.skipped.join(", ")}.` : null,
        ),
        h("p", {}, h("a", { href: `#/people/${r.identity_id}` }, `Open ${r.identity}`)),
      );
    } catch (err) {
      if (attendance && err instanceof ApiError && err.status === 422 && /consent/.test(err.detail)) {
        fill(
          slot,
          message(
            "error",
            "Consent cannot be recorded by a promotion here",
            "This server does not take the consent with a promotion, and an attendance gallery enrols nobody without it.",
            "Promote into another gallery, or enrol the person on the attendance gallery's page with their consent.",
          ),
        );
        return;
      }
      showError(err, slot, "Could not promote the cluster");
    }
  });
  return form;
}

function dismissSection(c, reload) {
  const reason = h("textarea", { name: "reason", rows: 2, placeholder: "e.g. a delivery driver" });
  const slot = h("div", { class: "slot" });
  const button = h("button", { type: "submit", class: "danger" }, "Dismiss");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "dismiss-h", novalidate: true },
    h("h2", { id: "dismiss-h" }, "Dismiss"),
    h("p", { class: "small" }, "Not of interest: the cluster is kept out of later updates. Its sightings are deleted with the camera's retention."),
    field("Reason (optional, audited)", reason),
    slot,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const ok = await confirmDialog(`Dismiss cluster ${c.id}?`, `Its ${plural(c.size, "sighting")} will not be clustered again.`, "Dismiss");
    if (!ok) return;
    try {
      await busy(button, "Dismissing…", () => post(`/api/investigations/clusters/${c.id}/dismiss`, { reason: reason.value.trim() || null }));
      toast("ok", `Cluster ${c.id} dismissed`, reason.value.trim() || null);
      await reload();
    } catch (err) {
      showError(err, slot, "Could not dismiss the cluster");
    }
  });
  return form;
}
