"""Sightings from real video: kept only on cameras that opted in, purged with their retention, erased
with the person."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from sighting_seed import Seed
from sqlalchemy import select

from vigil.app import App
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.governance import erasure, retention
from vigil.investigation import clusters, sightings
from vigil.storage import audit
from vigil.storage.tables import AlarmRecord, Cluster, Sighting
from vigil.video import cameras
from vigil.vision.image import load_image

pytestmark = pytest.mark.catalogs


def rows(app: App, camera: str | None = None) -> list[Sighting]:
    q = select(Sighting).order_by(Sighting.id)
    if camera is not None:
        q = q.where(Sighting.camera_name == camera)
    with app.db.session() as s:
        return list(s.scalars(q))


def test_one_sighting_per_embedded_track_only_on_cameras_that_opted_in(inv_app: App, seed: Seed) -> None:
    hall, lobby, street = rows(inv_app, "hall"), rows(inv_app, "lobby"), rows(inv_app, "street")
    assert street == []  # did not opt in: faces that match nothing are not kept
    assert len(lobby) == 6  # six walk-throughs, one track each
    assert len(hall) >= 2
    card = inv_app.engine.card
    for r in hall + lobby:
        assert r.model_id == card.id and r.dimension == card.dimension
        v = sightings.vector_of(r)
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-3
        assert (
            seed.since <= sightings.aware_utc(r.first_seen) <= sightings.aware_utc(r.last_seen) <= seed.until
        )
        assert r.frames >= 2 and 0 < r.quality <= 1 and r.cluster_id is None
        assert r.crop_sha256 is not None
        crop = cv2.imdecode(np.frombuffer(inv_app.blobs.get(r.crop_sha256), np.uint8), cv2.IMREAD_COLOR)
        assert crop is not None and min(crop.shape[:2]) >= 40
    # Lin-Manuel Miranda is on the watchlist: his tracks carry the identity and the alarm's score.
    matched = [r for r in hall if r.identity_id is not None]
    assert len(matched) >= 2 and {r.identity_id for r in matched} == {seed.lin_id}
    with inv_app.db.session() as s:
        alarms = list(s.scalars(select(AlarmRecord)))
    by_track = {a.track_id: a.score for a in alarms}
    for r in matched:
        assert r.score is not None and r.score == max(a.score for a in alarms if a.track_id == r.track_id), (
            by_track
        )
    assert all(r.identity_id is None and r.score is None for r in lobby)


def test_opting_out_stops_keeping_sightings(inv_app: App, seed: Seed, shared_data: Path) -> None:
    from vigil.video.watch import watch

    cameras.update_camera(inv_app, "lobby", keep_sightings=False)
    before = len(rows(inv_app))
    summary = watch(inv_app, None, camera="lobby", max_frames=60)
    assert summary["tracks"] >= 2 and len(rows(inv_app)) == before
    # An unregistered source (a file given to `vigil watch`) never keeps sightings.
    watch(inv_app, str(shared_data / "video" / "short_hamilton_clip.mp4"), max_frames=30)
    assert len(rows(inv_app)) == before


def test_retention_purges_old_sightings_and_their_crops(inv_app: App) -> None:
    cameras.update_camera(inv_app, "lobby", retention_days=7)
    clusters.update(inv_app)  # the lobby's sightings form clusters, which go with them
    lobby, hall = rows(inv_app, "lobby"), rows(inv_app, "hall")
    crops = {r.crop_sha256 for r in lobby if r.crop_sha256}
    assert len(crops) == 6 and all(inv_app.blobs.exists(c) for c in crops)
    now = datetime.now(UTC)
    assert retention.purge(inv_app, now=now + timedelta(days=6)).sightings == 0
    report = retention.purge(inv_app, now=now + timedelta(days=8))
    assert report.sightings == 6 and report.files >= 6
    assert rows(inv_app, "lobby") == [] and len(rows(inv_app, "hall")) == len(hall)
    assert not any(inv_app.blobs.exists(c) for c in crops)
    with inv_app.db.session() as s:
        assert list(s.scalars(select(Cluster))) == []  # a centroid is a face template: it goes too
    entry = audit.entries(inv_app, action="purge")[-1]
    assert entry.detail["sightings"] == 6
    # The hall sets no retention: its sightings go after the default (30 days).
    assert retention.purge(inv_app, now=now + timedelta(days=29)).sightings == 0
    assert retention.purge(inv_app, now=now + timedelta(days=31)).sightings == len(hall)
    assert rows(inv_app) == []


def test_erasure_removes_the_persons_sightings_matched_or_not(
    inv_app: App, seed: Seed, shared_data: Path
) -> None:
    hall = rows(inv_app, "hall")
    lin_crops = {r.crop_sha256 for r in hall if r.identity_id == seed.lin_id}
    report = erasure.erase_identity(inv_app, seed.lin_id, "test", reason="request 7")
    assert report.sightings == len(lin_crops) >= 2
    assert all(r.identity_id != seed.lin_id for r in rows(inv_app))
    assert not any(inv_app.blobs.exists(c) for c in lin_crops if c)
    assert audit.entries(inv_app, action="erasure")[-1].detail["sightings"] == report.sightings

    # Someone no watchlist matched: the sightings whose face matches theirs go too.
    galleries.create_gallery(inv_app, galleries.validate_spec(name="staff", kind="reference", purpose="test"))
    lfw = shared_data / "lfw-dev" / "Zhu_Rongji"
    zhu = enrolment.enroll(inv_app, "staff", "Zhu Rongji", [load_image(lfw / "Zhu_Rongji_0005.jpg")])
    lobby = rows(inv_app, "lobby")
    report = erasure.erase_identity(inv_app, zhu.identity_id, "test")
    assert report.sightings == 2
    assert len(rows(inv_app, "lobby")) == len(lobby) - 2
