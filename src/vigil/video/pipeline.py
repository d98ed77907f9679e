"""The per-camera pipeline: frames in, events out.

    Frame -> detect (every ``video_detect_every`` frames, scaled to ``video_detect_side_px``; the
             whole frame or around the tracked faces, see :mod:`vigil.video.planning`; ahead on
             worker threads, see :class:`vigil.video.detection.DetectAhead`)
          -> track (IoU + motion) -> best shots (quality) -> embed the chosen shots only
          -> match against the active watchlists -> events

The pipeline computes; sinks store (:mod:`vigil.video.sinks`). It reads the catalog (the watchlists,
the galleries' templates) but writes nothing: every decision is an event (:mod:`vigil.events.schemas`).

One alarm per track and identity. Each :class:`~vigil.events.schemas.Alarm` carries a face crop and
a frame thumbnail (JPEG bytes) and records the score, the threshold and FPIR in force, the model, the
camera and the capture time; its ``event_id`` is deterministic (see :mod:`vigil.video.evidence`), so
a replayed frame is stored once. Galleries that are not watchlists, and watchlists that have expired,
raise no alarms (the watchlists are looked up again every ``video_watchlist_refresh_s`` seconds, at
once when one expired or was deleted since, and when :meth:`Pipeline.refresh_watchlists` is called).

Entrance cameras (``Camera.kind == "entrance"``) also match the faces against the attendance galleries:
one :class:`~vigil.events.schemas.AttendanceMarked` per track and person; a mark is never an alarm
(see :mod:`vigil.attendance.marks`). Cameras that keep sightings emit a
:class:`~vigil.events.schemas.SightingRecorded` (template and crop of the best shot) when a track ends.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from vigil.app import App
from vigil.attendance.marks import AttendanceMarker
from vigil.core.config import Settings
from vigil.core.errors import ForbiddenError, NotFoundError
from vigil.core.frame import Frame
from vigil.core.types import FaceDetections
from vigil.events.schemas import (
    Alarm,
    AttendanceMarked,
    CameraOffline,
    CameraOnline,
    SightingEnded,
    SightingRecorded,
    SightingStarted,
)
from vigil.gallery.matching import IdentifyResult, Match, identify_faces
from vigil.investigation import sightings
from vigil.storage.tables import Camera, Gallery, GalleryKind
from vigil.video import evidence
from vigil.video.detection import (
    DetectAhead,
    Detected,
    detect_threads,
    video_detector,
)
from vigil.video.metrics import Metrics
from vigil.video.planning import DetectionPlanner
from vigil.video.resume import CarriedAlarms
from vigil.video.sources import SourceStatus, now_utc
from vigil.video.strangers import StrangerWatch
from vigil.video.tracker import IouTracker, Track
from vigil.vision.protocols import Detector

log = logging.getLogger(__name__)

PipelineEvent: TypeAlias = (
    SightingStarted
    | SightingEnded
    | Alarm
    | AttendanceMarked
    | SightingRecorded
    | CameraOffline
    | CameraOnline
)
"""The events a pipeline emits."""


@dataclass
class TrackState:
    """What the pipeline knows about one track beyond its box."""

    track: Track
    first_xyxy: list[float] = field(default_factory=list)
    """The track's box on its first frame."""
    best_quality: float = 0.0
    embedded_quality: float = -1.0
    embeds: int = 0
    alarmed: dict[int, str] = field(default_factory=dict)
    """identity id -> name of the alarms raised on this track."""
    suppressed: set[int] = field(default_factory=set)
    """identity ids whose alarm on this track negative examples suppressed (stored once)."""
    marked: set[int] = field(default_factory=set)
    """identity ids with an attendance mark from this track (entrance cameras)."""
    last_label: str = ""
    shot: evidence.Shot | None = None
    """The best embedded shot (template and crop); kept only on cameras that keep sightings."""
    match_id: int | None = None
    """The best alarm of the track (identity id and score), recorded with its sighting."""
    match_score: float | None = None


@dataclass
class Watchlists:
    names: list[str]
    ignored: list[str]
    """Galleries asked for that cannot alarm (not a watchlist, or expired), with the reason."""


def active_watchlists(
    app: App,
    names: list[str] | None,
    today: date | None = None,
    camera_id: int | None = None,
    *,
    missing_ok: bool = False,
) -> Watchlists:
    """The watchlists that may raise alarms now, among ``names`` (all watchlists when None).

    A watchlist limited to some sites or cameras alarms only on those: on an unregistered source
    (a file given to `vigil watch`, ``camera_id`` None) a limited watchlist raises no alarm.
    A name that is no gallery is a :class:`NotFoundError`, or (``missing_ok``: a gallery deleted
    while the camera runs) one of the ignored.
    """
    ignored = []
    with app.db.session() as s:
        cam = s.get(Camera, camera_id) if camera_id is not None else None
        if names:
            galleries = []
            for n in names:
                g = s.scalar(select(Gallery).where(Gallery.name == n))
                if g is None and missing_ok:
                    ignored.append(f"{n}: no such gallery (deleted?); it raises no alarms")
                elif g is None:
                    raise NotFoundError(f"no gallery named {n!r}", hint="see `vigil gallery list`")
                else:
                    galleries.append(g)
        else:
            galleries = list(s.scalars(select(Gallery).where(Gallery.kind == GalleryKind.watchlist)))
        active = []
        for g in sorted(galleries, key=lambda g: g.name):
            if g.kind != GalleryKind.watchlist:
                ignored.append(f"{g.name}: a {g.kind.value} gallery, not a watchlist; it raises no alarms")
            elif g.is_expired(today):
                ignored.append(f"{g.name}: watchlist expired on {g.expires_on}; it raises no alarms")
            elif g.cameras and (cam is None or cam.name not in _split(g.cameras)):
                ignored.append(f"{g.name}: limited to cameras {g.cameras}; it raises no alarms here")
            elif g.sites and (cam is None or cam.site not in _split(g.sites)):
                ignored.append(f"{g.name}: limited to sites {g.sites}; it raises no alarms here")
            else:
                active.append(g.name)
        return Watchlists(active, ignored)


def _split(csv: str) -> set[str]:
    return {part.strip() for part in csv.split(",") if part.strip()}


class Pipeline:
    """One camera's pipeline. Feed it frames and source statuses; it returns events.

    Args:
        app: the application context (embedder, indexes; the catalog is only read: the watchlists
            and their templates. Nothing is written here: see :mod:`vigil.video.sinks`).
        camera: the camera's name, as events and alarms record it.
        galleries: the galleries to watch (None: every active watchlist).
        camera_id: the registered camera, if any.
        detector: the detector to use (default: the settings' detector, tuned for video).
        annotator: draws each frame's decisions (see :class:`vigil.video.annotate.Annotator`).
        carried: the alarms raised before a restart on appearances still going on (a resumed file
            camera, see :mod:`vigil.video.resume`): their tracks raise no second alarm.
    """

    def __init__(
        self,
        app: App,
        camera: str,
        galleries: list[str] | None = None,
        *,
        camera_id: int | None = None,
        detector: Detector | None = None,
        annotator: Any = None,
        carried: CarriedAlarms | None = None,
    ) -> None:
        self.app = app
        self.carried = carried
        self.settings: Settings = app.settings
        self.camera = camera
        self.camera_id = camera_id
        self.gallery_names = galleries
        self.watchlists = active_watchlists(app, galleries, camera_id=camera_id)
        self._refreshed = time.monotonic()
        self.attendance = AttendanceMarker(app, camera, galleries, camera_id)
        self.strangers = StrangerWatch(app, camera, camera_id)
        self.detector = detector or video_detector(app.settings, app.pack, app.engine.detector)
        self.planner = DetectionPlanner(self.settings, self.detector)
        self.ahead: DetectAhead[Frame, PipelineEvent] | None = None
        workers = detect_threads(self.settings)
        if workers > 1:
            self.ahead = DetectAhead(
                self.planner.plan,
                self.process,
                every=self.settings.video_detect_every,
                workers=workers,
                needs=self.planner.needs,
            )
        self.frames_fed = 0
        self.embedder = app.engine.embedder
        self.tracker = IouTracker(
            high_score=self.settings.video_track_confidence, max_lost_s=self.settings.video_max_lost_s
        )
        self.states: dict[int, TrackState] = {}
        self.metrics = Metrics()
        self.metrics.scans = self.planner.scans
        self.annotator = annotator
        self._last_frame: Frame | None = None
        self._last_read = time.monotonic()
        self.keep_sightings = sightings.camera_keeps_sightings(app, camera_id)

    # -- stages ---------------------------------------------------------------------------------

    def _choose_shots(self, faces: FaceDetections) -> npt.NDArray[np.int64]:
        """Indices of the tracked faces worth embedding now (best-shot policy)."""
        chosen = []
        assert faces.track_id is not None and faces.quality is not None
        s = self.settings
        for i, (tid, q) in enumerate(zip(faces.track_id, faces.quality, strict=True)):
            st = self.states[int(tid)]
            q = float(q)
            st.best_quality = max(st.best_quality, q)
            if st.embeds >= s.video_embeds_per_track:
                continue
            if st.embeds == 0:
                # The first shot once it is good enough, or the best so far after a few sightings.
                if q >= s.video_min_quality or (st.track.hits >= 5 and q >= st.best_quality):
                    chosen.append(i)
            elif q >= st.embedded_quality + s.video_improve_by:
                chosen.append(i)
        return np.asarray(chosen, np.int64)

    def _embed(self, bgr: npt.NDArray[np.uint8], faces: FaceDetections) -> FaceDetections:
        if faces.landmark_scheme == "dlib5" and self.embedder.card.id.startswith("dlib"):
            # Landmarks were found on the scaled detection image; the embedder refits them at full size.
            faces = faces.with_(landmarks=None)
        return faces.with_(embedding=self.embedder.embed(bgr, faces))

    def refresh_watchlists(self) -> None:
        """Look up now which watchlists and attendance galleries may match here, and whether the
        camera keeps sightings (done by itself every ``video_watchlist_refresh_s`` seconds)."""
        self.watchlists = active_watchlists(
            self.app, self.gallery_names, camera_id=self.camera_id, missing_ok=True
        )
        self.attendance.refresh(force=True)
        self.strangers.refresh()
        self.keep_sightings = sightings.camera_keeps_sightings(self.app, self.camera_id)
        self._refreshed = time.monotonic()

    def _refresh_when_due(self) -> None:
        if time.monotonic() - self._refreshed >= self.settings.video_watchlist_refresh_s:
            self.refresh_watchlists()

    def _mark_attendance(self, frame: Frame, faces: FaceDetections) -> list[AttendanceMarked]:
        """Entrance cameras: one attendance mark per track and person of the attendance galleries
        (never an alarm). See :mod:`vigil.attendance.marks`."""
        if not self.attendance.entrance:
            return []
        assert faces.track_id is not None
        marks = self.attendance.mark(frame, faces, [self.states[int(t)].marked for t in faces.track_id])
        for mark in marks:
            st = self.states[mark.track_id]
            if not st.alarmed:
                st.last_label = f"{mark.identity} (attendance) {mark.score:.3f}"
            if st.match_score is None:  # the track's sighting records whom it matched
                st.match_id, st.match_score = mark.identity_id, mark.score
        return marks

    def _identify(self, faces: FaceDetections) -> IdentifyResult | None:
        """``faces`` against the active watchlists; None when none is active (any longer)."""
        if not self.watchlists.names:
            return None
        try:
            return identify_faces(
                self.app, faces, self.watchlists.names, top_k=3 * len(self.watchlists.names)
            )
        except (ForbiddenError, NotFoundError):  # a watchlist expired or was deleted since the look-up
            self.refresh_watchlists()
            if not self.watchlists.names:
                return None
            return identify_faces(
                self.app, faces, self.watchlists.names, top_k=3 * len(self.watchlists.names)
            )

    def _match(self, frame: Frame, faces: FaceDetections) -> list[PipelineEvent]:
        """The attendance marks and alarms of the embedded ``faces`` (with ``track_id``)."""
        self._refresh_when_due()
        events: list[PipelineEvent] = [*self._mark_attendance(frame, faces)]
        events.extend(self.strangers.decide(frame, faces))  # the camera's stranger rule, if any
        result = self._identify(faces)
        if result is None:
            return events
        assert faces.track_id is not None and faces.embedding is not None
        for i, face in enumerate(result.faces):
            st = self.states[int(faces.track_id[i])]
            # Each watchlist is its own decision (its own purpose, legal basis and reviewers): the best
            # match above threshold in every watchlist raises that watchlist's alarm.
            hits: dict[str, Match] = {}
            for m in face.matches:  # best first
                if m.above_threshold and m.gallery not in hits:
                    hits[m.gallery] = m
            if not hits:
                continue
            top = max(hits.values(), key=lambda m: m.score)
            st.last_label = f"{top.identity} {top.score:.3f}"
            for match in hits.values():
                if match.identity_id in st.alarmed:
                    continue
                decision = evidence.Decision(match, result.fpir, result.model)
                if (decision := evidence.screen(self.app, decision, faces.embedding[i])).suppressed_by:
                    if match.identity_id not in st.suppressed:  # a later, nearer shot may still alarm
                        st.suppressed.add(match.identity_id)
                        events.append(evidence.alarm(self.camera, self.camera_id, frame, faces[i], decision))
                    continue
                st.alarmed[match.identity_id] = match.identity
                if self.carried is not None and self.carried.take(match.identity_id, st.track.first_frame):
                    continue  # raised before the worker restarted, on this same appearance
                alarm = evidence.alarm(self.camera, self.camera_id, frame, faces[i], decision)
                self.metrics.alarm_latency_ms.append(alarm.latency_ms)
                events.append(alarm)
        return events

    def _ended(self, tracks: list[Track], frame: Frame | None) -> list[PipelineEvent]:
        events: list[PipelineEvent] = []
        for t in tracks:
            st = self.states.pop(t.id)
            events.extend(self.strangers.ended(t.id))
            if frame is not None and (recorded := self._sighting(t, st, frame)) is not None:
                events.append(recorded)
            events.append(
                SightingEnded(
                    camera=self.camera,
                    ts=frame.ts if frame is not None else now_utc(),
                    track_id=t.id,
                    frame=t.last_frame,
                    first_frame=t.first_frame,
                    frames_seen=t.hits,
                    best_quality=round(st.best_quality, 4),
                    embeddings=st.embeds,
                    identity=", ".join(st.alarmed.values()) or None,
                )
            )
        return events

    # -- sightings (cameras that opted in) ------------------------------------------------------

    def _keep_best_shots(self, frame: Frame, shots: FaceDetections) -> None:
        """Remember each track's highest-quality embedded shot (template and face crop)."""
        if not self.keep_sightings or shots.embedding is None or shots.quality is None:
            return
        assert shots.track_id is not None
        for j, (tid, q) in enumerate(zip(shots.track_id, shots.quality, strict=True)):
            st = self.states[int(tid)]
            if st.shot is None or float(q) > st.shot.quality:
                st.shot = evidence.Shot(
                    embedding=np.asarray(shots.embedding[j], np.float32).copy(),
                    quality=float(q),
                    crop_jpeg=evidence.crop_jpeg(frame.bgr, shots.xyxy[j]),
                )

    def _note_matches(self, events: list[PipelineEvent]) -> None:
        """Keep each track's best alarm for its sighting."""
        for e in events:
            if isinstance(e, Alarm) and e.kind == "stranger" and e.track_id in self.states:
                self.states[e.track_id].last_label = "stranger"  # the live preview's label
            if isinstance(e, Alarm) and e.identity_id is not None and e.track_id in self.states:
                st = self.states[e.track_id]
                if st.match_score is None or e.score > st.match_score:
                    st.match_id, st.match_score = e.identity_id, e.score

    def _sighting(self, t: Track, st: TrackState, frame: Frame) -> SightingRecorded | None:
        """The ended track as a sighting, if the camera opted in and the track was embedded."""
        if st.shot is None or not self.keep_sightings:
            return None
        seen = evidence.Appearance(
            track_id=t.id,
            first_frame=t.first_frame,
            first_xyxy=st.first_xyxy,
            frames=t.hits,
            first_seen=frame.ts - timedelta(seconds=max(0.0, frame.pos_s - t.first_pos_s)),
            last_seen=frame.ts - timedelta(seconds=max(0.0, frame.pos_s - t.last_pos_s)),
        )
        match = (st.match_id, st.match_score)
        return evidence.sighting(self.camera, self.camera_id, seen, st.shot, self.embedder.card.id, match)

    # -- entry points ---------------------------------------------------------------------------

    @property
    def last_frame(self) -> Frame | None:
        """The last frame processed (frames queued for detection are not processed yet)."""
        return self._last_frame

    def feed(self, frame: Frame) -> list[PipelineEvent]:
        """Take the next frame; the events of the frames done meanwhile, in order.

        With ``video_detect_threads`` > 1 the frame's detection starts now on a worker thread and
        the frame is processed once it is back (a few frames later); :meth:`finish` (or a source
        status) processes the rest. Otherwise the frame is processed at once, as :meth:`process`.
        """
        self.frames_fed += 1
        if self.ahead is None:
            return self.process(frame)
        waited = self.ahead.waited_s
        events = self.ahead.push(frame)
        self._last_read += self.ahead.waited_s - waited  # waiting on the detector is not decoding
        return events

    def _drain(self) -> list[PipelineEvent]:
        return [] if self.ahead is None else self.ahead.drain()

    def process(self, frame: Frame, detected: Detected | None = None) -> list[PipelineEvent]:
        """Run one frame through the pipeline; the events it caused, in order.

        ``detected``: the frame's detection made beforehand (see :meth:`feed`), for detection frames.
        """
        m = self.metrics
        now = time.monotonic()
        m.add("decode", max(0.0, now - self._last_read))
        events: list[PipelineEvent] = []
        is_detect_frame = m.frames % self.settings.video_detect_every == 0
        m.frames += 1
        tracked = FaceDetections.empty()
        ended: list[Track]
        if is_detect_frame:
            t0 = time.monotonic()
            if detected is None:
                faces = self.planner.plan(frame)()
                m.add("detect", time.monotonic() - t0)
            else:
                faces = detected.faces
                m.add("detect", detected.seconds)
            t1 = time.monotonic()
            detection = m.detected_frames
            m.detected_frames += 1
            m.faces += len(faces)
            update = self.tracker.update(faces, frame.index, frame.pos_s)
            m.add("track", time.monotonic() - t1)
            tracked, ended = update.faces, update.ended
            self.planner.tracked(detection, self.tracker.active)
            for t in update.started:
                self.states[t.id] = TrackState(t, first_xyxy=evidence.box_of(t.box))
                m.tracks += 1
                events.append(
                    SightingStarted(
                        camera=self.camera,
                        ts=frame.ts,
                        track_id=t.id,
                        frame=frame.index,
                        xyxy=[round(float(v), 1) for v in t.box],
                    )
                )
            if len(tracked):
                chosen = self._choose_shots(tracked)
                if len(chosen):
                    t2 = time.monotonic()
                    shots = self._embed(frame.bgr, tracked[chosen])
                    m.add("embed", time.monotonic() - t2)
                    m.embeddings += len(shots)
                    assert shots.track_id is not None and shots.quality is not None
                    for tid, q in zip(shots.track_id, shots.quality, strict=True):
                        st = self.states[int(tid)]
                        st.embeds += 1
                        st.embedded_quality = max(st.embedded_quality, float(q))
                    self._keep_best_shots(frame, shots)
                    t3 = time.monotonic()
                    decided = self._match(frame, shots)
                    self._note_matches(decided)
                    m.add("match", time.monotonic() - t3)
                    events.extend(decided)
        else:
            ended = self.tracker.advance(frame.pos_s)
        events.extend(self._ended(ended, frame))
        if self.annotator is not None:
            t4 = time.monotonic()
            self.annotator.draw(frame, tracked, self)
            m.add("annotate", time.monotonic() - t4)
        self._last_frame = frame
        self._last_read = time.monotonic()
        return events

    def status(self, status: SourceStatus) -> list[PipelineEvent]:
        """A live source went offline or came back: the matching camera event."""
        events: list[PipelineEvent] = self._drain()
        self._last_read = time.monotonic()
        if status.state == "offline":
            # The tracks cannot continue across a gap in the stream.
            ended = self._ended(self.tracker.finish(), self._last_frame)
            offline = CameraOffline(
                camera=self.camera, ts=status.ts, reason=status.reason, retry_in_s=status.retry_in_s
            )
            return [*events, *ended, offline]
        return [*events, CameraOnline(camera=self.camera, ts=status.ts, reconnects=status.reconnects)]

    def finish(self) -> list[PipelineEvent]:
        """The end of the stream: process the frames still queued, end every track.

        A detection that failed on a queued frame is raised after the tracks are ended and the
        annotated video is closed.
        """
        events: list[PipelineEvent] = []
        failure: Exception | None = None
        try:
            events = self._drain()
        except Exception as exc:  # raised again below, once the stream is closed
            failure = exc
        finally:
            if self.ahead is not None:
                self.ahead.close()
        events.extend(self._ended(self.tracker.finish(), self._last_frame))
        if self.annotator is not None:
            self.annotator.close()
        if failure is not None:
            raise failure
        return events
