"""Protection at rest: with a key set, photos, templates and index files are unreadable on disk, vigil
works as before, and a missing or wrong key gives a clear error instead of wrong data."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vigil.app import App
from vigil.core import crypto
from vigil.core.config import Settings
from vigil.core.errors import ConfigError
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries, matching
from vigil.vision.image import load_image


@pytest.fixture(autouse=True)
def _reset_cipher() -> Iterator[None]:
    yield
    crypto.configure(None)


def _app(data: Path, engine, key: str | None) -> App:  # type: ignore[no-untyped-def]
    return App(Settings(data_dir=data, encryption_key=key), engine_override=engine)


def test_encrypted_at_rest(tmp_path: Path, engine, people: Path) -> None:  # type: ignore[no-untyped-def]
    key = crypto.new_key()
    data = tmp_path / "data"
    app = _app(data, engine, key)
    photo = load_image(people / "obama.jpg")
    galleries.create_gallery(app, galleries.validate_spec(name="staff", kind="reference"))
    enrolment.enroll(app, "staff", "Barack Obama", [photo])
    probe = load_image(people / "obama2.jpg")
    assert matching.identify(app, probe, ["staff"]).faces[0].decision == "Barack Obama"
    vector = np.frombuffer(enrolment.load_templates(app, 1, app.engine.card.id)[1].tobytes(), np.uint8)
    app.close()

    blob = app.blobs.path(photo.sha256).read_bytes()
    assert blob.startswith(crypto.MAGIC) and photo.data[:64] not in blob
    raw = (data / "vigil.db").read_bytes()
    assert vector[:32].tobytes() not in raw  # the template is not in the database file in clear
    with sqlite3.connect(data / "vigil.db") as conn:
        (stored,) = conn.execute("SELECT vector FROM templates").fetchone()
    assert stored.startswith(crypto.MAGIC)
    for index_file in (data / "index").glob("*.faiss"):
        assert index_file.read_bytes().startswith(crypto.MAGIC)

    # a fresh process with the key: everything works, indexes reopen from their encrypted files
    again = _app(data, engine, key)
    assert again.blobs.get(photo.sha256) == photo.data
    assert matching.identify(again, probe, ["staff"]).faces[0].decision == "Barack Obama"
    again.close()

    # without the key, or with another: a clear error, never wrong data
    for wrong in (None, crypto.new_key()):
        other = _app(data, engine, wrong)
        with pytest.raises(ConfigError, match="VIGIL_ENCRYPTION_KEY"):
            other.blobs.get(photo.sha256)
        other.close()


def test_a_bad_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a valid key"):
        App(Settings(data_dir=tmp_path, encryption_key="not-a-key"))
