from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from vigil.app import App
from vigil.core.errors import (
    ConflictError,
    ForbiddenError,
    InputError,
    MultipleFacesError,
    NoFaceError,
    NotFoundError,
)
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries, identities
from vigil.storage.db import MIGRATIONS
from vigil.storage.index import IndexKey
from vigil.storage.milvus import MilvusStore
from vigil.storage.tables import Gallery
from vigil.vision.image import load_image

pytestmark = pytest.mark.catalogs

FUTURE = date.today() + timedelta(days=90)


def _reference(app: App, name: str = "staff") -> None:
    galleries.create_gallery(app, galleries.validate_spec(name=name, kind="reference"))


def test_the_catalog_is_migrated_and_sqlite_in_wal_mode(app: App) -> None:
    sqlite = app.db.engine.dialect.name == "sqlite"
    with app.db.engine.connect() as conn:
        if sqlite:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        newest = max(p.name[:4] for p in (MIGRATIONS / "versions").glob("0*.py"))
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == newest
    assert (app.settings.data_dir / "vigil.db").exists() == sqlite


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "watchlist", "purpose": "p", "authorized_by": "a", "expires_on": FUTURE}, "--legal-basis"),
        ({"kind": "watchlist", "purpose": "p", "legal_basis": "l", "authorized_by": "a"}, "--expires"),
        ({"kind": "watchlist", "legal_basis": "l", "authorized_by": "a", "expires_on": FUTURE}, "--purpose"),
        ({"kind": "watchlist", "purpose": "p", "legal_basis": "l", "expires_on": FUTURE}, "--authorized-by"),
        ({"kind": "reference", "expires_on": date.today() - timedelta(days=1)}, "not in the future"),
        ({"kind": "blacklist"}, "kind"),
        ({"kind": "reference", "name": "  "}, "name"),
    ],
)
def test_invalid_galleries_are_refused(app: App, fields: dict, message: str) -> None:
    fields = {"name": "g", **fields}
    with pytest.raises(InputError, match=message):
        galleries.validate_spec(**fields)


def test_watchlist_lifecycle(app: App) -> None:
    spec = galleries.validate_spec(
        name="wanted",
        kind="watchlist",
        purpose="find suspects of case 12",
        legal_basis="court order 12/2026",
        authorized_by="Judge Smith",
        expires_on=FUTURE,
    )
    info = galleries.create_gallery(app, spec)
    assert info.kind == "watchlist" and not info.expired and info.expires_on == FUTURE
    with pytest.raises(ConflictError):
        galleries.create_gallery(app, spec)
    assert [g.name for g in galleries.list_galleries(app)] == ["wanted"]
    with pytest.raises(NotFoundError, match="known galleries: wanted"):
        galleries.show_gallery(app, "nope")


def test_enrol_is_idempotent_and_content_addressed(app: App, people: Path) -> None:
    _reference(app)
    photo = load_image(people / "obama.jpg")
    first = enrolment.enroll(app, "staff", "Barack Obama", [photo])
    assert first.created and first.photos[0].status == "enrolled"
    again = enrolment.enroll(app, "staff", "Barack Obama", [photo])
    assert not again.created and again.photos[0].status == "already-enrolled"
    info = galleries.show_gallery(app, "staff")
    assert (info.identities, info.templates, info.photos) == (1, 1, 1)
    assert app.blobs.get(photo.sha256) == photo.data
    # the same photo under another name in the same gallery is a conflict, and nothing is stored
    with pytest.raises(ConflictError, match="already enrolled as 'Barack Obama'"):
        enrolment.enroll(app, "staff", "Someone Else", [photo])
    assert galleries.show_gallery(app, "staff").identities == 1


def test_enrolment_is_all_or_nothing(app: App, people: Path, tmp_path: Path) -> None:
    _reference(app)
    good = load_image(people / "obama.jpg")
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    with pytest.raises(NoFaceError, match=r"blank\.png: no face found"):
        enrolment.enroll(app, "staff", "Barack Obama", [good, load_image(blank)])
    with pytest.raises(MultipleFacesError, match="--largest"):
        enrolment.enroll(app, "staff", "Barack Obama", [good, load_image(people / "two_people.jpg")])
    info = galleries.show_gallery(app, "staff")
    assert (info.identities, info.templates, info.photos) == (0, 0, 0)
    assert not app.blobs.exists(good.sha256)
    # --largest takes the bigger face of a group photo
    result = enrolment.enroll(app, "staff", "Largest", [load_image(people / "two_people.jpg")], largest=True)
    assert result.photos[0].faces_found == 2


def test_unknown_and_expired_galleries(app: App, people: Path) -> None:
    photo = load_image(people / "obama.jpg")
    with pytest.raises(NotFoundError, match="no gallery named 'ghost'"):
        enrolment.enroll(app, "ghost", "X", [photo])
    galleries.create_gallery(
        app,
        galleries.validate_spec(
            name="old", kind="watchlist", purpose="p", legal_basis="l", authorized_by="a", expires_on=FUTURE
        ),
    )
    with app.db.session() as s:  # let it expire
        s.query(Gallery).filter_by(name="old").update({"expires_on": date.today() - timedelta(days=1)})
    assert galleries.show_gallery(app, "old").expired
    with pytest.raises(ForbiddenError, match="expired"):
        enrolment.enroll(app, "old", "X", [photo])


def _index_ids(app: App, gallery: str) -> set[int]:
    with app.db.session() as s:
        g = s.query(Gallery).filter_by(name=gallery).one()
        gid, gen = g.id, g.generation
    index = app.indexes.get(
        IndexKey(gid, app.engine.model_id),
        gen,
        128,
        lambda: enrolment.load_templates(app, gid, app.engine.model_id),
    )
    return set(index.ids().tolist())


def test_index_follows_adds_and_removals_and_rebuilds(app: App, people: Path) -> None:
    _reference(app)
    a = enrolment.enroll(
        app, "staff", "Obama", [load_image(people / "obama.jpg"), load_image(people / "obama2.jpg")]
    )
    b = enrolment.enroll(app, "staff", "Biden", [load_image(people / "biden.jpg")])
    ids_all = _index_ids(app, "staff")
    assert len(ids_all) == 3
    removed = identities.remove_identity(app, "staff", "Obama")
    assert removed.templates == 2
    assert len(_index_ids(app, "staff")) == 1
    assert not app.blobs.exists(load_image(people / "obama.jpg").sha256)  # photos really gone
    assert app.blobs.exists(load_image(people / "biden.jpg").sha256)
    # a stale index on disk (e.g. a process killed after commit) is rebuilt from the catalog
    with app.db.session() as s:
        s.query(Gallery).filter_by(name="staff").update({"generation": Gallery.generation + 5})
    fresh = App(app.settings, engine_override=app.engine)
    assert _index_ids(fresh, "staff") == _index_ids(app, "staff")
    # a corrupt index file is rebuilt too
    for f in app.settings.index_dir.glob("*.faiss"):
        f.write_bytes(b"garbage")
    with app.db.session() as s:
        s.query(Gallery).filter_by(name="staff").update({"generation": Gallery.generation})
    fresh2 = App(app.settings, engine_override=app.engine)
    assert len(_index_ids(fresh2, "staff")) == 1
    assert a.identity_id != b.identity_id
    with pytest.raises(NotFoundError):
        identities.remove_identity(app, "staff", "Obama")


def _stored_indexes(app: App) -> list[str]:
    """The index files (FAISS) or the gallery collections (Milvus) of this test's galleries."""
    if isinstance(app.indexes, MilvusStore):
        prefix = f"{app.settings.vector_prefix}_g"
        return [n for n in app.indexes._client.list_collections() if n.startswith(prefix)]
    return [p.name for p in app.settings.index_dir.glob("*")]


def test_delete_gallery_removes_photos_and_indexes(app: App, people: Path) -> None:
    _reference(app)
    photo = load_image(people / "biden.jpg")
    enrolment.enroll(app, "staff", "Biden", [photo])
    assert _stored_indexes(app)
    galleries.delete_gallery(app, "staff")
    assert not app.blobs.exists(photo.sha256)
    assert not _stored_indexes(app)
    assert galleries.list_galleries(app) == []


def test_template_vectors_round_trip(app: App, people: Path) -> None:
    _reference(app)
    photo = load_image(people / "biden.jpg")
    enrolment.enroll(app, "staff", "Biden", [photo])
    gid = galleries.show_gallery(app, "staff").id
    _, vectors = enrolment.load_templates(app, gid, app.engine.model_id)
    expected = app.engine.analyze(photo.bgr).embedding
    np.testing.assert_allclose(vectors[0], expected[0], atol=1e-6)
