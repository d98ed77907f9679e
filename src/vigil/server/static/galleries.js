// Galleries and people: list, create (watchlists with their legal basis), delete; enrol by upload with
// face-quality feedback; a person's photos, more photos, removal.

import { can, del, get, media, post, upload } from "./api.js";
import {
  busy,
  checkbox,
  confirmDialog,
  facts,
  field,
  fill,
  fmtTime,
  h,
  mediaImg,
  message,
  qualityMeter,
  qualityWord,
  select,
  showError,
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
        ["Name", "Kind", "Purpose", "Legal basis", "Authorised by", "Expires", "Confirmations", "People", "Photos"].map(
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
          {},
          h("td", {}, h("a", { href: `#/galleries/${enc(g.name)}` }, g.name)),
          h("td", {}, g.kind),
          h("td", {}, g.purpose ?? "—"),
          h("td", {}, g.legal_basis ?? "—"),
          h("td", {}, g.authorized_by ?? "—"),
          h("td", {}, g.expires_on ?? "—", g.expired ? [" ", h("span", { class: "badge state-dismissed" }, "expired")] : null),
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
  const slot = h("div", { class: "slot" });
  const button = h("button", { type: "submit" }, "Create gallery");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "new-gallery-h", novalidate: true },
    h("h2", { id: "new-gallery-h" }, "New gallery"),
    h("div", { class: "row" }, field("Gallery name", name), field("Kind", kind), field("Confirmations required", confirmations)),
    fs,
    slot,
    h("div", { class: "actions" }, button),
  );

  function syncKind() {
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
    try {
      const g = await busy(button, "Creating…", () => post("/api/galleries", body));
      fill(slot, message("ok", "Gallery created", `${g.name} (${g.kind}).`));
      toast("ok", "Gallery created", g.name);
      form.reset();
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
  const info = h("div", {});
  const people = h("div", { class: "table-wrap" });
  fill(
    root,
    h("p", {}, h("a", { href: "#/galleries" }, "← Galleries")),
    h("h1", {}, `Gallery ${name}`),
    slot,
    info,
    h("section", { "aria-labelledby": "people-h" }, h("h2", { id: "people-h" }, "People"), people),
    can.manage() ? enrolForm(name, load) : null,
  );

  async function load() {
    try {
      const [g, rows] = await Promise.all([
        get(`/api/galleries/${enc(name)}`),
        get(`/api/galleries/${enc(name)}/identities`),
      ]);
      fill(
        info,
        facts([
          ["Kind", g.kind],
          ["Purpose", g.purpose ?? "—"],
          ["Legal basis", g.legal_basis ?? "—"],
          ["Authorised by", g.authorized_by ?? "—"],
          ["Expires on", g.expires_on ? `${g.expires_on}${g.expired ? " (expired: no alarms)" : ""}` : "—"],
          ["Confirmations required", String(g.confirmations_required)],
          ["Created", fmtTime(g.created_at)],
        ]),
      );
      fill(people, rows.length ? peopleTable(rows) : h("p", { class: "muted" }, "Nobody is enrolled yet."));
    } catch (err) {
      showError(err, slot, `Could not load gallery ${name}`);
    }
  }
  await load();
  return null;
}

function peopleTable(rows) {
  return h(
    "table",
    { class: "grid", "aria-label": "People" },
    h("thead", {}, h("tr", {}, ["Name", "External id", "Photos", "Templates"].map((t) => h("th", { scope: "col" }, t)))),
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
        ),
      ),
    ),
  );
}

function photoFeedback(result) {
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
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Enrol");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "enrol-h", novalidate: true },
    h("h2", { id: "enrol-h" }, "Enrol a person"),
    h("div", { class: "row" }, field("Person's name", identity), field("External id (optional)", externalId)),
    field("Photos", files, "One face per photo; several photos of the same person improve matching."),
    largestBox,
    slot,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!identity.value.trim() || !files.files.length) {
      fill(slot, message("error", "Missing information", "Give the person's name and choose at least one photo."));
      return;
    }
    const n = files.files.length;
    fill(slot, message("info", null, `Uploading ${n} photo${n === 1 ? "" : "s"} and checking the face…`), h("progress", { "aria-label": "Uploading" }));
    try {
      const result = await busy(button, "Uploading…", () =>
        upload(
          `/api/galleries/${enc(gallery)}/identities`,
          photoForm(files, largest, { identity: identity.value.trim(), external_id: externalId.value.trim() }),
        ),
      );
      fill(
        slot,
        message(
          "ok",
          `Enrolled ${result.identity}`,
          result.created ? "A new person in this gallery." : "Photos added to the person already enrolled.",
        ),
        photoFeedback(result),
      );
      toast("ok", `Enrolled ${result.identity}`, `${result.photos.length} photo(s)`);
      files.value = "";
      await reload();
    } catch (err) {
      fill(slot);
      showError(err, slot, uploadTitle(err));
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
    root.querySelector("h1").textContent = p.name;
    root.querySelector("p a").setAttribute("href", `#/galleries/${enc(p.gallery)}`);
    root.querySelector("p a").textContent = `← Gallery ${p.gallery}`;
    fill(
      content,
      facts([
        ["Gallery", p.gallery],
        ["External id", p.external_id ?? "—"],
        ["Notes", p.notes ?? "—"],
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
      can.manage() ? addPhotosForm(p, load) : null,
      can.manage() ? removeSection(p) : null,
    );
  }
  await load();
  return null;
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
      "Their templates and photos are deleted from this gallery.",
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
    h("p", {}, "Removing a person deletes their templates and photos from this gallery; alarms already raised are kept."),
    slot,
    button,
  );
}

