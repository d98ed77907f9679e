// Search by photo (1:N, open set) and verify two photos (1:1).

import { can, get, upload } from "./api.js";
import { busy, checkbox, facts, field, fill, fmtRate, fmtScore, h, message, qualityMeter, showError } from "./ui.js";

export async function render(root) {
  let galleries = [];
  try {
    galleries = (await get("/api/galleries")).filter((g) => !g.expired);
  } catch (err) {
    // Searching all open galleries still works without the list.
    if (can.manage()) showError(err, null, "Could not list the galleries");
  }
  const urls = [];
  fill(
    root,
    h("h1", {}, "Search"),
    message(
      "info",
      null,
      "A match is a request for human review, never a decision by itself. Searches are recorded in the audit log.",
    ),
    h("div", { class: "two-col" }, searchForm(galleries, urls), verifyForm()),
  );
  return () => urls.forEach((u) => URL.revokeObjectURL(u));
}

function searchForm(galleries, urls) {
  const file = h("input", { type: "file", name: "file", accept: "image/*", required: true });
  const boxes = galleries.map((g) => checkbox(`${g.name} (${g.kind})`, { name: "gallery", value: g.name }));
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Search");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "search-h", novalidate: true },
    h("h2", { id: "search-h" }, "Search by photo"),
    field("Photo to search", file),
    galleries.length
      ? h("fieldset", {}, h("legend", {}, "Galleries to search (none ticked: all open galleries)"), boxes)
      : null,
    h("div", { class: "actions" }, button),
    slot,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const photo = file.files[0];
    if (!photo) {
      fill(slot, message("error", "No photo chosen", "Choose a photo to search."));
      return;
    }
    const data = new FormData();
    data.append("file", photo, photo.name);
    const chosen = boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
    fill(slot, h("progress", { "aria-label": "Searching" }));
    try {
      const result = await busy(button, "Searching…", () => upload("/api/search", data, { gallery: chosen }));
      const url = URL.createObjectURL(photo);
      urls.push(url);
      fill(slot, searchResult(result, url));
    } catch (err) {
      fill(slot);
      showError(err, slot, err.status === 413 ? "Photo too large" : "Search failed");
    }
  });
  return form;
}

function searchResult(r, url) {
  const img = h("img", { src: url, alt: "The searched photo" });
  const frame = h("div", { class: "boxed" }, img);
  img.addEventListener("load", () => {
    r.faces.forEach((f, i) => {
      const [x1, y1, x2, y2] = f.xyxy;
      const W = img.naturalWidth;
      const H = img.naturalHeight;
      frame.append(
        h(
          "span",
          {
            class: `facebox${f.decision ? " known" : ""}`,
            style: `left:${(100 * x1) / W}%;top:${(100 * y1) / H}%;width:${(100 * (x2 - x1)) / W}%;height:${(100 * (y2 - y1)) / H}%`,
            "aria-hidden": "true",
          },
          String(i + 1),
        ),
      );
    });
  });
  return h(
    "div",
    { class: "result" },
    frame,
    h(
      "p",
      { class: "muted small" },
      `${r.faces.length} face${r.faces.length === 1 ? "" : "s"} · model ${r.model} · FPIR ${fmtRate(r.fpir)} · galleries: ${r.galleries.join(", ") || "none"}`,
    ),
    r.faces.length ? null : message("warn", "No face found", "Use a photo where the face is at least 80 px wide."),
    h(
      "ol",
      { class: "faces", "aria-label": "Faces found" },
      r.faces.map((f, i) =>
        h(
          "li",
          {},
          h(
            "p",
            {},
            h("strong", {}, `Face ${i + 1}: `),
            f.decision
              ? h("span", { class: "decision known" }, `${f.decision}${f.decision_gallery ? ` (${f.decision_gallery})` : ""}`)
              : h("span", { class: "decision unknown" }, "unknown — no match above the threshold"),
            " · quality ",
            qualityMeter(f.quality),
          ),
          f.matches.length
            ? h(
                "table",
                { class: "grid compact", "aria-label": `Matches for face ${i + 1}` },
                h("thead", {}, h("tr", {}, ["Person", "Gallery", "Score", "Threshold", "Above"].map((t) => h("th", { scope: "col" }, t)))),
                h(
                  "tbody",
                  {},
                  f.matches.map((m) =>
                    h(
                      "tr",
                      { class: m.above_threshold ? "above" : "" },
                      h("td", {}, m.identity),
                      h("td", {}, m.gallery),
                      h("td", {}, fmtScore(m.score)),
                      h("td", {}, fmtScore(m.threshold)),
                      h("td", {}, m.above_threshold ? "yes" : "no"),
                    ),
                  ),
                ),
              )
            : h("p", { class: "muted small" }, "No candidates in the galleries searched."),
        ),
      ),
    ),
  );
}

function verifyForm() {
  const a = h("input", { type: "file", name: "file_a", accept: "image/*", required: true });
  const b = h("input", { type: "file", name: "file_b", accept: "image/*", required: true });
  const largestBox = checkbox("Use the largest face of each photo", { name: "largest" });
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Compare");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "verify-h", novalidate: true },
    h("h2", { id: "verify-h" }, "Verify two photos"),
    field("First photo", a),
    field("Second photo", b),
    largestBox,
    h("div", { class: "actions" }, button),
    slot,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!a.files[0] || !b.files[0]) {
      fill(slot, message("error", "Two photos needed", "Choose a photo for each side."));
      return;
    }
    const data = new FormData();
    data.append("file_a", a.files[0], a.files[0].name);
    data.append("file_b", b.files[0], b.files[0].name);
    data.append("largest", largestBox.querySelector("input").checked ? "true" : "false");
    fill(slot, h("progress", { "aria-label": "Comparing" }));
    try {
      const v = await busy(button, "Comparing…", () => upload("/api/verify", data));
      fill(
        slot,
        message(
          v.same_person ? "ok" : "warn",
          v.same_person ? "Same person" : "Not the same person",
          `Score ${fmtScore(v.score)} ${v.same_person ? "≥" : "<"} threshold ${fmtScore(v.threshold)}.`,
        ),
        facts([
          ["Model", v.model],
          ["False-match rate at this threshold", fmtRate(v.fmr)],
        ]),
      );
    } catch (err) {
      fill(slot);
      showError(err, slot, err.status === 413 ? "Photo too large" : "Comparison failed");
    }
  });
  return form;
}
