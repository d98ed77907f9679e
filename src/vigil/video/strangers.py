"""Stranger alarms: a camera rule that alarms on a face matching none of the galleries it names.

A camera of a restricted place (a server room, a school yard at night) may carry a stranger rule:
the galleries of the people who belong there (``staff``, ``students``: galleries of any kind), the
hours it applies (local time of the ``timezone`` setting; None: always) and a minimum face quality
(None: the ``stranger_min_quality`` setting). During those hours every embedded face of the camera is
searched in the named galleries with :func:`~vigil.gallery.matching.identify_faces`, each gallery at
its own threshold for the target FPIR. A face is a **stranger** when

- the rule applies at the frame's capture time,
- its quality is at least the minimum quality (quality covers the face size: a face under 80 px on
  its shorter side scores lower, so tiny and blurred faces are never strangers; see
  ``bench/stranger_quality.py`` for how the default was chosen), and
- its score in every named gallery is below that gallery's threshold.

One stranger alarm per track: the track is decided on its best qualifying shot, once it has
``stranger_shots`` qualifying shots none of which matched, or when it ends with at least one. A track
on which any shot matched a named gallery (whatever its quality) never raises a stranger alarm, and
a decided track is never decided again. Nobody is identified: the alarm has no identity and no
gallery; it records the nearest score and its gallery's threshold for the reviewer.

The rule is **suspended** (no stranger alarms, a warning in the log) while it cannot tell who
belongs: a named gallery deleted, expired, limited to other sites or cameras, or without templates of
the model in use. Otherwise everyone would become a stranger, and their crops would be kept.

Hours: ``[DAYS] [HH:MM-HH:MM]``, days as attendance schedules write them (``mon-fri``, ``sat,sun``);
an end before the start runs past midnight (into the next day).

    >>> h = parse_hours("mon-fri 22:00-06:00")
    >>> h.text
    'mon,tue,wed,thu,fri 22:00-06:00'
    >>> from datetime import datetime
    >>> h.applies_at(datetime(2026, 12, 5, 3, 0))  # Saturday 03:00, the night from Friday
    True
    >>> h.applies_at(datetime(2026, 12, 5, 23, 0))  # Saturday 23:00
    False
"""

from __future__ import annotations

import json
import logging
import re
import time as clock
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import BaseModel
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from vigil.app import App
from vigil.core.errors import ForbiddenError, InputError, NotFoundError
from vigil.core.frame import Frame
from vigil.core.types import FaceDetections
from vigil.events.schemas import Alarm, SightingRecorded, event_id_for
from vigil.gallery.matching import FaceResult, Match, identify_faces
from vigil.gallery.schedule import DAYS, local_zone, parse_days, parse_hhmm
from vigil.storage.tables import Camera, Gallery, Identity, Template
from vigil.video import evidence

log = logging.getLogger(__name__)

MAX_GALLERIES = 20
"""The most galleries one rule may name."""
HOURS_HINT = "for example 'mon-fri 07:00-19:00', '22:00-06:00' or 'sat,sun'; leave it unset for always"
_HOURS = re.compile(r"^(?P<days>.*?)\s*(?:(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2}))?$")


@dataclass(frozen=True)
class Hours:
    """When a rule applies: on ``days`` (``date.weekday()`` numbers; empty: every day), from ``start``
    to ``end`` (None: the whole day; an end before the start runs into the next day)."""

    days: frozenset[int]
    start: time | None
    end: time | None

    @property
    def text(self) -> str:
        """The normalised form, as stored."""
        days = ",".join(DAYS[d] for d in sorted(self.days))
        span = f"{self.start:%H:%M}-{self.end:%H:%M}" if self.start and self.end else ""
        return " ".join(p for p in (days, span) if p)

    def _day(self, weekday: int) -> bool:
        return not self.days or weekday in self.days

    def applies_at(self, local: datetime) -> bool:
        """Whether the rule applies at the local (wall-clock) time ``local``."""
        if self.start is None or self.end is None:
            return self._day(local.weekday())
        t = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return self._day(local.weekday()) and self.start <= t < self.end
        return (t >= self.start and self._day(local.weekday())) or (
            t < self.end and self._day((local.weekday() - 1) % 7)
        )


def parse_hours(text: str) -> Hours:
    """``[DAYS] [HH:MM-HH:MM]`` (see the module); :class:`InputError` naming ``stranger_hours``."""
    m = _HOURS.match(text.strip()) if len(text) <= 200 else None
    try:
        if m is None or (not m["days"] and not m["start"]):
            raise ValueError(f"{text[:60]!r} is not DAYS HH:MM-HH:MM")
        days = (
            frozenset(DAYS.index(d) for d in parse_days(m["days"]).split(",")) if m["days"] else frozenset()
        )
        start = end = None
        if m["start"]:
            start = time.fromisoformat(parse_hhmm(m["start"]))
            end = time.fromisoformat(parse_hhmm(m["end"]))
            if start == end:
                raise ValueError(f"{text!r} starts and ends at the same time")
    except ValueError as exc:
        raise InputError(f"stranger_hours: {exc}", hint=HOURS_HINT) from None
    return Hours(days if len(days) < 7 else frozenset(), start, end)


class StrangerRule(BaseModel):
    """A camera's stranger rule as stored (normalised)."""

    galleries: list[str]
    """Whoever matches none of these is a stranger."""
    hours: str | None = None
    """When it applies (local time); None: always."""
    min_quality: float | None = None
    """Faces below this quality are never strangers; None: the ``stranger_min_quality`` setting."""


def rule_of(cam: Camera) -> StrangerRule | None:
    """The camera's rule, None when it has none."""
    if cam.stranger_galleries is None:
        return None
    return StrangerRule(
        galleries=list(json.loads(cam.stranger_galleries)),
        hours=cam.stranger_hours,
        min_quality=cam.stranger_min_quality,
    )


def check_rule(
    s: Session, galleries: Sequence[str], hours: str | None, min_quality: float | None
) -> StrangerRule:
    """The rule normalised, or :class:`InputError` (the field named) / :class:`NotFoundError` (a gallery)."""
    names: list[str] = []
    for raw in galleries:
        name = raw.strip()
        if name and name not in names:
            names.append(name)
    if not names:
        raise InputError(
            "stranger_galleries: name at least one gallery (the people who belong here)",
            hint="for example --strangers staff,students; --strangers-off turns the rule off",
        )
    if len(names) > MAX_GALLERIES:
        raise InputError(f"stranger_galleries: {len(names)} galleries; at most {MAX_GALLERIES}")
    known = set(s.scalars(select(Gallery.name).where(Gallery.name.in_(names))))
    for name in names:
        if name not in known:
            raise NotFoundError(
                f"stranger_galleries: no gallery named {name[:200]!r}", hint="see `vigil gallery list`"
            )
    if min_quality is not None and not 0.0 <= min_quality <= 1.0:
        raise InputError(f"stranger_min_quality: {min_quality} is not between 0 and 1")
    text = parse_hours(hours).text if hours is not None and hours.strip() else None
    return StrangerRule(galleries=names, hours=text or None, min_quality=min_quality)


def store_rule(cam: Camera, rule: StrangerRule | None) -> None:
    """Write ``rule`` (None: off) into the camera row (the caller audits the change)."""
    cam.stranger_galleries = json.dumps(rule.galleries) if rule is not None else None
    cam.stranger_hours = rule.hours if rule is not None else None
    cam.stranger_min_quality = rule.min_quality if rule is not None else None


# -- the decision (in the camera pipeline) --------------------------------------------------------


@dataclass(frozen=True)
class ActiveRule:
    galleries: list[str]
    hours: Hours | None
    min_quality: float


@dataclass
class _Track:
    decided: bool = False
    """Alarmed, or matched a named gallery: never decided again."""
    shots: int = 0
    """Qualifying shots (at least the minimum quality, within the hours), none matched."""
    pending: Alarm | None = None
    """The alarm of the best qualifying shot, raised once decided."""
    mono: float = 0.0


def _split(csv: str | None) -> set[str]:
    return {part.strip() for part in (csv or "").split(",") if part.strip()}


def _unusable(s: Session, g: Gallery | None, name: str, cam: Camera, model_id: str) -> str | None:
    """Why gallery ``g`` cannot tell here who belongs (None: it can)."""
    if g is None:
        return f"gallery {name!r} no longer exists"
    if g.is_expired():
        return f"gallery {name!r} expired on {g.expires_on}"
    if g.cameras and cam.name not in _split(g.cameras):
        return f"gallery {name!r} is limited to cameras {g.cameras}"
    if g.sites and cam.site not in _split(g.sites):
        return f"gallery {name!r} is limited to sites {g.sites}"
    people = s.scalar(
        select(func.count(distinct(Template.identity_id)))
        .join(Identity)
        .where(Identity.gallery_id == g.id, Template.model_id == model_id)
    )
    if not people:
        return f"gallery {name!r} has no templates of the model in use ({model_id})"
    return None


def active_rule(app: App, camera_id: int | None) -> tuple[ActiveRule | None, str | None]:
    """The camera's rule as the pipeline applies it, and why it is suspended (if it is)."""
    if camera_id is None:
        return None, None
    with app.db.session() as s:
        cam = s.get(Camera, camera_id)
        rule = rule_of(cam) if cam is not None else None
        if cam is None or rule is None:
            return None, None
        model_id = app.engine.card.id
        for name in rule.galleries:
            g = s.scalar(select(Gallery).where(Gallery.name == name))
            if (why := _unusable(s, g, name, cam, model_id)) is not None:
                return None, f"camera {cam.name}: stranger rule suspended: {why}"
        hours = parse_hours(rule.hours) if rule.hours else None
        quality = rule.min_quality if rule.min_quality is not None else app.settings.stranger_min_quality
        return ActiveRule(rule.galleries, hours, quality), None


class StrangerWatch:
    """Decides one camera's stranger alarms (a no-op unless the camera has a rule in force).

    Call :meth:`decide` with every embedded shot, :meth:`ended` when a track ends and :meth:`refresh`
    when the catalog may have changed (the pipeline does it with its watchlists).
    """

    def __init__(self, app: App, camera: str, camera_id: int | None) -> None:
        self.app = app
        self.camera = camera
        self.camera_id = camera_id
        self.tracks: dict[int, _Track] = {}
        self.rule: ActiveRule | None = None
        self.suspended: str | None = None
        self.zone: ZoneInfo | None = None
        self.refresh()

    def refresh(self) -> None:
        self.rule, suspended = active_rule(self.app, self.camera_id)
        if suspended is not None and suspended != self.suspended:
            log.warning("%s", suspended)
        self.suspended = suspended
        if self.rule is not None and self.rule.hours is not None and self.zone is None:
            self.zone = local_zone(self.app.settings)

    def applies_at(self, ts: datetime) -> bool:
        rule = self.rule
        if rule is None:
            return False
        return rule.hours is None or self.zone is None or rule.hours.applies_at(ts.astimezone(self.zone))

    def decide(self, frame: Frame, shots: FaceDetections) -> list[Alarm]:
        """The stranger alarms decided by the embedded ``shots`` (with ``track_id`` and ``quality``)."""
        rule = self.rule
        if rule is None or not self.applies_at(frame.ts) or shots.track_id is None:
            return []
        undecided = np.asarray([not self.tracks.get(int(t), _Track()).decided for t in shots.track_id])
        if not undecided.any():
            return []  # every track here is decided: nothing to search
        shots = shots[undecided]
        assert shots.track_id is not None
        try:
            result = identify_faces(self.app, shots, rule.galleries, top_k=3 * len(rule.galleries))
        except (ForbiddenError, NotFoundError):  # a gallery expired or was deleted since the look-up
            self.refresh()
            return []
        quality = shots.quality if shots.quality is not None else np.zeros(len(shots), np.float32)
        alarms = []
        for i, face in enumerate(result.faces):
            st = self.tracks.setdefault(int(shots.track_id[i]), _Track())
            if st.decided:
                continue
            if any(m.above_threshold for m in face.matches):
                st.decided, st.pending = True, None  # someone who belongs here
                continue
            if float(quality[i]) < rule.min_quality:
                continue
            st.shots += 1
            if st.pending is None or float(quality[i]) > st.pending.quality:
                st.pending = stranger_alarm(self, frame, shots[i], face, (result.fpir, result.model))
                st.mono = frame.mono
            if st.shots >= self.app.settings.stranger_shots:
                alarms.append(self._raise(st))
        return alarms

    def ended(self, track_id: int) -> list[Alarm]:
        """The stranger alarm of an ended track still undecided, if it had a qualifying shot."""
        st = self.tracks.pop(track_id, None)
        if st is None or st.decided or st.pending is None or self.rule is None:
            return []  # (a rule turned off or suspended meanwhile raises nothing more)
        return [self._raise(st)]

    def _raise(self, st: _Track) -> Alarm:
        assert st.pending is not None
        st.decided = True
        latency = round(1000 * (clock.monotonic() - st.mono), 1)
        alarm = st.pending.model_copy(update={"latency_ms": latency})
        st.pending = None
        return alarm


def _nearest(face: FaceResult) -> Match | None:
    """The match nearest to its gallery's threshold (what the reviewer sees as the score)."""
    return max(face.matches, key=lambda m: m.score - m.threshold, default=None)


def stranger_alarm(
    watch: StrangerWatch, frame: Frame, face: FaceDetections, result: FaceResult, figures: tuple[float, str]
) -> Alarm:
    """The stranger alarm of the one face ``face`` of ``frame``; ``figures``: (FPIR, model)."""
    assert watch.rule is not None
    xyxy = face.xyxy[0]
    box = evidence.box_of(xyxy)
    nearest = _nearest(result)
    cam = watch.camera
    return Alarm(
        event_id=event_id_for("stranger", cam, watch.camera_id, frame.index, frame.ts, box),
        kind="stranger",
        camera=cam,
        camera_id=watch.camera_id,
        ts=frame.ts,
        galleries_checked=watch.rule.galleries,
        score=round(nearest.score, 6) if nearest else -1.0,
        threshold=round(nearest.threshold, 6) if nearest else 1.0,
        fpir=figures[0],
        model=figures[1],
        track_id=int(face.track_id[0]) if face.track_id is not None else -1,
        frame=frame.index,
        xyxy=box,
        quality=round(float(face.quality[0]) if face.quality is not None else 0.0, 4),
        latency_ms=0.0,
        crop_jpeg=evidence.crop_jpeg(frame.bgr, xyxy),
        thumbnail_jpeg=evidence.thumbnail_jpeg(frame.bgr, xyxy),
    )


def sighting_stranger(
    app: App, sighting: SightingRecorded, face: FaceDetections, device: str
) -> Alarm | None:
    """Central matching (a device that keeps no templates): the stranger alarm of an ended track, from
    its sighting (the best shot's template ``face``, its quality and crop), if the camera's rule says
    so. The same decision as :class:`StrangerWatch` on that one shot, when the track ended."""
    rule, _ = active_rule(app, sighting.camera_id)
    if rule is None or sighting.quality < rule.min_quality:
        return None
    if rule.hours is not None:
        zone = local_zone(app.settings)
        seen = (sighting.first_seen.astimezone(zone), sighting.last_seen.astimezone(zone))
        if not any(rule.hours.applies_at(t) for t in seen):
            return None
    result = identify_faces(app, face, rule.galleries, top_k=3 * len(rule.galleries))
    matches = result.faces[0].matches
    if any(m.above_threshold for m in matches):
        return None
    nearest = _nearest(result.faces[0])
    return Alarm(
        event_id=event_id_for("central-stranger", sighting.camera, sighting.event_id),
        kind="stranger",
        camera=sighting.camera,
        camera_id=sighting.camera_id,
        device=device,
        ts=sighting.first_seen,
        galleries_checked=rule.galleries,
        score=round(nearest.score, 6) if nearest else -1.0,
        threshold=round(nearest.threshold, 6) if nearest else 1.0,
        fpir=result.fpir,
        model=result.model,
        track_id=sighting.track_id,
        frame=sighting.first_frame,
        xyxy=[],
        quality=round(sighting.quality, 4),
        latency_ms=round(1000 * max(0.0, clock.time() - sighting.last_seen.timestamp()), 1),
        crop_jpeg=sighting.crop_jpeg,
    )
