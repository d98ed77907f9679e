// Reviews that teach (docs/server.md, "Alarm review"): the negative example a dismissal as "not this
// person" kept, and the earlier dismissals that suppressed an alarm, each with Undo for reviewers.

import { can, post } from "./api.js";
import { busy, fmtTime, h, message, plural, showError, toast } from "./ui.js";

/** The section of alarm ``a`` about negative examples, or null when it has none. */
export function negativeSection(a, reload) {
  const status = h("div", { class: "slot" });
  const parts = [];
  if (a.negative) {
    const n = a.negative;
    parts.push(
      h(
        "p",
        {},
        `Dismissed as not this person: the face is kept as negative example ${n.id} for ${a.identity} ` +
          `in this watchlist, until the alarm's retention ends. It has suppressed ${plural(n.uses, "later face")}. `,
        n.undone_at ? `Undone by ${n.undone_by} on ${fmtTime(n.undone_at)}.` : "",
      ),
      undoButton(n, status, reload),
    );
  }
  if (a.state === "suppressed") {
    const count = a.suppressed_by.length;
    parts.push(
      h("p", {}, `Suppressed by ${plural(count, "earlier dismissal")}: the face is nearer to people reviewers ` +
        `dismissed as not ${a.identity} than to ${a.identity}. Nobody was notified.`),
      h(
        "ul",
        { class: "history" },
        a.suppressions.map((n) =>
          h(
            "li",
            {},
            h("a", { href: `#/alarms/${n.alarm_id}` }, `Alarm ${n.alarm_id}`),
            ` dismissed by ${n.created_by} (negative example ${n.id}${n.undone_at ? ", undone" : ""}) `,
            undoButton(n, status, reload),
          ),
        ),
      ),
      count > a.suppressions.length ? h("p", { class: "muted small" }, "Some of them were purged since.") : null,
    );
  }
  if (!parts.length) return null;
  return h(
    "section",
    { "aria-labelledby": "neg-h" },
    h("h2", { id: "neg-h" }, "Negative examples"),
    ...parts,
    status,
  );
}

function undoButton(n, status, reload) {
  if (n.undone_at || !can.live()) return null;
  return h(
    "button",
    {
      type: "button",
      class: "secondary small",
      onclick: async (e) => {
        try {
          await busy(e.currentTarget, "Undoing…", () => post(`/api/alarms/negatives/${n.id}/undo`, {}));
          toast("ok", "Negative example undone", `Faces like it alarm again for this person.`);
          await reload();
        } catch (err) {
          showError(err, status, "Not undone");
        }
      },
    },
    `Undo negative example ${n.id}`,
  );
}

/** The dismissal that also keeps the face as a negative example. */
export function notThisPersonHint() {
  return message(
    "info",
    null,
    "“Not this person” dismisses the alarm and keeps this face as a negative example: later faces nearer " +
      "to it than to the person raise no alarm for them (stored as suppressed, shown here, undoable).",
  );
}
