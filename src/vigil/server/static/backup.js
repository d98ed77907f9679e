// Backup (admin page): download a backup of the whole server (docs/backup.md). The file holds every
// template, photo and alarm crop, and the audit log: the section says so before the download.

import { ApiError, session } from "./api.js";
import { busy, fill, h, message, showError, toast } from "./ui.js";

/** The "Backup" section (an element). */
export function backupSection() {
  const slot = h("div", { class: "slot", "aria-live": "polite" });
  const button = h("button", { type: "button" }, "Download a backup");
  button.addEventListener("click", async () => {
    try {
      const { blob, name, sha } = await busy(button, "Making the backup…", fetchBackup);
      const url = URL.createObjectURL(blob);
      const a = h("a", { href: url, download: name });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      fill(slot, message("ok", "Backup downloaded", `${name} (${blob.size} bytes), sha256 ${sha}`));
      toast("ok", "Backup downloaded", name);
    } catch (err) {
      showError(err, slot, "Could not make the backup");
    }
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "backup-h" },
    h("h2", { id: "backup-h" }, "Backup"),
    h(
      "p",
      {},
      "A backup is one file with the catalog, every enrolment photo and template, the alarm crops and the audit log; it is encrypted when encryption at rest is on " +
        "(restore it with the same key: vigil backup restore FILE --data-dir NEW). Keep it as safely as the server's data, and delete old backups within the retention period: " +
        "an erasure made after a backup is not in it. Each backup is audited with its sha256.",
    ),
    h("div", { class: "actions left" }, button),
    slot,
  );
}

async function fetchBackup() {
  const headers = session.csrf ? { "x-csrf-token": session.csrf } : {};
  const res = await fetch("/api/backup", { method: "POST", headers, credentials: "same-origin" });
  if (!res.ok) {
    const problem = await res.json().catch(() => ({ title: res.statusText || "error", detail: `HTTP ${res.status}` }));
    throw new ApiError(res.status, problem);
  }
  const disposition = res.headers.get("content-disposition") || "";
  const m = /filename="?([^";]+)"?/.exec(disposition);
  return { blob: await res.blob(), name: m ? m[1] : "vigil-backup.vbk", sha: res.headers.get("x-backup-sha256") || "" };
}
