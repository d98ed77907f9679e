"""Galleries on Milvus (issue 15, item 3), beyond the gallery tests that run on both backends: an
erased person's vectors leave Milvus, a collection out of step with the catalog (or dropped behind
vigil's back) is rebuilt from it, two servers sharing one Milvus see each other's enrolments, and bad
settings are refused with the setting named. Real photos, the real engine, Milvus Lite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from vigil.app import App
from vigil.core.config import Settings
from vigil.core.errors import ConfigError
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries, matching
from vigil.governance import erasure
from vigil.storage.index import IndexKey
from vigil.storage.milvus import MilvusIndex, MilvusStore
from vigil.storage.tables import Gallery
from vigil.vision.image import load_image


@pytest.fixture
def vectors(milvus_lite: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """Milvus only (this module tests the Milvus backend itself)."""
    return {"vector_url": str(milvus_lite), "vector_prefix": f"m{abs(hash(request.node.name)) % 10**8}"}


def _collection(app: App, gallery: str) -> MilvusIndex:
    with app.db.session() as s:
        g = s.query(Gallery).filter_by(name=gallery).one()
        gid, gen = g.id, g.generation
    store = app.indexes
    assert isinstance(store, MilvusStore)
    index = store.get(
        IndexKey(gid, app.engine.model_id),
        gen,
        128,
        lambda: enrolment.load_templates(app, gid, app.engine.model_id),
    )
    assert isinstance(index, MilvusIndex)
    return index


def _staff(app: App, people: Path) -> None:
    galleries.create_gallery(app, galleries.validate_spec(name="staff", kind="reference"))
    enrolment.enroll(
        app, "staff", "Obama", [load_image(people / "obama.jpg"), load_image(people / "obama2.jpg")]
    )
    enrolment.enroll(app, "staff", "Biden", [load_image(people / "biden.jpg")])


def test_erasure_deletes_the_persons_vectors_in_milvus(app: App, people: Path) -> None:
    _staff(app, people)
    before = set(_collection(app, "staff").ids().tolist())
    obama = erasure.find_identity(app, "Obama", "staff")
    report = erasure.erase_identity(app, obama, "user:dpo", reason="request 17")
    after = set(_collection(app, "staff").ids().tolist())
    assert report.templates == 2 and len(before) == 3 and len(after) == 1 and after < before
    result = matching.identify(app, load_image(people / "obama.jpg"), ["staff"])
    assert result.faces[0].decision is None and all(m.identity != "Obama" for m in result.faces[0].matches)


def test_a_collection_out_of_step_or_dropped_is_rebuilt_from_the_catalog(app: App, people: Path) -> None:
    _staff(app, people)
    ids = _collection(app, "staff").ids()
    store = app.indexes
    assert isinstance(store, MilvusStore)
    name = _collection(app, "staff").name
    store._client.delete(name, ids=[int(ids[0])])  # a write lost behind vigil's back ...
    with app.db.session() as s:  # ... and the catalog moved on (another process committed)
        s.query(Gallery).filter_by(name="staff").update({"generation": Gallery.generation + 1})
    fresh = App(app.settings, engine_override=app.engine)  # another process: no cached generation
    np.testing.assert_array_equal(_collection(fresh, "staff").ids(), ids)
    store._client.drop_collection(name)
    np.testing.assert_array_equal(
        _collection(App(app.settings, engine_override=app.engine), "staff").ids(), ids
    )


def test_two_servers_on_one_milvus_see_each_others_enrolments(app: App, people: Path) -> None:
    other = App(app.settings, engine_override=app.engine)  # a second server: same catalog, same Milvus
    _staff(app, people)
    assert other.indexes is not app.indexes
    found = matching.identify(other, load_image(people / "obama2.jpg"), ["staff"])
    assert found.faces[0].decision == "Obama"
    enrolment.enroll(other, "staff", "Lin-Manuel", [load_image(people / "lin-manuel-miranda.png")])
    assert len(_collection(app, "staff")) == len(_collection(other, "staff")) == 4
    seen = matching.identify(app, load_image(people / "lin-manuel-miranda.png"), ["staff"])
    assert seen.faces[0].decision == "Lin-Manuel"


def test_bad_vector_settings_are_refused_with_the_setting_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="vector_index"):
        Settings(data_dir=tmp_path, vector_url="http://127.0.0.1:1", vector_index="SCANN")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="vector_prefix"):
        Settings(data_dir=tmp_path, vector_url="http://127.0.0.1:1", vector_prefix="bad-prefix/..")
    nowhere = App(Settings(data_dir=tmp_path, vector_url="http://127.0.0.1:9"))
    with pytest.raises(ConfigError, match="VIGIL_VECTOR_URL"):
        nowhere.indexes  # noqa: B018
