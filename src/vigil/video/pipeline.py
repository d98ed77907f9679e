"""The per-camera pipeline: frames in, events out.

    Frame -> detect (every ``video_detect_every`` frames, scaled to ``video_detect_side_px``; the
             whole frame or around the tracked faces, see :mod:`vigil.video.planning`; ahead on
             worker threads, see :class:`vigil.video.detection.DetectAhead`)
          -> track (IoU + motion) -> best shots (quality) -> embed the chosen shots only
          -> match against the active watchlists -> events

One alarm per track and identity. Each alarm is written to the catalog with a face crop and a frame
thumbnail (blob store) and records the score, the threshold and FPIR in force, the model, the camera
and the capture time. Galleries that are not watchlists, and watchlists that have expired, raise no
alarms (the watchlists are looked up again every ``REFRESH_S`` seconds, so an expiry takes effect
while a camera runs).

Entrance cameras (``Camera.kind == "entrance"``) also match the faces against the attendance galleries
and store one attendance mark per track and person; a mark is never an alarm (see
:mod:`vigil.attendance.marks`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from vigil.app import App
from vigil.attendance.marks import AttendanceMarker
from vigil.core.config import Settings
from vigil.core.errors import ForbiddenError, NotFoundError
from vigil.core.types import FaceDetections
from vigil.events.schemas import Alarm, CameraOffline, CameraOnline, SightingEnded, SightingStarted
from vigil.gallery.matching import Match, identify_faces
from vigil.gallery.models import Camera, Gallery, GalleryKind
from vigil.investigation import sightings
from vigil.video.alarms import NewAlarm, store_alarm
from vigil.video.detection import (
    DetectAhead,
    Detected,
    detect_threads,
    video_detector,
)
from vigil.video.metrics import Metrics
from vigil.video.planning import DetectionPlanner
from vigil.video.resume import CarriedAlarms
from vigil.video.sources import Frame, SourceStatus, now_utc
from vigil.video.tracker import IouTracker, Track
from vigil.vision.protocols import Detector

log = logging.getLogger(__name__)

REFRESH_S = 30.0
"""Seconds between look-ups of the active watchlists."""

PipelineEvent = SightingStarted | SightingEnded | Alarm | CameraOffline | CameraOnline


@dataclass
class TrackState:
    """What the pipeline knows about one track beyond its box."""

    track: Track
    best_quality: float = 0.0
    embedded_quality: float = -1.0
    embeds: int = 0
    alarmed: dict[int, str] = field(default_factory=dict)
    """identity id -> name of the alarms raised on this track."""
    marked: set[int] = field(default_factory=set)
    """identity ids with an attendance mark from this track (entrance cameras)."""
    last_label: str = ""
    shot_embedding: npt.NDArray[np.float32] | None = None
    """The best embedded shot's template, (d,) float32; kept only on cameras that keep sightings."""
    shot_quality: float = -1.0
    shot_crop_jpeg: bytes = b""
    match_id: int | None = None
    """The best alarm of the track (identity id and score), recorded with its sighting."""
    match_score: float | None = None


@dataclass
class Watchlists:
    names: list[str]
    ignored: list[str]
    """Galleries asked for that cannot alarm (not a watchlist, or expired), with the reason."""


def active_watchlists(
    app: App, names: list[str] | None, today: date | None = None, camera_id: int | None = None
) -> Watchlists:
    """The watchlists that may raise alarms now, among ``names`` (all watchlists when None).

    A watchlist limited to some sites or cameras alarms only on those: on an unregistered source
    (a file given to `vigil watch`, ``camera_id`` None) a limited watchlist raises no alarm.
    """
    with app.db.session() as s:
        cam = s.get(Camera, camera_id) if camera_id is not None else None
        if names:
            galleries = []
            for n in names:
                g = s.scalar(select(Gallery).where(Gallery.name == n))
                if g is None:
                    raise NotFoundError(f"no gallery named {n!r}", hint="see `vigil gallery list`")
                galleries.append(g)
        else:
            galleries = list(s.scalars(select(Gallery).where(Gallery.kind == GalleryKind.watchlist)))
        active, ignored = [], []
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


def _crop_jpeg(bgr: npt.NDArray[np.uint8], xyxy: npt.NDArray[np.float32], margin: float = 0.4) -> bytes:
    import cv2

    h, w = bgr.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    x1, y1 = max(0, int(x1 - mx)), max(0, int(y1 - my))
    x2, y2 = min(w, int(x2 + mx)), min(h, int(y2 + my))
    ok, buf = cv2.imencode(".jpg", bgr[y1:y2, x1:x2], [cv2.IMWRITE_JPEG_QUALITY, 92])
    return bytes(buf) if ok else b""


def _thumbnail_jpeg(bgr: npt.NDArray[np.uint8], xyxy: npt.NDArray[np.float32], width: int = 480) -> bytes:
    import cv2

    h, w = bgr.shape[:2]
    scale = min(1.0, width / w)
    small = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    x1, y1, x2, y2 = (round(float(v) * scale) for v in xyxy)
    cv2.rectangle(small, (x1, y1), (x2, y2), (0, 0, 255), 2)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return bytes(buf) if ok else b""


class Pipeline:
    """One camera's pipeline. Feed it frames and source statuses; it returns events.

    Args:
        app: the application context (catalog, blobs, indexes, embedder).
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
        self._sightings_checked = time.monotonic()

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

    def _refresh_watchlists(self) -> None:
        if time.monotonic() - self._refreshed >= REFRESH_S:
            self.watchlists = active_watchlists(self.app, self.gallery_names, camera_id=self.camera_id)
            self._refreshed = time.monotonic()

    def _mark_attendance(self, frame: Frame, faces: FaceDetections) -> None:
        """Entrance cameras: one attendance mark per track and person of the attendance galleries
        (stored and audited; never an alarm). See :mod:`vigil.attendance.marks`."""
        if not self.attendance.entrance:
            return
        assert faces.track_id is not None
        states = [self.states[int(t)] for t in faces.track_id]
        for mark in self.attendance.mark(frame, faces, [st.marked for st in states]):
            self.metrics.attendance_marks += 1
            st = states[mark.face]
            if not st.alarmed:
                st.last_label = f"{mark.identity} (attendance) {mark.score:.3f}"
            if st.match_score is None:  # the track's sighting records whom it matched
                st.match_id, st.match_score = mark.identity_id, mark.score

    def _match(self, frame: Frame, faces: FaceDetections) -> list[Alarm]:
        self._refresh_watchlists()
        self._mark_attendance(frame, faces)
        if not self.watchlists.names:
            return []
        try:
            result = identify_faces(
                self.app, faces, self.watchlists.names, top_k=3 * len(self.watchlists.names)
            )
        except ForbiddenError:  # a watchlist expired since the last look-up
            self._refreshed = 0.0
            self._refresh_watchlists()
            if not self.watchlists.names:
                return []
            result = identify_faces(
                self.app, faces, self.watchlists.names, top_k=3 * len(self.watchlists.names)
            )
        alarms = []
        assert faces.track_id is not None and faces.quality is not None
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
                st.alarmed[match.identity_id] = match.identity
                if self.carried is not None and self.carried.take(match.identity_id, st.track.first_frame):
                    continue  # raised before the worker restarted, on this same appearance
                t0 = time.monotonic()
                alarm = self._store_alarm(
                    frame,
                    faces[i],
                    match.identity_id,
                    match.identity,
                    match.gallery,
                    match.score,
                    match.threshold,
                    result.fpir,
                    result.model,
                )
                self.metrics.add("store", time.monotonic() - t0)
                alarms.extend([alarm] if alarm is not None else [])
        return alarms

    def _store_alarm(
        self,
        frame: Frame,
        face: FaceDetections,
        identity_id: int,
        identity: str,
        gallery: str,
        score: float,
        threshold: float,
        fpir: float,
        model: str,
    ) -> Alarm | None:
        """Store the alarm (see :func:`vigil.video.alarms.store_alarm`); None if it was stored before."""
        xyxy = face.xyxy[0]
        assert face.track_id is not None and face.quality is not None
        box = [round(float(v), 1) for v in xyxy]
        new = NewAlarm(
            camera=self.camera,
            camera_id=self.camera_id,
            gallery=gallery,
            identity=identity,
            identity_id=identity_id,
            track_id=int(face.track_id[0]),
            frame_index=frame.index,
            captured_at=frame.ts,
            score=score,
            threshold=threshold,
            fpir=fpir,
            model=model,
            box_xyxy=box,
            quality=float(face.quality[0]),
            crop_jpeg=_crop_jpeg(frame.bgr, xyxy),
            thumbnail_jpeg=_thumbnail_jpeg(frame.bgr, xyxy),
        )
        stored = store_alarm(self.app, new)
        if not stored.created:
            return None
        self.metrics.alarms += 1
        latency = 1000 * (time.monotonic() - frame.mono)
        self.metrics.alarm_latency_ms.append(latency)
        return Alarm(
            camera=self.camera,
            ts=frame.ts,
            alarm_id=stored.id,
            identity=identity,
            identity_id=identity_id,
            gallery=gallery,
            score=round(score, 6),
            threshold=round(threshold, 6),
            fpir=fpir,
            model=model,
            track_id=new.track_id,
            frame=frame.index,
            xyxy=box,
            quality=round(new.quality, 4),
            latency_ms=round(latency, 1),
            crop_sha256=stored.crop_sha256,
            thumbnail_sha256=stored.thumbnail_sha256,
        )

    def _ended(self, tracks: list[Track], frame: Frame | None) -> list[SightingEnded]:
        events = []
        for t in tracks:
            st = self.states.pop(t.id)
            if frame is not None:
                self._record_sighting(t, st, frame)
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

    def _keeps_sightings(self) -> bool:
        """The camera's opt-in, looked up again every ``REFRESH_S`` seconds (it can change while it runs)."""
        if time.monotonic() - self._sightings_checked >= REFRESH_S:
            self.keep_sightings = sightings.camera_keeps_sightings(self.app, self.camera_id)
            self._sightings_checked = time.monotonic()
        return self.keep_sightings

    def _keep_best_shots(self, frame: Frame, shots: FaceDetections) -> None:
        """Remember each track's highest-quality embedded shot (template and face crop)."""
        if not self._keeps_sightings() or shots.embedding is None or shots.quality is None:
            return
        assert shots.track_id is not None
        for j, (tid, q) in enumerate(zip(shots.track_id, shots.quality, strict=True)):
            st = self.states[int(tid)]
            if float(q) > st.shot_quality:
                st.shot_quality = float(q)
                st.shot_embedding = np.asarray(shots.embedding[j], np.float32).copy()
                st.shot_crop_jpeg = _crop_jpeg(frame.bgr, shots.xyxy[j])

    def _note_matches(self, events: list[Any]) -> None:
        """Keep each track's best alarm for its sighting."""
        for e in events:
            if isinstance(e, Alarm) and e.track_id in self.states:
                st = self.states[e.track_id]
                if st.match_score is None or e.score > st.match_score:
                    st.match_id, st.match_score = e.identity_id, e.score

    def _record_sighting(self, t: Track, st: TrackState, frame: Frame) -> None:
        """Store the ended track as a sighting, if the camera opted in and the track was embedded."""
        if st.shot_embedding is None or not self._keeps_sightings():
            return
        t0 = time.monotonic()
        sightings.store_sighting(
            self.app,
            sightings.NewSighting(
                camera_id=self.camera_id,
                camera_name=self.camera,
                track_id=t.id,
                first_seen=frame.ts - timedelta(seconds=max(0.0, frame.pos_s - t.first_pos_s)),
                last_seen=frame.ts - timedelta(seconds=max(0.0, frame.pos_s - t.last_pos_s)),
                frames=t.hits,
                quality=st.shot_quality,
                model_id=self.embedder.card.id,
                embedding=st.shot_embedding,
                crop_jpeg=st.shot_crop_jpeg,
                identity_id=st.match_id,
                score=st.match_score,
            ),
        )
        self.metrics.add("store", time.monotonic() - t0)

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
                self.states[t.id] = TrackState(t)
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
                    t3, stored = time.monotonic(), m.stage_s["store"]
                    alarms = self._match(frame, shots)
                    self._note_matches(alarms)
                    m.add("match", time.monotonic() - t3 - (m.stage_s["store"] - stored))
                    events.extend(alarms)
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
