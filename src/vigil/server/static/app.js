// The vigil web UI: session, navigation by role, hash routing, log in, and the forced password change.

import { ApiError, ROLE_PAGES, api, get, onUnauthorized, session } from "./api.js";
import { onLive, startLive, stopLive } from "./live.js";
import { busy, clearToasts, field, fill, h, message, showError, toast } from "./ui.js";
import * as admin from "./admin.js";
import * as alarms from "./alarms.js";
import * as attendance from "./attendance.js";
import * as audit from "./audit.js";
import * as cameras from "./cameras.js";
import * as clusters from "./clusters.js";
import * as compare from "./compare.js";
import * as dashboard from "./dashboard.js";
import * as galleries from "./galleries.js";
import * as investigations from "./investigations.js";
import * as redact from "./redact.js";
import * as search from "./search.js";
import * as transparency from "./transparency.js";
import * as webhooks from "./webhooks.js";

const MIN_PASSWORD = 10;

// ``more``: the group a page joins in the "More" menu when a role has too many pages for one row.
const PAGES = {
  dashboard: { label: "Dashboard", module: dashboard },
  alarms: { label: "Alarms", module: alarms },
  galleries: { label: "Galleries & people", module: galleries },
  people: { label: "Person", module: galleries, section: "galleries" },
  cameras: { label: "Cameras", module: cameras },
  search: { label: "Search", module: search },
  investigations: { label: "Investigations", module: investigations },
  clusters: { label: "Unknown faces", module: clusters, more: "tools" },
  compare: { label: "Compare galleries", module: compare, more: "tools" },
  attendance: { label: "Attendance", module: attendance, more: "tools" },
  redact: { label: "Redact a video", module: redact, more: "tools" },
  audit: { label: "Audit log", module: audit, more: "governance" },
  transparency: { label: "Transparency", module: transparency, more: "governance" },
  admin: { label: "Users & keys", module: admin, more: "governance" },
  webhooks: { label: "Webhooks", module: webhooks, more: "governance" },
};
// A role with at most this many pages sees them all in the bar; more would wrap at 1280 px.
const INLINE_MAX = 7;

const main = () => document.getElementById("main");
let cleanup = null;

function stopPage() {
  if (typeof cleanup === "function") {
    try {
      cleanup();
    } catch (err) {
      console.error(err);
    }
  }
  cleanup = null;
}

function allowed(name) {
  return (ROLE_PAGES[session.role] || []).includes(PAGES[name]?.section || name);
}

function defaultPage() {
  return (ROLE_PAGES[session.role] || ["alarms"])[0];
}

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  return { name: parts[0] || "", params: parts.slice(1) };
}

function navLink(name, current) {
  return h("a", { href: `#/${name}`, "aria-current": name === current ? "page" : null }, PAGES[name].label);
}

function renderNav(current) {
  const nav = document.getElementById("nav");
  const names = ROLE_PAGES[session.role] || [];
  const grouped = names.length > INLINE_MAX;
  const inline = grouped ? names.filter((n) => !PAGES[n].more) : names;
  const more = grouped ? names.filter((n) => PAGES[n].more) : [];
  const items = inline.map((name) => h("li", {}, navLink(name, current)));
  if (more.length) {
    const menu = h("ul", { id: "nav-more", class: "more-menu", hidden: true });
    more.forEach((name, i) => {
      if (i > 0 && PAGES[name].more !== PAGES[more[i - 1]].more) menu.append(h("li", { role: "separator", class: "sep" }));
      menu.append(h("li", {}, navLink(name, current)));
    });
    const toggle = h(
      "button",
      {
        type: "button",
        class: `more-toggle${more.includes(current) ? " current" : ""}`,
        "aria-expanded": "false",
        "aria-controls": "nav-more",
        onclick: () => setMoreOpen(menu.hidden),
      },
      "More",
      h("span", { "aria-hidden": "true" }, " ▾"),
    );
    menu.addEventListener("click", (ev) => {
      if (ev.target.closest("a")) setMoreOpen(false);
    });
    items.push(h("li", { class: "nav-more" }, toggle, menu));
  }
  fill(nav, items);
}

/** Open or close the "More" menu of the navigation (if the role has one). */
function setMoreOpen(open) {
  const menu = document.getElementById("nav-more");
  const toggle = document.querySelector(".more-toggle");
  if (!menu || !toggle) return;
  menu.hidden = !open;
  toggle.setAttribute("aria-expanded", String(open));
}

async function route() {
  if (!session.role) return;
  if (session.mustChange) return showPasswordChange();
  let { name, params } = parseHash();
  if (!name) {
    name = defaultPage();
    history.replaceState(null, "", `#/${name}`);
  }
  stopPage();
  clearToasts();
  const page = PAGES[name];
  renderNav(page?.section || name);
  const root = main();
  root.className = `page-${name}`;
  if (!page) {
    fill(root, h("h1", {}, "Page not found"), message("warn", null, `There is no page “${name}”.`));
    return;
  }
  if (!allowed(name)) {
    fill(
      root,
      h("h1", {}, page.label),
      message(
        "warn",
        "Not available for your role",
        `The ${session.role} role cannot use this page.`,
        "Ask an administrator if you need it.",
      ),
    );
    return;
  }
  fill(root);
  try {
    cleanup = await page.module.render(root, params, name);
  } catch (err) {
    showError(err, root, "This page could not be loaded");
  }
}

function showApp() {
  document.querySelector(".topbar").hidden = false;
  document.getElementById("who").textContent = `${session.name} · ${session.role}`;
  startLive();
  route();
}

function setSession(me) {
  session.csrf = me.csrf_token;
  session.role = me.role;
  session.name = me.name;
  session.mustChange = Boolean(me.must_change_password);
}

function clearSession() {
  stopPage();
  stopLive();
  session.csrf = session.role = session.name = null;
  session.mustChange = false;
  document.querySelector(".topbar").hidden = true;
}

function showLogin(notice) {
  clearSession();
  const root = main();
  root.className = "page-login";
  const user = h("input", { name: "username", autocomplete: "username", required: true });
  const pass = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const slot = h("div", { class: "slot" });
  const button = h("button", { type: "submit" }, "Log in");
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Log in to vigil"),
    notice ? message("info", null, notice) : null,
    field("Username", user),
    field("Password", pass),
    slot,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(slot);
    try {
      const me = await busy(button, "Logging in…", () =>
        api("POST", "/api/auth/login", {
          json: { username: user.value.trim(), password: pass.value },
          noAuthRedirect: true,
        }),
      );
      setSession(me);
      document.getElementById("toasts").replaceChildren();
      if (session.mustChange) showPasswordChange();
      else showApp();
    } catch (err) {
      showError(err, slot, "Could not log in");
      pass.select();
    }
  });
  fill(
    root,
    form,
    h(
      "p",
      { class: "muted center" },
      "Face recognition for video surveillance. A match is a request for human review, never a decision by itself.",
    ),
  );
  user.focus();
}

function showPasswordChange() {
  stopPage();
  document.querySelector(".topbar").hidden = true;
  const root = main();
  root.className = "page-password";
  const current = h("input", { name: "current", type: "password", autocomplete: "current-password", required: true });
  const next = h("input", {
    name: "new",
    type: "password",
    autocomplete: "new-password",
    required: true,
    minlength: MIN_PASSWORD,
  });
  const again = h("input", { name: "again", type: "password", autocomplete: "new-password", required: true });
  const slot = h("div", { class: "slot" });
  const button = h("button", { type: "submit" }, "Change password");
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "pw-title", novalidate: true },
    h("h1", { id: "pw-title" }, "Choose your password"),
    message(
      "info",
      null,
      `Hello ${session.name}. You logged in with a one-time password; choose your own before you go on.`,
    ),
    field("One-time (current) password", current),
    field("New password", next, `At least ${MIN_PASSWORD} characters; a phrase of several words is best.`),
    field("Repeat the new password", again),
    slot,
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: logout }, "Log out"),
      button,
    ),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(slot);
    if (next.value.length < MIN_PASSWORD) {
      fill(slot, message("error", "Password too short", `Use at least ${MIN_PASSWORD} characters.`));
      next.focus();
      return;
    }
    if (next.value !== again.value) {
      fill(slot, message("error", "Passwords differ", "The two new passwords are not the same."));
      again.focus();
      return;
    }
    try {
      await busy(button, "Saving…", () =>
        api("POST", "/api/auth/password", {
          json: { current_password: current.value, new_password: next.value },
          noAuthRedirect: true,
        }),
      );
      setSession(await get("/api/auth/me"));
      toast("ok", "Password changed", "Welcome to vigil.");
      showApp();
    } catch (err) {
      showError(err, slot, "Could not change the password");
    }
  });
  fill(root, form);
  current.focus();
}

async function logout() {
  try {
    if (session.csrf) await api("POST", "/api/auth/logout", { noAuthRedirect: true });
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) showError(err, null, "Log out failed");
  }
  showLogin("You have logged out.");
}

async function boot() {
  document.getElementById("logout").addEventListener("click", logout);
  // The "More" menu closes on a click elsewhere and on Escape (focus back on its button).
  document.addEventListener("click", (ev) => {
    if (!ev.target.closest(".nav-more")) setMoreOpen(false);
  });
  document.addEventListener("keydown", (ev) => {
    const menu = document.getElementById("nav-more");
    if (ev.key !== "Escape" || !menu || menu.hidden) return;
    setMoreOpen(false);
    document.querySelector(".more-toggle")?.focus();
  });
  window.addEventListener("hashchange", route);
  onLive((ev) => {
    // Every page hears of a new alarm; the dashboard lists it too.
    if (ev.type === "alarm" && parseHash().name !== "dashboard") {
      toast("info", `Alarm: ${ev.identity}`, `camera ${ev.camera}, watchlist ${ev.gallery}: needs review (Alarms page)`);
    }
  });
  onUnauthorized(async (err) => {
    if (!session.role) return;
    // A 401 can also mean "wrong current password": log out only when the session is really gone.
    try {
      await api("GET", "/api/auth/me", { noAuthRedirect: true });
    } catch (again) {
      if (again instanceof ApiError && again.status === 401) showLogin(`${err.detail}. Log in again.`);
    }
  });
  try {
    setSession(await api("GET", "/api/auth/me", { noAuthRedirect: true }));
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return showLogin();
    // Not logged out: the server is down or failing; say so and offer the login form.
    showLogin();
    showError(err, null, "Could not reach vigil");
    return;
  }
  if (session.mustChange) showPasswordChange();
  else showApp();
}

boot();
