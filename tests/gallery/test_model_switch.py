"""Switching face models re-embeds every gallery from the stored photos (issue 13, item 6), with the
real engines (dlib HOG + ResNet, and YuNet + MobileFaceNet on onnxruntime) on real lfw-dev photos:
every photo gets a template of the new model beside the old one, the old model matches until the
flip, photos enrolled mid-switch are caught, a photo the new detector finds no face in is reported and
does not block, a run stopped half-way resumes and redoes nothing, and, in a real process killed with
SIGKILL, a gallery of 1,000 people."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from model_cards import write_mobilefacenet_card
from vigil.app import App
from vigil.core.config import Settings
from vigil.core.errors import ConflictError, InputError, NoFaceError
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries, matching, modelstate
from vigil.storage import audit
from vigil.storage.tables import ActiveModel, Identity, ModelSwitchGallery, Photo, Template
from vigil.vision.engine import FaceEngine, build_engine
from vigil.vision.image import load_image
from vigil.vision.packs.active import active_model, active_pack, record_initial_pack

ROOT = Path(__file__).resolve().parents[2]
NO_FACE_FOR_HOG = "Calvin_Joseph_Coleman/Calvin_Joseph_Coleman_0001.jpg"
"""YuNet finds his face, dlib's HOG detector none."""


def custom_settings(data_dir: Path, models: Path, **kw: Any) -> Settings:
    """The ``custom`` pack of today: YuNet (2023mar) and MobileFaceNet with a card."""
    card = write_mobilefacenet_card(data_dir.parent / "mobilefacenet-test.json")
    return Settings(
        data_dir=data_dir,
        detector="yunet",
        embedder="onnx",
        onnx_detector_path=models / "face_detection_yunet_2023mar.onnx",
        onnx_embedder_path=models / "mobilefacenet.onnx",
        onnx_embedder_card=card,
        **kw,
    )


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory, shared_models: Path) -> FaceEngine:
    return build_engine(custom_settings(tmp_path_factory.mktemp("custom") / "data", shared_models))


def lfw_people(shared_data: Path, n: int, *, photos: int = 1) -> list[tuple[str, list[Path]]]:
    """The first ``n`` lfw-dev people (by name) with at least ``photos`` photos, and those photos."""
    out = []
    for d in sorted(p for p in (shared_data / "lfw-dev").iterdir() if p.is_dir()):
        files = sorted(d.glob("*.jpg"))
        if len(files) >= photos:
            out.append((d.name, files[:photos]))
        if len(out) == n:
            break
    return out


def enrol(app: App, gallery: str, people: list[tuple[str, list[Path]]]) -> None:
    if gallery not in {g.name for g in galleries.list_galleries(app)}:
        galleries.create_gallery(app, galleries.validate_spec(name=gallery, kind="reference"))
    for outcome in enrolment.enroll_people(app, gallery, people, load_image, largest=True):
        assert outcome.result is not None, outcome.errors


def bulk_enrol(app: App, gallery: str, people: list[tuple[str, list[Path]]], limit: int) -> None:
    """Enrol ``limit`` people fast (one photo each; a person whose photo has no face is left out, as
    enrolment refuses it): each photo's face found and embedded by the enrolment service
    (``prepare_face``), then every identity, photo and template stored in one transaction, as
    ``enroll_prepared`` stores them one person at a time."""
    info = galleries.create_gallery(app, galleries.validate_spec(name=gallery, kind="reference"))
    card = app.engine.card
    stored = 0
    with app.db.session() as s:
        for name, photos in people:
            if stored == limit:
                break
            try:
                face = enrolment.prepare_face(app, load_image(photos[0]), largest=True)
            except NoFaceError:
                continue
            stored += 1
            identity = Identity(gallery_id=info.id, name=name.replace("_", " "))
            s.add(identity)
            s.flush()
            photo = Photo(
                identity_id=identity.id,
                sha256=app.blobs.put(face.image.data),
                original_name=photos[0].name,
                width_px=face.image.size_wh[0],
                height_px=face.image.size_wh[1],
            )
            s.add(photo)
            s.flush()
            assert face.face.embedding is not None and face.face.quality is not None
            s.add(
                Template(
                    identity_id=identity.id,
                    photo_id=photo.id,
                    model_id=card.id,
                    dimension=card.dimension,
                    vector=face.face.embedding[0].astype("<f4").tobytes(),
                    quality=float(face.face.quality[0]),
                    source_sha256=photo.sha256,
                    box_xyxy=",".join(f"{v:.1f}" for v in face.face.xyxy[0]),
                )
            )
        enrolment.bump_generation(s, info.id)


def templates(app: App, model_id: str) -> dict[tuple[int, str], tuple[int, bytes]]:
    """(identity id, photo sha256) -> (template id, sealed vector) of one model."""
    with app.db.session() as s:
        rows = s.execute(
            select(Template.identity_id, Template.source_sha256, Template.id, Template.vector).where(
                Template.model_id == model_id
            )
        ).all()
    return {(i, sha): (tid, v) for i, sha, tid, v in rows}


def photo_keys(app: App) -> set[tuple[int, str]]:
    with app.db.session() as s:
        return {(i, sha) for i, sha in s.execute(select(Photo.identity_id, Photo.sha256))}


def actions(app: App) -> list[str]:
    return [e.action for e in audit.entries(app) if e.action.startswith("model_")]


@pytest.fixture
def old_app(tmp_path: Path, engine: FaceEngine) -> Iterator[App]:
    """An application on a fresh data directory whose engine (the one matching now) is dlib's."""
    a = App(Settings(data_dir=tmp_path / "data"), engine_override=engine)
    yield a
    a.close()


def test_a_switch_reembeds_every_photo_and_flips_only_at_the_end(
    old_app: App, engine: FaceEngine, custom: FaceEngine, shared_data: Path
) -> None:
    people = lfw_people(shared_data, 20, photos=2)
    enrol(old_app, "staff", [(name, photos[:1]) for name, photos in people])
    record_initial_pack(old_app, "dlib", engine.model_id, "test")
    record_initial_pack(old_app, "custom", custom.model_id, "test")  # a no-op now
    assert active_pack(old_app) == "dlib"
    before = templates(old_app, engine.model_id)

    status = modelstate.start_switch(old_app, "custom", custom.model_id, "user:admin")
    assert (status.state, status.from_pack, status.from_model_id) == ("running", "dlib", engine.model_id)
    assert (status.photos_total, status.photos_done, status.galleries_total) == (20, 0, 1)
    seen: list[modelstate.SwitchStatus] = []

    def progress(st: modelstate.SwitchStatus) -> None:
        seen.append(st)
        # Until the flip the old model matches, with its own templates, and the new pack is not active.
        assert active_pack(old_app) == "dlib"
        name, photos = people[0]
        found = matching.identify(old_app, load_image(photos[1]), ["staff"], top_k=1)
        assert found.model == engine.model_id and found.faces[0].matches[0].identity == name

    done = modelstate.run_switch(old_app, status.id, custom, progress, batch_photos=6)
    assert done.state == "done" and done.finished_at is not None and done.error is None
    assert [s.photos_done for s in seen] == [6, 12, 18, 20]  # a report after each committed batch
    assert (done.photos_done, done.photos_failed, done.galleries_done) == (20, 0, 1)
    assert active_model(old_app).model_id == custom.model_id  # type: ignore[union-attr]
    assert modelstate.current_switch(old_app) == done

    new = templates(old_app, custom.model_id)
    assert set(new) == photo_keys(old_app) == set(before)  # one new template per photo
    assert templates(old_app, engine.model_id) == before  # the old ones untouched
    new_app = App(old_app.settings, engine_override=custom)
    try:
        top1 = 0
        for name, photos in people:
            same = matching.identify(new_app, load_image(photos[0]), ["staff"], top_k=1).faces[0]
            assert same.matches[0].identity == name and same.matches[0].score > 0.99
            other = matching.identify(new_app, load_image(photos[1]), ["staff"], top_k=1).faces[0]
            top1 += other.matches[0].identity == name
        assert top1 >= 17, top1  # the second photos of the people are found with the new model too
    finally:
        new_app.close()
    assert actions(old_app) == [
        "model_pack_initial",
        "model_switch_start",
        "model_switch_gallery",
        "model_switch_flip",
    ]
    flip = next(e for e in audit.entries(old_app) if e.action == "model_switch_flip")
    assert flip.target_name == "custom" and flip.detail["from_pack"] == "dlib"
    assert audit.verify(old_app).ok


def test_photos_enrolled_during_the_switch_are_caught(
    old_app: App, engine: FaceEngine, custom: FaceEngine, shared_data: Path
) -> None:
    people = lfw_people(shared_data, 11)
    enrol(old_app, "a", people[:4])
    enrol(old_app, "b", people[4:8])
    status = modelstate.start_switch(old_app, "custom", custom.model_id, "test")
    late = {0: [("a", people[8])], 1: [("a", people[9]), ("b", people[10])]}

    def progress(st: modelstate.SwitchStatus) -> None:
        # Enrolled with the old engine: into gallery a while it is re-embedded, then into a once it
        # is complete (while b is re-embedded) and into b.
        for gallery, person in late.pop(st.galleries_done, []):
            enrol(old_app, gallery, [person])

    done = modelstate.run_switch(old_app, status.id, custom, progress, batch_photos=4)
    assert done.state == "done" and done.photos_total == done.photos_done == 11
    assert not late and set(templates(old_app, custom.model_id)) == photo_keys(old_app)
    with old_app.db.session() as s:
        rows = s.execute(select(ModelSwitchGallery.gallery_id, ModelSwitchGallery.photos)).all()
    assert sorted(p for _, p in rows) == [5, 6]
    catch_ups = [e.detail["catch_up"] for e in audit.entries(old_app) if e.action == "model_switch_gallery"]
    assert catch_ups == [False, False, True]  # gallery a again, for the photo enrolled after it was done


def test_a_photo_without_a_face_for_the_new_detector_is_reported_and_does_not_block(
    tmp_path: Path, engine: FaceEngine, custom: FaceEngine, shared_data: Path
) -> None:
    app = App(Settings(data_dir=tmp_path / "data"), engine_override=custom)
    try:
        faceless = shared_data / "lfw-dev" / NO_FACE_FOR_HOG
        enrol(app, "staff", [*lfw_people(shared_data, 5), ("Calvin Joseph Coleman", [faceless])])
        status = modelstate.start_switch(app, "dlib", engine.model_id, "test")
        done = modelstate.run_switch(app, status.id, engine)
        assert done.state == "done" and active_pack(app) == "dlib"
        assert (done.photos_total, done.photos_done, done.photos_failed) == (6, 6, 1)
        [failure] = done.failed
        assert (failure.gallery, failure.identity, failure.photo) == (
            "staff",
            "Calvin Joseph Coleman",
            faceless.name,
        )
        assert "found no face" in failure.reason
        assert len(templates(app, engine.model_id)) == 5
        flip = next(e for e in audit.entries(app) if e.action == "model_switch_flip")
        assert flip.detail["failed"] == 1
    finally:
        app.close()


def test_a_stopped_run_resumes_and_redoes_nothing(
    old_app: App, custom: FaceEngine, shared_data: Path
) -> None:
    enrol(old_app, "staff", lfw_people(shared_data, 10))
    status = modelstate.start_switch(old_app, "custom", custom.model_id, "test")

    def stop(st: modelstate.SwitchStatus) -> None:
        if st.photos_done >= 6:
            raise modelstate.SwitchInterruptedError

    with pytest.raises(modelstate.SwitchInterruptedError):
        modelstate.run_switch(old_app, status.id, custom, stop, batch_photos=3)
    half = templates(old_app, custom.model_id)
    assert len(half) == 6 and modelstate.current_switch(old_app).state == "running"  # type: ignore[union-attr]
    assert active_pack(old_app) is None  # nothing flipped
    assert modelstate.start_switch(old_app, "custom", custom.model_id, "test").id == status.id  # resume
    done = modelstate.run_switch(old_app, status.id, custom, batch_photos=3)
    assert done.state == "done" and done.photos_done == 10
    after = templates(old_app, custom.model_id)
    assert len(after) == 10 and all(after[k] == v for k, v in half.items())  # the first six kept as they were
    assert actions(old_app).count("model_switch_start") == 1


def test_refusals_cancel_and_a_second_runner(
    old_app: App, engine: FaceEngine, custom: FaceEngine, shared_data: Path
) -> None:
    enrol(old_app, "staff", lfw_people(shared_data, 4))
    record_initial_pack(old_app, "dlib", engine.model_id, "test")
    with pytest.raises(ConflictError, match="already the active"):
        modelstate.start_switch(old_app, "dlib", engine.model_id, "test")
    with pytest.raises(InputError, match="not a model pack name"):
        modelstate.start_switch(old_app, "../x", "m", "test")
    status = modelstate.start_switch(old_app, "custom", custom.model_id, "test")
    with pytest.raises(ConflictError, match="a switch to the custom pack is running"):
        modelstate.start_switch(old_app, "edgeface-xs", "edgeface-xs-q", "test")
    with pytest.raises(InputError, match="makes 'dlib-resnet-v1' templates"):
        modelstate.run_switch(old_app, status.id, engine)

    def second_runner(st: modelstate.SwitchStatus) -> None:
        with pytest.raises(ConflictError, match="being run by process"):
            modelstate.run_switch(old_app, status.id, custom)
        modelstate.cancel_switch(old_app, "user:admin")

    ended = modelstate.run_switch(old_app, status.id, custom, second_runner, batch_photos=2)
    assert ended.state == "cancelled" and ended.photos_done == 2
    assert active_pack(old_app) == "dlib"
    with pytest.raises(ConflictError, match="no model switch is running"):
        modelstate.cancel_switch(old_app, "user:admin")
    again = modelstate.start_switch(old_app, "custom", custom.model_id, "test")
    assert again.id != status.id and again.photos_done == 2  # the templates made before are reused
    assert modelstate.run_switch(old_app, again.id, custom).state == "done"
    assert actions(old_app).count("model_switch_cancel") == 1
    assert audit.verify(old_app).ok


def test_a_run_killed_right_after_the_flip_audits_it_later(
    old_app: App, custom: FaceEngine, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flip's audit entry follows its commit: a process killed in between (here: interrupted as
    the entry is written) leaves it to whoever looks next (the server's start, or a resumed run)."""
    enrol(old_app, "staff", lfw_people(shared_data, 2))
    status = modelstate.start_switch(old_app, "custom", custom.model_id, "test")
    record = audit.record

    def killed_at_the_flip(app: App, actor: str, action: str, **kw: Any) -> int:
        if action == "model_switch_flip":
            raise KeyboardInterrupt  # like SIGKILL, nothing catches it
        return record(app, actor, action, **kw)

    monkeypatch.setattr(audit, "record", killed_at_the_flip)
    with pytest.raises(KeyboardInterrupt):
        modelstate.run_switch(old_app, status.id, custom)
    monkeypatch.setattr(audit, "record", record)
    assert active_pack(old_app) == "custom" and "model_switch_flip" not in actions(old_app)
    modelstate.audit_pending(old_app)
    modelstate.audit_pending(old_app)  # once only
    assert actions(old_app).count("model_switch_flip") == 1 and audit.verify(old_app).ok
    assert modelstate.run_switch(old_app, status.id, custom).state == "done"  # nothing left to do
    assert actions(old_app).count("model_switch_flip") == 1


def test_encrypted_photos_and_templates_are_re_embedded(
    tmp_path: Path, engine: FaceEngine, custom: FaceEngine, shared_data: Path
) -> None:
    from cryptography.fernet import Fernet

    settings = Settings(data_dir=tmp_path / "data", encryption_key=Fernet.generate_key().decode())
    app = App(settings, engine_override=engine)
    try:
        people = lfw_people(shared_data, 3)
        enrol(app, "staff", people)
        blob = next(p for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file())
        assert blob.read_bytes().startswith(b"VGLENC1:")
        status = modelstate.start_switch(app, "custom", custom.model_id, "test")
        assert modelstate.run_switch(app, status.id, custom).photos_failed == 0
        with app.db.session() as s:
            raw = s.connection().exec_driver_sql(
                "SELECT vector FROM templates WHERE model_id = ?", (custom.model_id,)
            )
            assert all(bytes(r[0]).startswith(b"VGLENC1:") for r in raw)  # sealed like the old ones
        new_app = App(settings, engine_override=custom)
        found = matching.identify(new_app, load_image(people[0][1][0]), ["staff"], top_k=1)
        assert found.faces[0].decision == people[0][0]
        new_app.close()
    finally:
        app.close()


def test_the_schema_matches_the_models_and_migrates_down(tmp_path: Path) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext

    from vigil.storage import db
    from vigil.storage.tables import Base

    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog = db.Database(url)
    mine = {"model_switches", "active_model", "model_switch_galleries", "model_switch_failures"}
    with catalog.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        conn.rollback()
        cfg = Config()
        cfg.set_main_option("script_location", str(db.MIGRATIONS))
        cfg.attributes["connection"] = conn
        with conn.begin():
            command.downgrade(cfg, "0007")
        left = set(conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'").scalars())
    catalog.close()
    assert not [d for d in diff if any(t in repr(d) for t in mine)], diff
    assert not mine & left and "templates" in left
    again = db.Database(url)  # migrated up again on open
    try:
        with again.session() as s:
            assert s.scalar(select(func.count(ActiveModel.id))) == 0
    finally:
        again.close()


# -- a real process killed with SIGKILL ------------------------------------------------------------
def _use(data_dir: Path, pack: str) -> subprocess.Popen[str]:
    """`vigil models use PACK` in its own process, as an operator runs it."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "VIGIL_MODEL_DOWNLOAD": "false",
        "VIGIL_THREADS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "vigil", "--data-dir", str(data_dir), "models", "use", pack, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _done(app: App) -> int:
    current = modelstate.current_switch(app)
    return current.photos_done if current is not None else 0


@pytest.mark.slow
def test_a_gallery_of_1000_people_switches_with_progress_and_survives_kill_9(
    tmp_path: Path, engine: FaceEngine, shared_data: Path, shared_models: Path
) -> None:
    """The issue's "done when": 1,000 lfw-dev people (one photo each) enrolled with dlib, the
    edgeface-xs pack installed from the shared models, then `vigil models use edgeface-xs` in a real
    process, killed with SIGKILL once it is partway; run again, it finishes the job."""
    from vigil.vision.packs.service import install_pack

    data = tmp_path / "data"
    app = App(Settings(data_dir=data, model_download=False), engine_override=engine)
    t0 = time.monotonic()
    bulk_enrol(app, "everyone", lfw_people(shared_data, 1100), 1000)
    enrolled_s = time.monotonic() - t0
    record_initial_pack(app, "dlib", engine.model_id, "test")
    install_pack(app, "edgeface-xs", "test", from_dir=shared_models)
    old = templates(app, engine.model_id)
    assert len(old) == 1000

    t1 = time.monotonic()
    first = _use(data, "edgeface-xs")
    progress = [0]
    while first.poll() is None and progress[-1] < 300:  # the progress, as GET /api/models/switch shows it
        time.sleep(0.05)
        progress.append(_done(app))
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL, first.communicate()
    killed_at = _done(app)
    assert 300 <= killed_at < 1000 and len(set(progress)) > 3  # it moved on in steps
    assert modelstate.current_switch(app).state == "running"  # type: ignore[union-attr]
    assert active_pack(app) == "dlib"  # the old model still matches everything

    second = _use(data, "edgeface-xs")
    out, err = second.communicate(timeout=300)
    switch_s = time.monotonic() - t1
    assert second.returncode == 0, err
    assert json.loads(out)["state"] == "done"
    status = modelstate.current_switch(app)
    assert status is not None and status.photos_total == status.photos_done == 1000
    new = templates(app, "edgeface-xs-q")
    with app.db.session() as s:
        per_photo = s.execute(
            select(func.count())
            .where(Template.model_id == "edgeface-xs-q")
            .group_by(Template.identity_id, Template.source_sha256)
        ).all()
    assert {n for (n,) in per_photo} == {1}  # no duplicates
    assert len(new) + status.photos_failed == 1000 and status.photos_failed < 20
    assert {(f.identity_id, f.sha256) for f in status.failed} == photo_keys(app) - set(new)
    assert templates(app, engine.model_id) == old  # the old templates untouched
    assert active_pack(app) == "edgeface-xs"
    assert actions(app).count("model_switch_flip") == 1 and actions(app).count("model_switch_start") == 1
    assert audit.verify(app).ok
    app.close()
    print(f"enrolment {enrolled_s:.0f} s; switch, killed at {killed_at}, resumed: {switch_s:.0f} s")


def test_an_engine_left_behind_by_a_flip_enrols_nothing(tmp_path: Path, shared_data: Path) -> None:
    """A process still running the old engine after another one flipped the active model is refused:
    its templates would never be matched (and the switch that would re-embed them is over)."""
    app = App(Settings(data_dir=tmp_path / "data", model_download=False))
    try:
        people = lfw_people(shared_data, 2)
        enrol(app, "staff", people[:1])
        assert app.pack == "dlib" and active_pack(app) == "dlib"
        with app.db.session() as s:  # another process flipped to edgeface-xs
            row = s.get(ActiveModel, 1)
            assert row is not None
            row.pack, row.model_id = "edgeface-xs", "edgeface-xs-q"
            s.commit()
        with pytest.raises(ConflictError, match="changed to 'edgeface-xs'"):
            enrol(app, "staff", people[1:])
        with app.db.session() as s:
            assert s.scalar(select(func.count()).select_from(Identity)) == 1
    finally:
        app.close()
