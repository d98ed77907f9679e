// Face models (admin page): the model packs with their licences and state, installing one, and
// switching every gallery to another: a background re-embedding from the stored photos, followed
// here with a progress bar (GET /api/models/switch, polled while it runs).

import { get, post } from "./api.js";
import { busy, confirmDialog, facts, fill, fmtTime, h, message, plural, progressBar, showError, stateBadge, toast } from "./ui.js";

const POLL_MS = 1000;

/** The "Face models" section: ``{el, stop}`` (``stop`` ends the polling when the page is left). */
export function modelsSection() {
  const table = h("div", { class: "table-wrap" });
  const progress = h("div", { "aria-live": "polite" });
  const slot = h("div", { class: "slot" });
  let timer = null;
  let stopped = false;
  const el = h(
    "section",
    { class: "card", "aria-labelledby": "models-h" },
    h("h2", { id: "models-h" }, "Face models"),
    h(
      "p",
      {},
      "A model pack is a face detector and a face embedder. Switching to another pack re-embeds every gallery from its stored photos, in the background; " +
        "the models in use keep matching until every gallery is done, then the new pack takes over at once.",
    ),
    slot,
    table,
    progress,
  );

  async function load() {
    try {
      const view = await get("/api/models");
      const overridden = view.active && view.in_use && view.active !== view.in_use;
      fill(
        slot,
        overridden
          ? message(
              "info",
              `The server uses ${view.in_use}, not the active pack ${view.active}`,
              "Its settings choose the models (VIGIL_MODEL_PACK, or VIGIL_DETECTOR, VIGIL_EMBEDDER and VIGIL_ONNX_* for custom); remove them to use the active pack.",
            )
          : null,
      );
      fill(table, packsTable(view, load));
      show(view.switch);
    } catch (err) {
      showError(err, slot, "Could not load the model packs");
    }
  }
  function show(sw) {
    fill(progress, sw ? switchBox(sw, load) : null);
    if (sw?.state === "running") schedule();
  }
  function schedule() {
    if (stopped || timer) return;
    timer = setTimeout(async () => {
      timer = null;
      if (stopped) return;
      try {
        const sw = await get("/api/models/switch");
        if (sw.state === "running") show(sw);
        else await load(); // the active pack changed (or not): the table too
      } catch (err) {
        showError(err, slot, "Could not follow the model switch");
      }
    }, POLL_MS);
  }
  load();
  return {
    el,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

function packsTable(view, reload) {
  if (!view.packs.length) return message("info", null, "This vigil has no model packs to choose from.");
  const running = view.switch?.state === "running";
  return h(
    "table",
    { class: "grid", "aria-label": "Model packs" },
    h("thead", {}, h("tr", {}, ["Pack", "Models", "Licences", "State"].map((t) => h("th", { scope: "col" }, t)), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")))),
    h(
      "tbody",
      {},
      view.packs.map((p) =>
        h(
          "tr",
          {},
          h("td", {}, h("strong", {}, p.name), h("br"), h("small", { class: "muted" }, p.title)),
          h("td", {}, h("small", {}, p.detector ?? ""), p.detector ? h("br") : null, h("small", {}, p.embedder ?? "")),
          h("td", {}, p.licences.join("; "), p.caveat ? h("p", {}, h("small", { class: "warn-text" }, p.caveat)) : null),
          h("td", {}, packState(p, view)),
          h("td", {}, packActions(p, view, running, reload)),
        ),
      ),
    ),
  );
}

function packState(p, view) {
  const badges = [];
  if (p.active) badges.push(h("span", { class: "badge state-running" }, "active"));
  if (p.name === view.in_use && !p.active) badges.push(h("span", { class: "badge state-finished" }, "in use"));
  badges.push(h("span", { class: `badge ${p.installed ? "" : "state-pending"}` }, p.installed ? "installed" : "not installed"));
  return badges.flatMap((b, i) => (i ? [" ", b] : [b]));
}

function packActions(p, view, running, reload) {
  if (!p.installed) {
    if (p.name === "custom") return h("small", { class: "muted" }, "your own files (settings)");
    const install = h("button", { type: "button", class: "secondary small", "aria-label": `Install ${p.name}` }, "Install");
    install.addEventListener("click", async () => {
      try {
        await busy(install, "Installing…", () => post(`/api/models/${encodeURIComponent(p.name)}/install`));
        toast("ok", "Pack installed", p.name);
      } catch (err) {
        showError(err, null, `Could not install ${p.name}`);
      }
      await reload();
    });
    return install;
  }
  if (p.name === view.in_use || p.active) return null;
  const use = h("button", { type: "button", class: "small", disabled: running, "aria-label": `Use ${p.name}` }, "Use");
  use.addEventListener("click", async () => {
    const ok = await confirmDialog(
      `Switch to ${p.name}?`,
      `Every gallery will be re-embedded with ${p.name} from its stored photos, in the background. ` +
        "The models in use keep matching until every gallery is done; then the new pack takes over and the cameras restart. " +
        "Photos in which the new detector finds no face are listed, for you to replace.",
      "Re-embed and switch",
    );
    if (!ok) return;
    try {
      await busy(use, "Starting…", () => post("/api/models/switch", { pack: p.name }));
      toast("ok", "Switch started", `re-embedding every gallery with ${p.name}`);
    } catch (err) {
      showError(err, null, `Could not switch to ${p.name}`);
    }
    await reload();
  });
  return use;
}

const TITLES = {
  running: (sw) => `Re-embedding the galleries with ${sw.pack}`,
  done: (sw) => `Switched to ${sw.pack}`,
  failed: (sw) => `The switch to ${sw.pack} failed`,
  cancelled: (sw) => `The switch to ${sw.pack} was cancelled`,
};

function switchBox(sw, reload) {
  const bar = progressBar("Re-embedding progress");
  const pct = sw.photos_total ? Math.floor((100 * sw.photos_done) / sw.photos_total) : 100;
  bar.set(
    sw.photos_done,
    sw.photos_total,
    `${sw.photos_done} of ${plural(sw.photos_total, "photo")} (${pct}%), ${sw.galleries_done} of ${plural(sw.galleries_total, "gallery", "galleries")} complete`,
  );
  let cancel = null;
  if (sw.state === "running") {
    cancel = h("button", { type: "button", class: "secondary small" }, "Cancel the switch");
    cancel.addEventListener("click", async () => {
      const ok = await confirmDialog("Cancel the switch?", `The galleries stay on ${sw.from_pack ?? "the models in use"}; what was re-embedded is kept for a later switch.`, "Cancel the switch");
      if (!ok) return;
      try {
        await busy(cancel, "Cancelling…", () => post("/api/models/switch/cancel"));
      } catch (err) {
        showError(err, null, "Could not cancel the switch");
      }
      await reload();
    });
  }
  return h(
    "div",
    { class: "card", role: "region", "aria-label": "Model switch" },
    h("h3", {}, TITLES[sw.state](sw), " ", stateBadge(sw.state)),
    bar.el,
    facts([
      ["From", `${sw.from_pack ?? "—"} (${sw.from_model_id ?? "—"})`],
      ["To", `${sw.pack} (${sw.model_id})`],
      ["Started", `${fmtTime(sw.started_at)} by ${sw.requested_by}`],
      sw.finished_at ? ["Ended", fmtTime(sw.finished_at)] : null,
    ]),
    sw.error ? message("error", "Error", sw.error) : null,
    sw.photos_failed ? failures(sw) : null,
    cancel ? h("div", { class: "actions left" }, cancel) : null,
  );
}

function failures(sw) {
  return [
    message(
      "warn",
      `${plural(sw.photos_failed, "photo")} could not be used by ${sw.pack}`,
      "These people match on their other photos only (or not at all once the switch is done): enrol a better photo of each.",
    ),
    h(
      "table",
      { class: "grid compact", "aria-label": "Photos the new pack could not use" },
      h("thead", {}, h("tr", {}, ["Gallery", "Person", "Photo", "Why"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        sw.failed.map((f) =>
          h("tr", {}, h("td", {}, f.gallery), h("td", {}, h("a", { href: `#/people/${f.identity_id}` }, f.identity)), h("td", {}, f.photo ?? f.sha256.slice(0, 12)), h("td", {}, f.reason)),
        ),
      ),
    ),
  ];
}
