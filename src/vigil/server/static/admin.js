// Administration: users (create, role, disable, reset password), API keys (create, revoke), the face
// models (models.js), the edge devices (devices.js), the retention purge and the backup (backup.js).

import { del, get, patch, post, session } from "./api.js";
import { backupSection } from "./backup.js";
import { devicesSection } from "./devices.js";
import { modelsSection } from "./models.js";
import { busy, confirmDialog, facts, field, fill, fmtTime, h, message, secretDialog, select, showError, toast } from "./ui.js";

const ROLES = [
  ["operator", "operator — watches cameras, reviews alarms, searches"],
  ["supervisor", "supervisor — also manages galleries and cameras"],
  ["auditor", "auditor — reads the audit log, transparency report and alarm list"],
  ["admin", "admin — also manages users and keys"],
];
const ROLE_NAMES = ROLES.map(([r]) => r);

export async function render(root) {
  const usersBox = h("div", { class: "table-wrap" });
  const keysBox = h("div", { class: "table-wrap" });
  const slot = h("div", { class: "slot" });
  const models = modelsSection();
  const devices = devicesSection();
  fill(
    root,
    h("h1", {}, "Users & API keys"),
    slot,
    h("section", { "aria-labelledby": "users-h" }, h("h2", { id: "users-h" }, "Users"), usersBox, userForm(loadUsers)),
    h("section", { "aria-labelledby": "keys-h" }, h("h2", { id: "keys-h" }, "API keys"), keysBox, keyForm(loadKeys)),
    models.el,
    devices.el,
    purgeSection(),
    backupSection(),
  );

  async function loadUsers() {
    try {
      fill(usersBox, usersTable(await get("/api/users"), loadUsers));
    } catch (err) {
      showError(err, slot, "Could not load the users");
    }
  }
  async function loadKeys() {
    try {
      const keys = await get("/api/keys");
      fill(keysBox, keys.length ? keysTable(keys, loadKeys) : h("p", { class: "muted" }, "No API keys."));
    } catch (err) {
      showError(err, slot, "Could not load the API keys");
    }
  }
  await Promise.all([loadUsers(), loadKeys()]);
  return () => {
    models.stop();
    devices.stop();
  };
}

function usersTable(users, reload) {
  return h(
    "table",
    { class: "grid", "aria-label": "Users" },
    h(
      "thead",
      {},
      h("tr", {}, ["User", "Role", "Active", "Password", "Last log-in", "Created"].map((t) => h("th", { scope: "col" }, t)), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions"))),
    ),
    h(
      "tbody",
      {},
      users.map((u) => {
        const self = u.username === session.name;
        const role = select({ "aria-label": `Role of ${u.username}`, disabled: self }, ROLE_NAMES, u.role);
        role.addEventListener("change", () => change(u, { role: role.value }, reload));
        const active = h("input", { type: "checkbox", checked: u.active, disabled: self, "aria-label": `${u.username} is active` });
        active.addEventListener("change", () => change(u, { active: active.checked }, reload));
        const reset = h("button", { type: "button", class: "secondary small", "aria-label": `Reset the password of ${u.username}` }, "Reset password");
        reset.addEventListener("click", () => resetPassword(reset, u, reload));
        return h(
          "tr",
          {},
          h("td", {}, u.username, self ? h("small", { class: "muted" }, " (you)") : null),
          h("td", {}, role),
          h("td", {}, active),
          h("td", {}, u.must_change_password ? "one-time, must change" : "set"),
          h("td", {}, fmtTime(u.last_login_at)),
          h("td", {}, fmtTime(u.created_at)),
          h("td", {}, self ? null : reset),
        );
      }),
    ),
  );
}

async function change(user, body, reload) {
  try {
    await patch(`/api/users/${user.id}`, body);
    toast("ok", `User ${user.username} updated`, body.role ? `role: ${body.role}` : body.active ? "active" : "disabled");
  } catch (err) {
    showError(err, null, `Could not update ${user.username}`);
  }
  await reload();
}

async function resetPassword(button, user, reload) {
  const ok = await confirmDialog(
    `Reset the password of ${user.username}?`,
    "They get a one-time password and must choose a new one at their next log-in.",
    "Reset",
  );
  if (!ok) return;
  try {
    const r = await busy(button, "Resetting…", () => post(`/api/users/${user.id}/reset-password`));
    await secretDialog(
      `New one-time password for ${user.username}`,
      "One-time password",
      r.one_time_password,
      "It is shown once. Give it to the user by a safe channel.",
    );
  } catch (err) {
    showError(err, null, `Could not reset the password of ${user.username}`);
  }
  await reload();
}

function userForm(reload) {
  const username = h("input", { name: "username", required: true, autocomplete: "off" });
  const role = select({ name: "role" }, ROLES, "operator");
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password" });
  const slot = h("div", { class: "slot" });
  const button = h("button", { type: "submit" }, "Create user");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "new-user-h", novalidate: true },
    h("h3", { id: "new-user-h" }, "New user"),
    h(
      "div",
      { class: "row" },
      field("Username", username),
      field("Role", role),
      field("Password (optional)", password, "Leave empty to get a one-time password the user must change."),
    ),
    slot,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(slot);
    if (!username.value.trim()) {
      fill(slot, message("error", "Missing information", "Give a username."));
      return;
    }
    try {
      const u = await busy(button, "Creating…", () =>
        post("/api/users", { username: username.value.trim(), role: role.value, password: password.value || null }),
      );
      form.reset();
      toast("ok", "User created", `${u.username} (${u.role})`);
      await reload();
      if (u.one_time_password) {
        await secretDialog(
          `User ${u.username} created`,
          "One-time password",
          u.one_time_password,
          "It is shown once. The user must choose their own password at the first log-in.",
        );
      }
    } catch (err) {
      showError(err, slot, "Could not create the user");
    }
  });
  return form;
}

function keysTable(keys, reload) {
  return h(
    "table",
    { class: "grid", "aria-label": "API keys" },
    h(
      "thead",
      {},
      h("tr", {}, ["Name", "Prefix", "Role", "Gallery", "Created by", "Created", "Last used", "Status"].map((t) => h("th", { scope: "col" }, t)), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions"))),
    ),
    h(
      "tbody",
      {},
      keys.map((k) => {
        const revoke = h("button", { type: "button", class: "danger small", "aria-label": `Revoke key ${k.name}` }, "Revoke");
        revoke.addEventListener("click", async () => {
          const ok = await confirmDialog(`Revoke key ${k.name}?`, "Programs using it stop working at once.", "Revoke");
          if (!ok) return;
          try {
            await busy(revoke, "Revoking…", () => del(`/api/keys/${k.id}`));
            toast("ok", "Key revoked", k.name);
          } catch (err) {
            showError(err, null, `Could not revoke ${k.name}`);
          }
          await reload();
        });
        return h(
          "tr",
          { class: k.revoked ? "revoked" : "" },
          h("td", {}, k.name),
          h("td", {}, h("code", {}, k.prefix)),
          h("td", {}, k.role),
          h("td", {}, k.gallery ?? "—"),
          h("td", {}, k.created_by ?? "—"),
          h("td", {}, fmtTime(k.created_at)),
          h("td", {}, fmtTime(k.last_used_at)),
          h("td", {}, k.revoked ? "revoked" : "active"),
          h("td", {}, k.revoked ? null : revoke),
        );
      }),
    ),
  );
}

function keyForm(reload) {
  const name = h("input", { name: "name", required: true, autocomplete: "off" });
  const role = select({ name: "role" }, ROLES, "operator");
  const gallery = h("input", { name: "gallery", autocomplete: "off" });
  const slot = h("div", { class: "slot" });
  const button = h("button", { type: "submit" }, "Create key");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "new-key-h", novalidate: true },
    h("h3", { id: "new-key-h" }, "New API key"),
    h(
      "div",
      { class: "row" },
      field("Key name", name),
      field("Key role", role),
      field("Gallery (optional)", gallery, "Bind the key to one gallery."),
    ),
    slot,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(slot);
    if (!name.value.trim()) {
      fill(slot, message("error", "Missing information", "Give the key a name."));
      return;
    }
    try {
      const k = await busy(button, "Creating…", () =>
        post("/api/keys", { name: name.value.trim(), role: role.value, gallery: gallery.value.trim() || null }),
      );
      form.reset();
      await reload();
      await secretDialog(
        `API key ${k.name} created`,
        "API key",
        k.key,
        "It is shown once; only its hash is stored. Send it in the x-api-key header.",
      );
    } catch (err) {
      showError(err, slot, "Could not create the key");
    }
  });
  return form;
}

function purgeSection() {
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const button = h("button", { type: "button", class: "danger" }, "Purge now");
  button.addEventListener("click", async () => {
    const ok = await confirmDialog(
      "Purge now?",
      "Deletes at once everything past its retention: alarms of galleries with a retention period (with their crops and snapshots), " +
        "frame snapshots and sightings of cameras with one, expired sessions and old dead letters. The server also does this every hour.",
      "Purge now",
    );
    if (!ok) return;
    try {
      const r = await busy(button, "Purging…", () => post("/api/purge"));
      const total =
        r.alarms + r.snapshots + r.files + r.sessions + r.dead_letters + (r.sightings || 0) + (r.attendance_marks || 0);
      fill(
        slot,
        message("ok", "Purge done", total ? "What was past its retention is deleted." : "Nothing was past its retention."),
        facts([
          ["At", fmtTime(r.now)],
          ["Alarms", String(r.alarms)],
          ["Frame snapshots", String(r.snapshots)],
          ["Files", String(r.files)],
          ["Sightings", String(r.sightings ?? 0)],
          ["Attendance marks", String(r.attendance_marks ?? 0)],
          ["Sessions", String(r.sessions)],
          ["Dead letters", String(r.dead_letters)],
        ]),
      );
      toast("ok", "Purge done", `${r.alarms} alarm(s), ${r.files} file(s) deleted`);
    } catch (err) {
      showError(err, slot, "Could not purge");
    }
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "purge-h" },
    h("h2", { id: "purge-h" }, "Retention"),
    h(
      "p",
      {},
      "Each gallery and camera may keep data for a set number of days (see their terms). The server purges what is past it every hour; purge now to do it at once. Each purge that deletes anything is audited.",
    ),
    h("div", { class: "actions left" }, button),
    slot,
  );
}
