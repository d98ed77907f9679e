"""The worker's mirror of its configuration (vigil.fleet.mirror): the server's ids, templates as sent,
a gallery that leaves the configuration deleted at once with its index files, a changed one replaced,
one ``fleet_sync`` audit entry per change, and a refusal to run another face model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from vigil.app import App
from vigil.core.config import Settings
from vigil.core.errors import ConfigError
from vigil.fleet import devices as fleet
from vigil.fleet.config import DeviceConfig, device_config
from vigil.fleet.mirror import apply_config, check_model
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.gallery.identities import remove_identity
from vigil.gallery.matching import identify
from vigil.storage import audit
from vigil.storage.tables import AuditEntry, Camera, Gallery, Identity, Template
from vigil.video import cameras
from vigil.vision.image import load_image

FUTURE = date.today() + timedelta(days=30)


def _watchlist(app: App, name: str, **terms: object) -> None:
    terms = {"purpose": "t", "legal_basis": "t", "authorized_by": "t", "expires_on": FUTURE, **terms}
    galleries.create_gallery(app, galleries.validate_spec(name=name, kind="watchlist", **terms))


@pytest.fixture
def pair(tmp_path: Path, engine, shared_data: Path) -> Iterator[tuple[App, App]]:  # type: ignore[no-untyped-def]
    """A server catalog (Lin-Manuel Miranda on watchlists ``wanted`` and ``other-site``, device pole-17
    at market-street with camera gate) and an empty worker catalog, on the same engine."""
    server = App(Settings(data_dir=tmp_path / "server"), engine_override=engine)
    worker = App(Settings(data_dir=tmp_path / "worker"), engine_override=engine)
    # Ids on the server that the worker's fresh catalog would not hand out by itself.
    _watchlist(server, "decoy")
    galleries.delete_gallery(server, "decoy")
    _watchlist(server, "wanted")
    _watchlist(server, "other-site", sites=["station"])
    face = enrolment.prepare_face(server, load_image(shared_data / "people" / "lin-manuel-miranda.png"))
    enrolment.enroll_prepared(server, "wanted", "Nobody Yet", [])
    enrolment.enroll_prepared(server, "wanted", "Lin-Manuel Miranda", [face])
    enrolment.enroll_prepared(server, "other-site", "Lin-Manuel Miranda", [face])
    fleet.add_device(server, "pole-17", site="market-street", actor="test")
    cameras.add_camera(server, "decoy-cam", "rtsp://127.0.0.1:9/x")
    cameras.add_camera(server, "gate", "/media/gate.mp4", site="market-street", device="pole-17")
    yield server, worker
    server.close()
    worker.close()


def _syncs(app: App) -> list[dict[str, object]]:
    with app.db.session() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action == "fleet_sync").order_by(AuditEntry.id))
        return [json.loads(e.detail) for e in rows]


def test_the_mirror_keeps_the_servers_ids_and_matches_as_the_server_does(
    pair: tuple[App, App], shared_data: Path
) -> None:
    server, worker = pair
    config = device_config(server, "pole-17")
    change = apply_config(worker, config)
    assert change.galleries_added == ["wanted"] and change.cameras_added == ["gate"]
    assert change.templates == 1 and change.summary() == "galleries +wanted; cameras +gate"
    with server.db.session() as s:
        server_cam = s.scalar(select(Camera.id).where(Camera.name == "gate"))
        server_gallery = s.scalar(select(Gallery.id).where(Gallery.name == "wanted"))
    with worker.db.session() as s:
        assert s.scalar(select(Camera.id).where(Camera.name == "gate")) == server_cam != 1
        assert s.scalar(select(Gallery.id).where(Gallery.name == "wanted")) == server_gallery != 1
        assert s.scalar(select(func.count(Gallery.id))) == 1, "other-site is limited to another site"
        assert s.scalar(select(func.count(Template.id)).where(Template.photo_id.is_(None))) == 1
    photo = load_image(shared_data / "people" / "lin-manuel-miranda.png")
    there, here = identify(server, photo, ["wanted"]), identify(worker, photo, ["wanted"])
    assert here.faces[0].decision == "Lin-Manuel Miranda"
    assert here.faces[0].matches[0].identity_id == there.faces[0].matches[0].identity_id
    assert apply_config(worker, config).changed is False, "the same config changes nothing"
    syncs = _syncs(worker)
    assert len(syncs) == 1 and syncs[0]["galleries_added"] == ["wanted"]
    with worker.db.session() as s:
        actions = set(s.scalars(select(AuditEntry.action)))
    assert "enrol" not in actions and "gallery_create" not in actions, "mirroring is not enrolment"
    assert audit.verify(worker).ok


def test_a_gallery_that_leaves_the_config_is_deleted_at_once_with_its_index(
    pair: tuple[App, App], shared_data: Path
) -> None:
    server, worker = pair
    apply_config(worker, device_config(server, "pole-17"))
    photo = load_image(shared_data / "people" / "lin-manuel-miranda.png")
    assert identify(worker, photo).faces[0].decision == "Lin-Manuel Miranda"  # builds the index file
    index_files = list(worker.settings.index_dir.glob("g*-*"))
    assert index_files
    galleries.update_gallery(server, "wanted", {"sites": ["station"]})  # now limited to another site
    seen_before_delete: list[int] = []

    def before_delete() -> None:  # the worker tells its pipelines here; the gallery no longer matches
        result = identify(worker, photo)
        seen_before_delete.append(sum(len(f.matches) for f in result.faces))

    change = apply_config(worker, device_config(server, "pole-17"), before_delete=before_delete)
    assert change.galleries_removed == ["wanted"] and seen_before_delete == [0]
    with worker.db.session() as s:
        assert s.scalar(select(func.count(Gallery.id))) == 0
        assert s.scalar(select(func.count(Identity.id))) == 0
        assert s.scalar(select(func.count(Template.id))) == 0
    assert not [p for p in index_files if p.exists()]
    assert _syncs(worker)[-1]["galleries_removed"] == ["wanted"]


def test_a_changed_gallery_is_replaced_and_a_removed_camera_goes(pair: tuple[App, App]) -> None:
    server, worker = pair
    apply_config(worker, device_config(server, "pole-17"))
    remove_identity(server, "wanted", "Lin-Manuel Miranda")
    change = apply_config(worker, device_config(server, "pole-17"))
    assert change.galleries_replaced == ["wanted"]
    with worker.db.session() as s:
        assert list(s.scalars(select(Identity.name))) == ["Nobody Yet"]
        assert s.scalar(select(func.count(Template.id))) == 0


def test_renamed_cameras_swap_names_without_a_conflict(pair: tuple[App, App]) -> None:
    server, worker = pair
    config = device_config(server, "pole-17")
    two = config.model_copy(
        update={
            "cameras": [
                config.cameras[0],
                config.cameras[0].model_copy(update={"id": 999, "name": "yard", "url": "/media/y.mp4"}),
            ]
        }
    )
    apply_config(worker, two)
    a, b = two.cameras
    swapped = two.model_copy(
        update={"cameras": [a.model_copy(update={"name": b.name}), b.model_copy(update={"name": a.name})]}
    )
    change = apply_config(worker, swapped)
    assert sorted(change.cameras_updated) == ["gate", "yard"]
    with worker.db.session() as s:
        assert {i: n for i, n in s.execute(select(Camera.id, Camera.name))} == {a.id: "yard", 999: "gate"}
    apply_config(worker, swapped.model_copy(update={"cameras": [swapped.cameras[0]]}))
    with worker.db.session() as s:
        assert list(s.scalars(select(Camera.name))) == ["yard"]


def test_another_face_model_is_refused_with_what_to_run(pair: tuple[App, App]) -> None:
    server, worker = pair
    config = device_config(server, "pole-17")
    check_model(worker, config)  # the same engine: fine
    other = DeviceConfig.model_validate(
        {**config.model_dump(), "model_id": "edgeface-xs-q", "pack": "edgeface-xs"}
    )
    with pytest.raises(ConfigError) as e:
        check_model(worker, other)
    assert "edgeface-xs-q" in str(e.value) and "models install edgeface-xs" in (e.value.hint or "")
    assert "models use edgeface-xs" in (e.value.hint or "")


def test_a_template_of_the_wrong_size_is_refused_and_nothing_is_written(pair: tuple[App, App]) -> None:
    server, worker = pair
    config = device_config(server, "pole-17")
    g = config.galleries[0]
    bad_people = [p.model_copy(update={"templates": ["AAAAAAA="]}) for p in g.identities]  # 5 bytes
    bad = config.model_copy(update={"galleries": [g.model_copy(update={"identities": bad_people})]})
    with pytest.raises(ConfigError, match="template of 5 bytes"):
        apply_config(worker, bad)
    with worker.db.session() as s:
        assert s.scalar(select(func.count(Gallery.id))) == 0 and s.scalar(select(func.count(Camera.id))) == 0
