"""Stranger rules on edge devices: the rule and the galleries it names reach a device that keeps
templates (it decides itself); a device that keeps none holds no rule, and the server decides its
strangers from the sightings it sends (central matching)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from test_central import _sighting, server  # noqa: F401 (the fixture)

from vigil.app import App
from vigil.core.config import Settings
from vigil.events.schemas import AnyEvent
from vigil.fleet.central import CentralMatcher
from vigil.fleet.config import device_config
from vigil.fleet.mirror import apply_config
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.storage.tables import AlarmKind, AlarmRecord, Camera
from vigil.video import cameras
from vigil.video.sinks import CatalogWriter
from vigil.video.strangers import StrangerRule, active_rule
from vigil.vision.image import load_image


def _staff(app: App, shared_data: Path) -> bytes:
    """A reference gallery ``staff`` (Barack Obama); the template of another photo of him."""
    galleries.create_gallery(app, galleries.validate_spec(name="staff", kind="reference", purpose="t"))
    enrolment.enroll(app, "staff", "Barack Obama", [load_image(shared_data / "people" / "obama.jpg")])
    face = enrolment.prepare_face(app, load_image(shared_data / "people" / "obama2.jpg"))
    assert face.face.embedding is not None
    return face.face.embedding[0].astype("<f4").tobytes()


def test_central_matching_raises_one_stranger_alarm_per_sighting(
    server: tuple[App, bytes],  # noqa: F811
    shared_data: Path,
) -> None:
    app, lin = server
    obama = _staff(app, shared_data)
    cameras.update_camera(app, "cam-c", strangers=StrangerRule(galleries=["staff"]))
    seen: list[AnyEvent] = []
    matcher = CentralMatcher(app, seen.append)
    writer = CatalogWriter(app, device="pole-c")
    for n, (template, quality) in enumerate([(lin, 0.9), (obama, 0.9), (lin, 0.5)], start=1):
        stored = writer.write(_sighting(app, "cam-c", template, n).model_copy(update={"quality": quality}))
        assert stored is not None
        matcher(stored)
    again = writer.write(_sighting(app, "cam-c", lin, 1))  # delivered twice
    assert again is not None
    matcher(again)
    with app.db.session() as s:
        rows = list(s.scalars(select(AlarmRecord).where(AlarmRecord.kind == AlarmKind.stranger)))
        assert [(r.track_id, r.device_name, r.gallery_id, r.identity_id) for r in rows] == [
            (1, "pole-c", None, None)
        ]
        assert (
            rows[0].crop_sha256 is not None and rows[0].retention_days == app.settings.stranger_retention_days
        )
        # Lin-Manuel Miranda is also on the watchlists: those alarms are raised as before.
        assert s.scalar(select(AlarmRecord.identity_name).where(AlarmRecord.kind == AlarmKind.match))


def test_the_rule_and_its_galleries_reach_the_device_that_keeps_templates(
    server: tuple[App, bytes],  # noqa: F811
    shared_data: Path,
    tmp_path: Path,
    engine,  # type: ignore[no-untyped-def]
) -> None:
    app, _ = server
    _staff(app, shared_data)
    galleries.create_gallery(app, galleries.validate_spec(name="others", kind="reference", purpose="t"))
    assert "staff" not in [g.name for g in device_config(app, "pole-t").galleries], "no rule names it yet"
    cameras.update_camera(
        app, "cam-t", strangers=StrangerRule(galleries=["staff"], hours="mon-fri 07:00-19:00")
    )
    cameras.update_camera(app, "cam-c", strangers=StrangerRule(galleries=["staff"]))
    config = device_config(app, "pole-t")
    staff = next(g for g in config.galleries if g.name == "staff")
    assert staff.kind == "reference" and staff.identities[0].templates, "templates for the device to match"
    assert "others" not in [g.name for g in config.galleries]
    worker = App(Settings(data_dir=tmp_path / "pole-t"), engine_override=engine)
    templateless = App(Settings(data_dir=tmp_path / "pole-c"), engine_override=engine)
    try:
        apply_config(worker, config)
        with worker.db.session() as s:
            cam = s.scalar(select(Camera).where(Camera.name == "cam-t"))
            assert cam is not None and cam.stranger_hours == "mon,tue,wed,thu,fri 07:00-19:00"
            cam_id = cam.id
        rule, suspended = active_rule(worker, cam_id)
        assert rule is not None and rule.galleries == ["staff"] and suspended is None
        apply_config(templateless, device_config(app, "pole-c"))
        with templateless.db.session() as s:
            assert list(s.scalars(select(Camera.stranger_galleries))) == [None], "the server decides"
    finally:
        worker.close()
        templateless.close()
