"""Verification and open-set identification with the default model on real photos."""

from pathlib import Path

import pytest

from vigil.app import App
from vigil.core.config import Settings
from vigil.core.errors import ForbiddenError, MultipleFacesError
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries, matching
from vigil.vision.image import load_image

LEFT_OUT = "Jeff_Bezos"


def test_obama_verifies_against_obama_not_biden(app: App, people: Path) -> None:
    obama = load_image(people / "obama.jpg")
    same = matching.verify(app, obama, load_image(people / "obama2.jpg"))
    other = matching.verify(app, obama, load_image(people / "biden.jpg"))
    assert same.same_person and same.score >= same.threshold
    assert not other.same_person and other.score < other.threshold
    assert same.model == "dlib-resnet-v1" and same.threshold == other.threshold
    with pytest.raises(MultipleFacesError):
        matching.verify(app, obama, load_image(people / "two_people.jpg"))


@pytest.fixture(scope="module", params=["faiss", "milvus"])
def deepface_app(request, tmp_path_factory: pytest.TempPathFactory, engine, shared_data: Path):  # type: ignore[no-untyped-def]
    """deepface-13 with the first photo of each person enrolled, except one person left out; the
    gallery's vectors in FAISS files, then in Milvus (Lite)."""
    vectors = {}
    if request.param == "milvus":
        vectors = {"vector_url": str(request.getfixturevalue("milvus_lite")), "vector_prefix": "deepface"}
    app = App(Settings(data_dir=tmp_path_factory.mktemp("deepface"), **vectors), engine_override=engine)
    galleries.create_gallery(app, galleries.validate_spec(name="celebs", kind="reference"))
    probes: list[tuple[str, Path]] = []
    for person in sorted(
        p for p in (shared_data / "deepface-13").iterdir() if p.is_dir() and p.name[0] != "_"
    ):
        photos = sorted(person.glob("*.jpg"))
        if person.name == LEFT_OUT:
            probes += [(person.name, p) for p in photos]
            continue
        enrolment.enroll(app, "celebs", person.name, [load_image(photos[0])])
        probes += [(person.name, p) for p in photos[1:]]
    yield app, probes
    app.close()


def test_deepface_top1_and_open_set(deepface_app) -> None:  # type: ignore[no-untyped-def]
    app, probes = deepface_app
    top1 = decided_right = mated = 0
    for person, path in probes:
        result = matching.identify(app, load_image(path), ["celebs"], top_k=3)
        assert len(result.faces) == 1, path
        face = result.faces[0]
        if person == LEFT_OUT:
            assert face.decision is None, f"{path} (not enrolled) was identified as {face.decision}"
            continue
        mated += 1
        top1 += face.matches[0].identity == person
        decided_right += face.decision == person
    assert mated >= 40
    assert top1 / mated >= 0.95, f"top-1 {top1}/{mated}"
    assert decided_right / mated >= 0.85, f"decided correctly {decided_right}/{mated}"


def test_people_not_enrolled_get_no_decision(deepface_app, people: Path) -> None:  # type: ignore[no-untyped-def]
    app, _ = deepface_app
    for name in ("obama.jpg", "biden.jpg", "two_people.jpg"):
        result = matching.identify(app, load_image(people / name), top_k=5)
        assert result.faces, name
        assert all(f.decision is None for f in result.faces), name
        assert all(len(f.matches) <= 5 for f in result.faces)


def test_identify_with_no_galleries_returns_faces_without_matches(app: App, people: Path) -> None:
    result = matching.identify(app, load_image(people / "two_people.jpg"))
    assert len(result.faces) == 2 and all(f.matches == [] and f.decision is None for f in result.faces)


def test_expired_watchlist_cannot_be_searched(app: App, people: Path) -> None:
    from datetime import date, timedelta

    from vigil.storage.tables import Gallery

    galleries.create_gallery(
        app,
        galleries.validate_spec(
            name="wl",
            kind="watchlist",
            purpose="p",
            legal_basis="l",
            authorized_by="a",
            expires_on=date.today() + timedelta(days=1),
        ),
    )
    enrolment.enroll(app, "wl", "Obama", [load_image(people / "obama.jpg")])
    assert matching.identify(app, load_image(people / "obama2.jpg"), ["wl"]).faces[0].decision == "Obama"
    with app.db.session() as s:
        s.query(Gallery).filter_by(name="wl").update({"expires_on": date.today() - timedelta(days=1)})
    with pytest.raises(ForbiddenError, match="expired"):
        matching.identify(app, load_image(people / "obama2.jpg"), ["wl"])
    assert matching.identify(app, load_image(people / "obama2.jpg")).galleries == []
