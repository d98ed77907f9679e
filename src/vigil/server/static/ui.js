// DOM helpers: element builder, toasts, inline messages, dialogs, busy states and formatting.

/**
 * ``h("button", {type: "button", onclick: fn}, "Save")``. Attributes starting with "on" become
 * listeners; ``class``, ``for`` and boolean attributes work as in HTML; children may be strings,
 * nodes, arrays, or null/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value" && "value" in el) el.value = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace the children of ``el``. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let fieldSeq = 0;

/** A labelled form field: ``field("Name", h("input", {name: "name"}), "help text")``. */
export function field(label, input, help) {
  if (!input.id) input.id = `f${++fieldSeq}`;
  let helpEl = null;
  if (help) {
    helpEl = h("small", { id: `${input.id}-help`, class: "help" }, help);
    input.setAttribute("aria-describedby", helpEl.id);
  }
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input, helpEl);
}

/** A labelled checkbox. */
export function checkbox(label, attrs = {}) {
  const input = h("input", { type: "checkbox", ...attrs });
  return h("label", { class: "check" }, input, " ", label);
}

/** A <select> with ``options`` given as values or [value, label] pairs. */
export function select(attrs, options, selected) {
  return h(
    "select",
    attrs,
    options.map((o) => {
      const [value, label] = Array.isArray(o) ? o : [o, o];
      return h("option", { value, selected: value === selected }, label);
    }),
  );
}

/** The text of an error for people: detail, then what to do about it. */
export function describe(err) {
  const parts = [err.detail || err.message || String(err)];
  if (err.hint) parts.push(err.hint);
  return parts;
}

/** A message box: kind is "error", "ok", "info" or "warn". */
export function message(kind, title, ...lines) {
  const role = kind === "error" ? "alert" : "status";
  return h(
    "div",
    { class: `msg msg-${kind}`, role },
    title ? h("strong", {}, title) : null,
    lines.filter(Boolean).map((l, i) => h("p", { class: i === 0 ? "detail" : "hint" }, l)),
  );
}

/** The message box for an ApiError (or any error). */
export function errorBox(err, title) {
  const [detail, hint] = describe(err);
  return message("error", title || capitalise(err.title || "Error"), detail, hint ? `Hint: ${hint}` : null);
}

/** Show an error in ``slot`` (if given) and as a toast, so that no failure is silent. */
export function showError(err, slot, title) {
  if (slot) fill(slot, errorBox(err, title));
  toast("error", title || capitalise(err.title || "Error"), ...describe(err));
}

/** A short-lived notice in the corner (errors stay until closed). */
export function toast(kind, title, detail, hint) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const close = h("button", { type: "button", class: "close", "aria-label": "Dismiss notice" }, "×");
  const el = h(
    "div",
    { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" },
    close,
    h("strong", {}, title),
    detail ? h("p", {}, detail) : null,
    hint ? h("p", { class: "hint" }, `Hint: ${hint}`) : null,
  );
  close.addEventListener("click", () => el.remove());
  el.dataset.born = String(Date.now());
  box.prepend(el);
  while (box.children.length > 5) box.lastChild.remove();
  setTimeout(() => el.remove(), kind === "error" ? 15000 : 5000);
}

/**
 * Run ``fn`` with ``button`` (and its form) marked busy: disabled, aria-busy, a spinner label.
 * Resolves with fn's result; errors propagate.
 */
export async function busy(button, label, fn) {
  const form = button?.form;
  const old = button?.textContent;
  if (button) {
    button.disabled = true;
    button.textContent = label;
  }
  form?.setAttribute("aria-busy", "true");
  form?.classList.add("busy");
  try {
    return await fn();
  } finally {
    if (button) {
      button.disabled = false;
      button.textContent = old;
    }
    form?.removeAttribute("aria-busy");
    form?.classList.remove("busy");
  }
}

function dialogShell(title, body, buttons) {
  const dlg = h(
    "dialog",
    { "aria-labelledby": "dlg-title" },
    h("form", { method: "dialog" }, h("h2", { id: "dlg-title" }, title), body, h("div", { class: "actions" }, buttons)),
  );
  document.body.append(dlg);
  dlg.addEventListener("close", () => dlg.remove());
  return dlg;
}

/** Ask yes/no in a modal dialog; resolves true when ``yes`` is chosen. */
export function confirmDialog(title, text, yes = "Delete") {
  return new Promise((resolve) => {
    const ok = h("button", { value: "yes", class: "danger" }, yes);
    const dlg = dialogShell(title, h("p", {}, text), [h("button", { value: "no", class: "secondary" }, "Cancel"), ok]);
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "yes"));
    dlg.showModal();
    ok.focus();
  });
}

/** Ask for a required text (e.g. a reason); resolves with it, or null when cancelled. */
export function promptDialog(title, label, yes = "OK") {
  return new Promise((resolve) => {
    const input = h("textarea", { name: "reason", required: true, rows: 3 });
    const err = h("div", { class: "slot" });
    const ok = h("button", { value: "yes" }, yes);
    const dlg = dialogShell(title, [field(label, input), err], [
      h("button", { value: "no", class: "secondary", formnovalidate: true }, "Cancel"),
      ok,
    ]);
    ok.addEventListener("click", (ev) => {
      if (!input.value.trim()) {
        ev.preventDefault();
        fill(err, message("error", null, `${label} is required.`));
        input.focus();
      }
    });
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "yes" ? input.value.trim() : null));
    dlg.showModal();
    input.focus();
  });
}

/** Show a secret once (a one-time password or an API key), with a copy button. */
export function secretDialog(title, label, secret, note) {
  const code = h("code", { class: "secret", "aria-label": label }, secret);
  const copy = h("button", { type: "button", class: "secondary" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(secret);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Select and copy it by hand";
    }
  });
  const dlg = dialogShell(title, [h("p", {}, label), h("p", {}, code, " ", copy), h("p", { class: "warn-text" }, note)], [
    h("button", { value: "done" }, "Done"),
  ]);
  dlg.showModal();
  return new Promise((resolve) => dlg.addEventListener("close", () => resolve()));
}

/** Remove notices older than ``ageMs`` (they belonged to the page left behind). */
export function clearToasts(ageMs = 1500) {
  const now = Date.now();
  for (const el of document.querySelectorAll("#toasts .toast")) {
    if (now - Number(el.dataset.born || 0) > ageMs) el.remove();
  }
}

export function capitalise(s) {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

export function fmtTime(ts) {
  if (!ts) return "—";
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? String(ts) : d.toLocaleString();
}

export function fmtScore(x) {
  return typeof x === "number" ? x.toFixed(3) : "—";
}

/** A false-positive rate as "0.1% (1 in 1,000)". */
export function fmtRate(r) {
  if (typeof r !== "number" || r <= 0) return "—";
  const pct = r * 100;
  const pctText = pct >= 1 ? pct.toFixed(1) : pct.toPrecision(2).replace(/\.?0+$/, "");
  return `${pctText}% (1 in ${Math.round(1 / r).toLocaleString("en")})`;
}

/** Face quality in [0, 1] as a word people can act on. */
export function qualityWord(q) {
  if (q >= 0.7) return ["good", "good"];
  if (q >= 0.4) return ["fair", "fair: a sharper, frontal, larger face would match better"];
  return ["poor", "poor: use a sharp, frontal photo with the face at least 80 px wide"];
}

export function qualityMeter(q) {
  const [word] = qualityWord(q);
  return h(
    "span",
    { class: `quality q-${word}` },
    h("meter", { min: 0, max: 1, low: 0.4, high: 0.7, optimum: 1, value: q, "aria-label": "face quality" }),
    ` ${q.toFixed(2)} (${word})`,
  );
}

export function stateBadge(state) {
  return h("span", { class: `badge state-${state}` }, state);
}

/** A description list from [term, value] pairs. */
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

/** An <img> of a stored image that says so when it cannot be loaded. */
export function mediaImg(src, alt, cls = "") {
  const img = h("img", { src, alt, class: cls, loading: "lazy" });
  img.addEventListener("error", () => img.replaceWith(h("span", { class: `noimg ${cls}` }, `${alt}: not available`)));
  return img;
}
