"""The transparency report: how the system was used in a period, from the audit log.

Counts of searches, alarms, confirmations and dismissals per watchlist and camera, the share of alarms
dismissed (the measured false-alarm share), the thresholds and FPIR in force, enrolments, erasures and
purges, each camera's running periods with the watchlists it checked, the cameras' stranger rules in
force (galleries, hours, quality gate, retention) with the count of stranger alarms (their row's
watchlist reads ``(stranger rule)``), and the face models in use with their licences and training-data
caveats. JSON, or HTML with a chart.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from vigil.app import App
from vigil.storage import audit
from vigil.storage.tables import Camera
from vigil.vision.packs.catalog import PACKS, Pack
from vigil.vision.packs.resolve import resolve_pack

STRANGER_ROW = "(stranger rule)"
"""The watchlist column of stranger alarms (they have no gallery)."""
SEARCH_ACTIONS = ("search", "identify", "verify", "compreface_recognize", "retrospective_search", "compare")


class Row(BaseModel):
    watchlist: str
    camera: str
    alarms: int = 0
    confirmed: int = 0
    dismissed: int = 0
    dismissed_share: float | None = None
    """Dismissed / (confirmed + dismissed) among the alarms reviewed: the measured false-alarm share."""
    suppressed: int = 0
    """Alarms not raised because negative examples (earlier dismissals) stopped them (not in ``alarms``)."""
    thresholds: list[float] = []
    fpir: list[float] = []
    models: list[str] = []


class RunPeriod(BaseModel):
    camera: str
    started: str | None
    ended: str | None
    watchlists: list[str]
    frames: int | None
    alarms: int | None


class StrangerRuleInForce(BaseModel):
    """A camera's stranger rule now: whoever matches none of ``galleries`` there is a stranger."""

    camera: str
    galleries: list[str]
    hours: str | None
    """Local time; None: always."""
    min_quality: float
    retention_days: int
    """How long a stranger alarm and its face crop are kept."""
    enabled: bool


class ModelInUse(BaseModel):
    """A face model that matched in the period, or the one in use now, with its licence terms."""

    pack: str | None
    """The model pack (None: a model that is not one of vigil's packs)."""
    model_id: str | None
    title: str
    licences: list[str]
    caveat: str | None = None
    """A restriction on use, such as research-only training data."""
    current: bool
    """The model this vigil uses now."""


class TransparencyReport(BaseModel):
    since: datetime | None
    until: datetime | None
    searches: dict[str, int]
    alarms: int
    confirmed: int
    dismissed: int
    dismissed_share: float | None
    per_watchlist_camera: list[Row]
    suppressed: int = 0
    """Alarms stopped by negative examples, stored ``suppressed`` (not counted in ``alarms``)."""
    enrolments: int
    erasures: int
    purges: int
    audit_entries: int
    camera_runs: list[RunPeriod]
    audit_chain_ok: bool
    audit_head_hash: str
    models: list[ModelInUse] = []
    stranger_alarms: int = 0
    stranger_rules: list[StrangerRuleInForce] = []


def _stranger_rules(app: App) -> list[StrangerRuleInForce]:
    s_ = app.settings
    with app.db.session() as s:
        cams = s.scalars(select(Camera).where(Camera.stranger_galleries.is_not(None)).order_by(Camera.name))
        return [
            StrangerRuleInForce(
                camera=c.name,
                galleries=list(json.loads(c.stranger_galleries or "[]")),
                hours=c.stranger_hours,
                min_quality=c.stranger_min_quality
                if c.stranger_min_quality is not None
                else s_.stranger_min_quality,
                retention_days=c.retention_days or s_.stranger_retention_days,
                enabled=c.enabled,
            )
            for c in cams
        ]


def _models_in_use(app: App, matched: set[str]) -> list[ModelInUse]:
    """The model in use now (without loading it), then every other model id that made an alarm."""
    by_id = {p.card_id: p for p in PACKS.values() if p.card_id is not None}
    current: Pack | None
    if app.engine_override is not None:
        current_id: str | None = app.engine_override.model_id
        current = by_id.get(current_id or "")
    else:
        current = PACKS[resolve_pack(app, decide=False)]
        current_id = current.card_id
    found = [_model(current, current_id, True)]
    found += [_model(by_id.get(m), m, False) for m in sorted(matched - {current_id or ""})]
    return found


def _model(pack: Pack | None, model_id: str | None, current: bool) -> ModelInUse:
    return ModelInUse(
        pack=pack.name if pack else None,
        model_id=model_id,
        title=pack.title if pack else "a model that is not one of vigil's packs",
        licences=list(pack.licences) if pack else ["see the operator's records"],
        caveat=pack.caveat if pack else None,
        current=current,
    )


def build(
    app: App, since: datetime | None = None, until: datetime | None = None, *, actor: str = audit.SYSTEM
) -> TransparencyReport:
    """The transparency report over ``[since, until)`` from the audit log; the report is itself
    audited (``report``), after it is built."""
    r = _build(app, since, until)
    audit.record(app, actor, "report", kind="transparency", since=since, until=until)
    return r


def _build(app: App, since: datetime | None, until: datetime | None) -> TransparencyReport:
    entries = audit.entries(app, since=since, until=until)
    searches: dict[str, int] = defaultdict(int)
    rows: dict[tuple[str, str], Row] = {}
    alarm_key: dict[int, tuple[str, str]] = {}
    final: dict[int, str] = {}
    enrol = erasures = purges = strangers = 0
    runs: list[RunPeriod] = []

    def row(w: str, c: str) -> Row:
        return rows.setdefault((w, c), Row(watchlist=w, camera=c))

    for e in entries:
        d = e.detail
        if e.action in SEARCH_ACTIONS:
            searches[e.action] += 1
        elif e.action == "alarm":
            stranger = d.get("kind") == "stranger"
            strangers += stranger
            key = (STRANGER_ROW if stranger else str(d.get("gallery")), str(d.get("camera")))
            r = row(*key)
            r.alarms += 1
            if isinstance(e.target_id, str) and e.target_id.isdigit():
                alarm_key[int(e.target_id)] = key
            for lst, value in (
                (r.thresholds, d.get("threshold")),
                (r.fpir, d.get("fpir")),
                (r.models, d.get("model")),
            ):
                if value is not None and value not in lst:
                    lst.append(value)
        elif e.action == "alarm_suppressed":
            row(str(d.get("gallery")), str(d.get("camera"))).suppressed += 1
        elif e.action == "alarm_review" and e.target_id is not None:
            if d.get("state") in ("confirmed", "dismissed"):  # its decision (closing keeps it)
                final[int(e.target_id)] = str(d.get("state"))
            alarm_key.setdefault(int(e.target_id), (str(d.get("gallery")), str(d.get("camera"))))
        elif e.action == "enrol":
            enrol += 1
        elif e.action == "erasure":
            erasures += 1
        elif e.action == "purge":
            purges += 1
        elif e.action == "camera_run":
            runs.append(
                RunPeriod(
                    camera=str(d.get("camera") or e.target_name),
                    started=d.get("started"),
                    ended=d.get("ended"),
                    watchlists=list(d.get("watchlists") or []),
                    frames=d.get("frames"),
                    alarms=d.get("alarms"),
                )
            )
    for alarm_id, state in final.items():
        decided = alarm_key.get(alarm_id)
        if decided is None:
            continue
        r = row(*decided)
        if state == "confirmed":
            r.confirmed += 1
        elif state == "dismissed":
            r.dismissed += 1
    for r in rows.values():
        reviewed = r.confirmed + r.dismissed
        r.dismissed_share = round(r.dismissed / reviewed, 4) if reviewed else None
    confirmed = sum(r.confirmed for r in rows.values())
    dismissed = sum(r.dismissed for r in rows.values())
    chain = audit.verify(app)
    return TransparencyReport(
        since=since,
        until=until,
        searches=dict(searches),
        alarms=sum(r.alarms for r in rows.values()),
        confirmed=confirmed,
        dismissed=dismissed,
        dismissed_share=round(dismissed / (confirmed + dismissed), 4) if confirmed + dismissed else None,
        per_watchlist_camera=sorted(rows.values(), key=lambda r: (r.watchlist, r.camera)),
        suppressed=sum(r.suppressed for r in rows.values()),
        enrolments=enrol,
        erasures=erasures,
        purges=purges,
        audit_entries=len(entries),
        camera_runs=runs,
        audit_chain_ok=chain.ok,
        audit_head_hash=chain.head_hash,
        models=_models_in_use(app, {str(m) for r in rows.values() for m in r.models}),
        stranger_alarms=strangers,
        stranger_rules=_stranger_rules(app),
    )


def chart_png(report: TransparencyReport) -> bytes:
    """Alarms per watchlist and camera: confirmed, dismissed and not yet decided."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.per_watchlist_camera
    labels = [f"{r.watchlist}\n@ {r.camera}" for r in rows] or ["(no alarms)"]
    confirmed = [r.confirmed for r in rows] or [0]
    dismissed = [r.dismissed for r in rows] or [0]
    other = [max(0, r.alarms - r.confirmed - r.dismissed) for r in rows] or [0]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(labels) + 2), 3.6), dpi=100)
    x = range(len(labels))
    ax.bar(x, confirmed, label="confirmed", color="#c0392b")
    ax.bar(x, dismissed, bottom=confirmed, label="dismissed", color="#7f8c8d")
    ax.bar(
        x,
        other,
        bottom=[a + b for a, b in zip(confirmed, dismissed, strict=True)],
        label="pending",
        color="#f1c40f",
    )
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylabel("alarms")
    ax.set_title("Alarms by watchlist and camera")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def to_html(report: TransparencyReport) -> str:
    def esc(v: Any) -> str:
        return html.escape("-" if v is None else str(v))

    png = base64.b64encode(chart_png(report)).decode()
    rows = "".join(
        f"<tr><td>{esc(r.watchlist)}</td><td>{esc(r.camera)}</td><td>{r.alarms}</td><td>{r.confirmed}</td>"
        f"<td>{r.dismissed}</td><td>{esc(r.dismissed_share)}</td><td>{r.suppressed}</td>"
        f"<td>{esc(', '.join(map(str, r.thresholds)))}</td><td>{esc(', '.join(map(str, r.fpir)))}</td></tr>"
        for r in report.per_watchlist_camera
    )
    runs = "".join(
        f"<tr><td>{esc(p.camera)}</td><td>{esc(p.started)}</td><td>{esc(p.ended)}</td>"
        f"<td>{esc(', '.join(p.watchlists))}</td><td>{esc(p.frames)}</td><td>{esc(p.alarms)}</td></tr>"
        for p in report.camera_runs
    )
    models = "".join(
        f"<tr><td>{esc(m.pack)}</td><td>{esc(m.model_id)}</td><td>{esc(m.title)}</td>"
        f"<td>{esc(', '.join(m.licences))}</td><td>{esc(m.caveat)}</td>"
        f"<td>{'yes' if m.current else 'no'}</td></tr>"
        for m in report.models
    )
    rules = "".join(
        f"<tr><td>{esc(r.camera)}</td><td>{esc(', '.join(r.galleries))}</td>"
        f"<td>{esc(r.hours or 'always')}</td>"
        f"<td>{r.min_quality}</td><td>{r.retention_days}</td><td>{'yes' if r.enabled else 'no'}</td></tr>"
        for r in report.stranger_rules
    )
    searches = ", ".join(f"{k}: {v}" for k, v in sorted(report.searches.items())) or "none"
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>vigil transparency report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}</style></head><body>
<h1>Transparency report</h1>
<p>Period: {esc(report.since)} to {esc(report.until)}. Audit entries in the period: {report.audit_entries};
audit chain {"intact" if report.audit_chain_ok else "<strong>BROKEN</strong>"}
(head {esc(report.audit_head_hash[:16])}…).</p>
<ul><li>Searches: {esc(searches)}</li><li>Alarms: {report.alarms}; confirmed {report.confirmed}, dismissed
{report.dismissed}; share dismissed among reviewed alarms: {esc(report.dismissed_share)}; not raised,
suppressed by earlier dismissals (negative examples): {report.suppressed}</li>
<li>Enrolments: {report.enrolments}; erasures: {report.erasures}; purges: {report.purges}</li>
<li>Stranger alarms (faces that matched none of a camera's named galleries):
{report.stranger_alarms}</li></ul>
<img alt="alarms per watchlist and camera" src="data:image/png;base64,{png}">
<h2>Per watchlist and camera</h2><table><tr><th>watchlist</th><th>camera</th><th>alarms</th>
<th>confirmed</th><th>dismissed</th><th>share dismissed</th><th>suppressed</th><th>thresholds in force</th>
<th>FPIR in force</th></tr>{rows}</table>
<h2>Camera running periods</h2><table><tr><th>camera</th><th>started</th><th>ended</th>
<th>watchlists checked</th><th>frames</th><th>alarms</th></tr>{runs}</table>
<h2>Stranger rules in force</h2><p>On these cameras every face is checked against the galleries
named; a face that matches none of them during the hours is a stranger alarm, whose face crop is kept
for the retention shown. Nobody is identified.</p><table><tr><th>camera</th><th>galleries</th><th>hours
(local)</th><th>min quality</th><th>retention (days)</th><th>enabled</th></tr>{rules}</table>
<h2>Face models</h2><table><tr><th>pack</th><th>model id</th><th>model</th><th>licences</th>
<th>caveat</th><th>in use now</th></tr>{models}</table></body></html>"""
