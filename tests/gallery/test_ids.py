"""Ids are never handed out twice (issue 16.1), on a new catalog and on one migrated from before."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import select

from vigil.app import App
from vigil.core.config import Settings
from vigil.gallery.galleries import GallerySpec, create_gallery, delete_gallery
from vigil.storage import db
from vigil.storage.tables import Gallery, GalleryKind, Identity, Template


def _recreate(app: App) -> tuple[int, int]:
    first = create_gallery(app, GallerySpec(name="a", kind=GalleryKind.reference)).id
    delete_gallery(app, "a")
    return first, create_gallery(app, GallerySpec(name="b", kind=GalleryKind.reference)).id


def test_a_deleted_gallerys_id_is_not_reused(tmp_path: Path) -> None:
    app = App(Settings(data_dir=tmp_path / "data"))
    try:
        first, second = _recreate(app)
        assert second > first
    finally:
        app.close()


def test_migration_keeps_the_rows_and_their_references(tmp_path: Path) -> None:
    """A catalog made at revision 0005 keeps every row and reference through the table rebuilds
    (foreign keys are off while they run, so no delete cascades) and stops reusing ids."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    engine = db.make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
        conn.exec_driver_sql(
            "INSERT INTO galleries (id, name, kind, created_at, generation, confirmations_required) "
            "VALUES (1, 'old', 'reference', '2026-01-01', 1, 1), (2, 'last', 'reference', '2026-01-01', 0, 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO identities (id, gallery_id, name, created_at) VALUES (7, 1, 'Ada', '2026-01-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO templates (id, identity_id, model_id, dimension, vector, quality, source_sha256, "
            "created_at) VALUES (5, 7, 'm', 1, x'00000000', 1.0, 'sha', '2026-01-01')"
        )
    engine.dispose()

    catalog = db.Database(url)
    try:
        with catalog.session() as s:
            assert s.scalars(select(Identity.name).where(Identity.gallery_id == 1)).all() == ["Ada"]
            assert s.scalar(select(Template.identity_id).where(Template.id == 5)) == 7
            s.delete(s.get(Gallery, 2))
        with catalog.session() as s:
            s.add(Gallery(name="new", kind=GalleryKind.reference))
        with catalog.session() as s:
            assert s.scalar(select(Gallery.id).where(Gallery.name == "new")) == 3
        with catalog.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    finally:
        catalog.close()
