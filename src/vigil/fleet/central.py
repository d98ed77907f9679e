"""Central matching, for sites where no biometric template may be stored on a pole.

A device added with ``keeps_templates=False`` (``vigil devices add NAME --site S --no-templates``)
receives the watchlists' people without their templates, so it can raise no alarm itself. Its worker
records a sighting for every track it embedded (:mod:`vigil.fleet.mirror` turns ``keep_sightings`` on
for its cameras): the best shot's template and face crop, sent like any event. The server stores the
sighting, then :class:`CentralMatcher` searches its template in the watchlists that may alarm on that
camera (:func:`vigil.video.pipeline.active_watchlists`: expiry, sites, cameras) and stores one alarm
per watchlist whose best match is above its threshold, with the sighting's crop, named with the
device. The alarm's ``event_id`` derives from the sighting's, so a sighting delivered twice raises its
alarm once. Negative examples apply here as on a camera of the server (:mod:`vigil.gallery.negatives`):
a sighting nearer to a dismissed stranger than to the person is stored as a suppressed alarm and
passed on to no one. Once matched, the sighting (the passer-by's template) is deleted again unless
the server's camera opted in to keeping sightings (``keep_sightings``): central matching keeps no
more than the device would have.

A camera's stranger rule is applied here too (:func:`vigil.video.strangers.sighting_stranger`): the
device keeps no rule (it holds no templates to tell who belongs), and the sighting's best shot decides.

Central alarms come when the track ends (the sighting is made then), not at the first good shot as on
a device that matches itself; the alarm's ``frame`` is the track's first frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
from sqlalchemy import delete, select

from vigil.app import App
from vigil.core.errors import VigilError
from vigil.core.types import FaceDetections
from vigil.events.schemas import Alarm, AnyEvent, SightingRecorded, event_id_for
from vigil.gallery.matching import identify_faces
from vigil.gallery.negatives import suppressing
from vigil.storage.tables import Camera, Device, Sighting
from vigil.video.alarms import store_alarm
from vigil.video.pipeline import active_watchlists
from vigil.video.strangers import sighting_stranger

log = logging.getLogger(__name__)


class CentralMatcher:
    """Wraps the consumer's ``on_event``: each stored event is passed on, and a sighting from a device
    that keeps no templates is matched here; the alarms it raises are stored and passed on too."""

    def __init__(self, app: App, on_event: Callable[[AnyEvent], None]) -> None:
        self.app = app
        self.on_event = on_event
        self.matched = 0
        self.alarms = 0

    def __call__(self, event: AnyEvent) -> None:
        self.on_event(event)
        if not isinstance(event, SightingRecorded):
            return
        device = self._templateless_device(event.camera_id)
        if device is None:
            return
        try:
            for alarm in self.match(event, device):
                self.on_event(alarm)
        except VigilError as exc:  # a watchlist or person deleted meanwhile: logged, the rest goes on
            log.warning("central matching of sighting %s failed: %s", event.event_id, exc)
        finally:
            self._forget_unless_kept(event)

    def _forget_unless_kept(self, sighting: SightingRecorded) -> None:
        """Delete the stored sighting (its template) once matched, unless the server's camera opted in
        to keeping sightings: a device that keeps no templates must not make the server keep the
        template of every passer-by. An alarm keeps its own copy of the crop."""
        with self.app.db.session() as s:
            cam = s.get(Camera, sighting.camera_id) if sighting.camera_id is not None else None
            if cam is not None and cam.keep_sightings:
                return
            s.execute(delete(Sighting).where(Sighting.event_id == sighting.event_id))

    def _templateless_device(self, camera_id: int | None) -> str | None:
        """The device that runs the camera, if it keeps no templates."""
        if camera_id is None:
            return None
        with self.app.db.session() as s:
            row = s.execute(
                select(Device.name, Device.keeps_templates)
                .join(Camera, Camera.device_id == Device.id)
                .where(Camera.id == camera_id)
            ).first()
        return row[0] if row is not None and not row[1] else None

    def match(self, sighting: SightingRecorded, device: str) -> list[Alarm]:
        """The alarms ``sighting`` raises (stored), one per watchlist with a match above its threshold."""
        self.matched += 1
        if sighting.model != self.app.engine.card.id:
            log.warning("sighting %s: model %s is not the server's", sighting.event_id, sighting.model)
            return []
        vector = np.frombuffer(sighting.embedding, dtype="<f4").astype(np.float32)
        faces = FaceDetections(
            xyxy=np.zeros((1, 4), np.float32),
            score=np.ones(1, np.float32),
            quality=np.asarray([sighting.quality], np.float32),
            embedding=vector[None, :],
        )
        stored = self._store(sighting_stranger(self.app, sighting, faces, device), device)
        names = active_watchlists(self.app, None, camera_id=sighting.camera_id).names
        if not names:
            return stored
        result = identify_faces(self.app, faces, names, top_k=3 * len(names))
        best: dict[str, tuple[int, str, float, float]] = {}
        for m in result.faces[0].matches:  # best first
            if m.above_threshold and m.gallery not in best:
                best[m.gallery] = (m.identity_id, m.identity, m.score, m.threshold)
        for gallery, (identity_id, identity, score, threshold) in sorted(best.items()):
            alarm = Alarm(
                camera=sighting.camera,
                ts=sighting.first_seen,
                event_id=event_id_for("central-alarm", sighting.camera, sighting.event_id, gallery),
                camera_id=sighting.camera_id,
                device=device,
                identity=identity,
                identity_id=identity_id,
                gallery=gallery,
                score=round(score, 6),
                threshold=round(threshold, 6),
                fpir=result.fpir,
                model=result.model,
                track_id=sighting.track_id,
                frame=sighting.first_frame,
                xyxy=[],
                quality=round(sighting.quality, 4),
                latency_ms=round(1000 * max(0.0, time.time() - sighting.last_seen.timestamp()), 1),
                crop_jpeg=sighting.crop_jpeg,
                suppressed_by=suppressing(self.app, identity_id, result.model, vector, score) or None,
            )
            stored += self._store(alarm, device)
        return stored

    def _store(self, alarm: Alarm | None, device: str) -> list[Alarm]:
        saved = store_alarm(self.app, alarm, device=device) if alarm is not None else None
        if saved is None or saved.suppressed_by:  # a suppressed alarm is raised to no one
            return []
        self.alarms += 1
        return [saved]
