// DOM helpers: element builder, toasts, inline messages, dialogs, busy states and formatting.

/**
 * ``h("button", {type: "button", onclick: fn}, "Save")``. Attributes starting with "on" become
 * listeners; ``class``, ``for`` and boolean attributes work as in HTML; ``style`` is set through the
 * CSSOM (allowed by the page's CSP); children may be strings, nodes, arrays, or null/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    // Through the CSSOM: the Content-Security-Policy refuses inline style attributes.
    else if (k === "style") el.style.cssText = String(v);
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

/** Whether ``err`` is the server's refusal of a sensitive trait (403, EU AI Act Art. 5, GDPR Art. 9). */
export function isSensitiveRefusal(err) {
  return err?.status === 403 && /sensitive trait/i.test(err.detail || "");
}

/** The key a sensitive-trait refusal names (``metadata: 'race' names ...``), or null. */
export function refusedKey(err) {
  const m = isSensitiveRefusal(err) ? /'([^']+)' names a sensitive trait/.exec(err.detail) : null;
  return m ? m[1] : null;
}

const REFUSED_TITLE = "Refused: vigil does not record sensitive traits";

/** The message box for an ApiError (or any error). */
export function errorBox(err, title) {
  const [detail, hint] = describe(err);
  if (isSensitiveRefusal(err)) {
    return message("error", REFUSED_TITLE, detail, hint ? `Hint: ${hint}` : null, "Nothing was saved.");
  }
  return message("error", title || capitalise(err.title || "Error"), detail, hint ? `Hint: ${hint}` : null);
}

/** Show an error in ``slot`` (if given) and as a toast, so that no failure is silent. */
export function showError(err, slot, title) {
  if (slot) fill(slot, errorBox(err, title));
  const [detail, hint] = describe(err);
  // Shown on the page as well: the notice need not stay (and cover buttons) until closed.
  const ttl = slot ? 8000 : undefined;
  toast("error", isSensitiveRefusal(err) ? REFUSED_TITLE : title || capitalise(err.title || "Error"), detail, hint, ttl);
}

/** A short-lived notice in the corner (errors stay 15 s unless ``ttl`` says otherwise, or until closed). */
export function toast(kind, title, detail, hint, ttl) {
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
  while (box.children.length > 3) box.lastChild.remove(); // a short stack, newest on top
  setTimeout(() => el.remove(), ttl ?? (kind === "error" ? 15000 : 5000));
}

/**
 * Run ``fn`` with ``button`` (and its form) marked busy: disabled, aria-busy, a spinner label.
 * Resolves with fn's result; errors propagate.
 */
export async function busy(button, label, fn) {
  const form = button?.form;
  // Overlapping calls on one button (a reload while one runs) restore its label only at the end of the last.
  const runs = Number(button?.dataset.busyRuns || 0);
  if (button) {
    if (!runs) button.dataset.idleLabel = button.textContent;
    button.dataset.busyRuns = String(runs + 1);
    button.disabled = true;
    button.textContent = label;
  }
  form?.setAttribute("aria-busy", "true");
  form?.classList.add("busy");
  try {
    return await fn();
  } finally {
    const left = Number(button?.dataset.busyRuns || 1) - 1;
    if (button && left > 0) {
      button.dataset.busyRuns = String(left);
    } else {
      if (button) {
        button.disabled = false;
        button.textContent = button.dataset.idleLabel ?? button.textContent;
        delete button.dataset.busyRuns;
        delete button.dataset.idleLabel;
      }
      form?.removeAttribute("aria-busy");
      form?.classList.remove("busy");
    }
  }
}

/** A modal dialog holding a form; ``buttons`` with a ``value`` close it (see ``openDialog``). */
export function dialogShell(title, body, buttons) {
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

/**
 * Show ``dlg`` (from dialogShell) modally; resolves with its returnValue when it closes. A button with
 * ``value="yes"`` may validate with ``check()`` (return an error text to keep the dialog open).
 */
export function openDialog(dlg, check) {
  const slot = h("div", { class: "slot" });
  dlg.querySelector(".actions").before(slot);
  const yes = dlg.querySelector('button[value="yes"]');
  if (yes && check) {
    yes.addEventListener("click", (ev) => {
      const problem = check();
      if (problem) {
        ev.preventDefault();
        fill(slot, message("error", null, problem));
      }
    });
  }
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue));
    dlg.showModal();
    (dlg.querySelector("input, textarea, select") || yes)?.focus();
  });
}

/** JSON for people: indented, keys in their order. */
export function prettyJson(value) {
  return JSON.stringify(value, null, 2);
}

/** Split "a, b ,c" into ["a", "b", "c"] (null when empty). */
export function splitList(text) {
  const items = String(text || "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  return items.length ? items : null;
}

/**
 * A key/value editor (metadata such as employee number or badge id). Returns ``{el, value, mark}``:
 * ``value()`` is the object of non-empty rows (or an error text for a row with a value but no name),
 * ``mark(key)`` flags the row of a refused key.
 */
export function keyValueEditor(label, initial = {}, help) {
  const rows = h("div", { class: "kv-rows" });
  const add = h("button", { type: "button", class: "secondary small" }, "Add a field");
  const el = h(
    "fieldset",
    { class: "kv" },
    h("legend", {}, label),
    help ? h("p", { class: "help" }, help) : null,
    rows,
    add,
  );
  let n = 0;
  function addRow(k = "", v = "") {
    const i = ++n;
    const key = h("input", {
      name: `meta-key-${i}`,
      value: k,
      autocomplete: "off",
      placeholder: "name, e.g. employee_no",
      "aria-label": `Field ${i} name`,
    });
    const val = h("input", { name: `meta-value-${i}`, value: v, autocomplete: "off", placeholder: "value", "aria-label": `Field ${i} value` });
    const row = h("div", { class: "kv-row" }, key, val);
    const remove = h("button", { type: "button", class: "secondary small", "aria-label": `Remove field ${i}` }, "×");
    remove.addEventListener("click", () => row.remove());
    row.append(remove);
    rows.append(row);
    return key;
  }
  add.addEventListener("click", () => addRow().focus());
  const entries = Object.entries(initial || {});
  for (const [k, v] of entries) addRow(k, v);
  if (!entries.length) addRow();
  return {
    el,
    value() {
      const out = {};
      for (const row of rows.querySelectorAll(".kv-row")) {
        const [k, v] = row.querySelectorAll("input");
        row.classList.remove("invalid");
        k.removeAttribute("aria-invalid");
        const key = k.value.trim();
        if (!key && v.value.trim()) return `Give a name to the field with value “${v.value.trim()}”.`;
        if (key) out[key] = v.value.trim();
      }
      return out;
    },
    mark(key) {
      for (const row of rows.querySelectorAll(".kv-row")) {
        const k = row.querySelector("input");
        if (k.value.trim() === key) {
          row.classList.add("invalid");
          k.setAttribute("aria-invalid", "true");
          k.focus();
        }
      }
    },
    reset() {
      rows.replaceChildren();
      addRow();
    },
  };
}

/** "3 sightings", "1 sighting". */
export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

const pad2 = (n) => String(n).padStart(2, "0");

/** A local date as YYYY-MM-DD (``<input type="date">``'s value). */
export function isoDate(d = new Date()) {
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
}

/** A local time as ``<input type="datetime-local">``'s value (YYYY-MM-DDTHH:MM). */
export function localInput(d = new Date()) {
  return `${isoDate(d)}T${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/** A progress bar with a label people can read: ``{el, set(done, total)}``. */
export function progressBar(label) {
  const bar = h("progress", { "aria-label": label, max: 1, value: 0 });
  const text = h("span", { class: "progress-text" }, "waiting to start…");
  const el = h("div", { class: "progress-box" }, bar, text);
  return {
    el,
    set(done, total, note) {
      bar.max = Math.max(total || 0, 1);
      bar.value = Math.min(done || 0, bar.max);
      bar.setAttribute("aria-valuetext", `${done} of ${total}`);
      const pct = total ? Math.round((100 * done) / total) : 0;
      text.textContent = note ?? `${done} of ${total} (${pct}%)`;
    },
  };
}
