"""Central matching (vigil.fleet.central): a sighting from a device that keeps no templates is matched
on the server and raises its alarm there, once, named with the device; the device's mirror holds no
template and records sightings on every camera."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from vigil.app import App
from vigil.core.config import Settings
from vigil.events.schemas import AnyEvent, SightingRecorded, event_id_for
from vigil.fleet import devices as fleet
from vigil.fleet.central import CentralMatcher
from vigil.fleet.config import device_config
from vigil.fleet.mirror import apply_config
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.storage.tables import AlarmRecord, Camera, Identity, Sighting, Template
from vigil.video import cameras
from vigil.video.sinks import CatalogWriter
from vigil.vision.image import load_image

FUTURE = date.today() + timedelta(days=30)


@pytest.fixture
def server(tmp_path: Path, engine, shared_data: Path) -> Iterator[tuple[App, bytes]]:  # type: ignore[no-untyped-def]
    """Lin-Manuel Miranda on watchlist ``wanted`` (every site) and ``station-only``; devices pole-c
    (no templates) and pole-t (templates), a camera each. Also the template of his photo."""
    app = App(Settings(data_dir=tmp_path / "server"), engine_override=engine)
    terms = {"purpose": "t", "legal_basis": "t", "authorized_by": "t", "expires_on": FUTURE}
    galleries.create_gallery(app, galleries.validate_spec(name="wanted", kind="watchlist", **terms))
    spec = galleries.validate_spec(name="station-only", kind="watchlist", sites=["station"], **terms)
    galleries.create_gallery(app, spec)
    face = enrolment.prepare_face(app, load_image(shared_data / "people" / "lin-manuel-miranda.png"))
    for g in ("wanted", "station-only"):
        enrolment.enroll_prepared(app, g, "Lin-Manuel Miranda", [face])
    fleet.add_device(app, "pole-c", site="market-street", actor="test", keeps_templates=False)
    fleet.add_device(app, "pole-t", site="market-street", actor="test")
    cameras.add_camera(app, "cam-c", "/media/c.mp4", device="pole-c")
    cameras.add_camera(app, "cam-t", "/media/t.mp4", device="pole-t")
    assert face.face.embedding is not None
    yield app, face.face.embedding[0].astype("<f4").tobytes()
    app.close()


def _sighting(app: App, camera: str, template: bytes, n: int = 1) -> SightingRecorded:
    with app.db.session() as s:
        camera_id = s.scalar(select(Camera.id).where(Camera.name == camera))
    now = datetime.now(UTC)
    return SightingRecorded(
        camera=camera, ts=now, event_id=event_id_for("sighting", camera, n), camera_id=camera_id,
        track_id=n, first_frame=10 * n, first_seen=now - timedelta(seconds=2), last_seen=now, frames=20,
        quality=0.9, model=app.engine.card.id, embedding=template, crop_jpeg=b"\xff\xd8 a crop",
    )  # fmt: skip


def test_a_sighting_of_a_templateless_device_raises_its_alarm_on_the_server(
    server: tuple[App, bytes],
) -> None:
    app, template = server
    seen: list[AnyEvent] = []
    matcher = CentralMatcher(app, seen.append)
    writer = CatalogWriter(app, device="pole-c")
    stored = writer.write(_sighting(app, "cam-c", template))
    assert stored is not None
    matcher(stored)
    alarms = [e for e in seen if e.type == "alarm"]
    assert len(alarms) == 1, "station-only is limited to another site"
    with app.db.session() as s:
        row = s.scalars(select(AlarmRecord)).one()
        assert (row.device_name, row.camera_name, row.identity_name) == (
            "pole-c",
            "cam-c",
            "Lin-Manuel Miranda",
        )
        assert row.crop_sha256 is not None and row.frame_index == 10
    with app.db.session() as s:
        assert s.scalar(select(func.count(Sighting.id))) == 0, "cam-c keeps no sightings: template gone"
    again = writer.write(_sighting(app, "cam-c", template))  # delivered twice
    assert again is not None
    matcher(again)  # matched again all the same: still one alarm
    with app.db.session() as s:
        assert s.scalar(select(func.count(AlarmRecord.id))) == 1
        assert s.scalar(select(func.count(Sighting.id))) == 0
        s.execute(update(Camera).where(Camera.name == "cam-c").values(keep_sightings=True))
    kept = writer.write(_sighting(app, "cam-c", template, 3))
    assert kept is not None
    matcher(kept)
    with app.db.session() as s:
        assert s.scalar(select(func.count(Sighting.id))) == 1, "a camera that opted in keeps its sightings"


def test_a_device_that_keeps_templates_is_not_matched_centrally(server: tuple[App, bytes]) -> None:
    app, template = server
    seen: list[AnyEvent] = []
    stored = CatalogWriter(app, device="pole-t").write(_sighting(app, "cam-t", template, 2))
    assert stored is not None
    CentralMatcher(app, seen.append)(stored)
    assert [e.type for e in seen] == ["sighting_recorded"]


def test_the_templateless_device_mirrors_no_template_and_records_sightings(
    server: tuple[App, bytes],
    tmp_path: Path,
    engine,  # type: ignore[no-untyped-def]
) -> None:
    app, _ = server
    worker = App(Settings(data_dir=tmp_path / "pole-c"), engine_override=engine)
    try:
        apply_config(worker, device_config(app, "pole-c"))
        with worker.db.session() as s:
            assert s.scalar(select(func.count(Template.id))) == 0
            assert s.scalar(select(func.count(Identity.id))) == 1, "the people, not their templates"
            assert list(s.scalars(select(Camera.keep_sightings))) == [True]
    finally:
        worker.close()
