"""Gallery hygiene with real LFW photos and the real default model: a wrong photo enrolled into a
person is flagged (and warned about as it is enrolled), a person enrolled twice is flagged within a
gallery and across two, a single-photo identity is listed, and each fix removes its finding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from vigil.app import App
from vigil.core.config import Settings
from vigil.core.errors import ConflictError, InputError, NotFoundError
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries, hygiene
from vigil.gallery.hygiene_report import render_html
from vigil.gallery.scope import GalleryScope
from vigil.storage.tables import AuditEntry, Photo
from vigil.vision.image import load_image

Faces = dict[str, list[enrolment.PreparedFace]]


@pytest.fixture(scope="module")
def faces(engine, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Faces:  # type: ignore[no-untyped-def]
    """Four photos each of three LFW people, detected and embedded once for the module."""
    lfw = shared_data / "lfw-dev"
    if not lfw.is_dir():
        pytest.skip("lfw-dev not in the shared data")
    a = App(Settings(data_dir=tmp_path_factory.mktemp("prep")), engine_override=engine)
    try:
        return {
            person: [
                enrolment.prepare_face(a, load_image(p), largest=True)
                for p in sorted((lfw / person).glob("*.jpg"))[:4]
            ]
            for person in ("Ricardo_Lagos", "Hans_Blix", "Jennifer_Lopez")
        }
    finally:
        a.close()


def _gallery(app: App, name: str) -> None:
    galleries.create_gallery(app, galleries.validate_spec(name=name, kind="reference"))


def _photo_id(app: App, sha256: str, identity_id: int) -> int:
    with app.db.session() as s:
        pid = s.scalar(select(Photo.id).where(Photo.sha256 == sha256, Photo.identity_id == identity_id))
    assert pid is not None
    return pid


def _kinds(report: hygiene.HygieneReport, kind: str) -> list[hygiene.Finding]:
    return [f for f in report.findings if f.kind == kind]


def test_wrong_photo_is_warned_flagged_and_removed(app: App, faces: Faces) -> None:
    _gallery(app, "staff")
    first = enrolment.enroll_prepared(app, "staff", "ricardo", faces["Ricardo_Lagos"])
    assert first.warnings == []  # four photos of one person match each other
    enrolment.enroll_prepared(app, "staff", "hans", faces["Hans_Blix"])
    stranger = faces["Jennifer_Lopez"][0]
    added = enrolment.enroll_prepared(app, "staff", "ricardo", [stranger])
    assert added.photos[0].status == "enrolled"  # stored all the same
    assert len(added.warnings) == 1 and "matches none of the person's 4 other photo" in added.warnings[0]

    report = hygiene.check_gallery(app, "staff")
    wrong = _kinds(report, "wrong-photo")
    bad_id = _photo_id(app, stranger.image.sha256, first.identity_id)
    assert [(f.identities, f.photos[0].photo_id, f.photos[0].sha256) for f in wrong] == [
        (["ricardo"], bad_id, stranger.image.sha256)
    ]
    assert wrong[0].score is not None and wrong[0].threshold is not None
    assert wrong[0].score < wrong[0].threshold == report.wrong_photo_threshold
    assert len(wrong[0].photos) == 5  # the flagged one first, then the person's others
    assert wrong[0].fixes[0].command == f"vigil gallery check staff --fix remove-photo {bad_id}"
    assert _kinds(report, "same-person") == []  # Lagos, Blix and Lopez are three people
    assert report.identities == 2 and report.photos == 9

    page = render_html(app, report)
    assert page.count("data:image/jpeg;base64,") == 5 and "http" not in page.replace("http-equiv", "")

    done = hygiene.apply_fix(app, "staff", "remove-photo", [bad_id])
    assert "removed photo" in done.done
    assert _kinds(hygiene.check_gallery(app, "staff"), "wrong-photo") == []


def test_same_person_within_and_across_galleries(app: App, faces: Faces) -> None:
    _gallery(app, "staff")
    _gallery(app, "visitors")
    hans = faces["Hans_Blix"]
    a = enrolment.enroll_prepared(app, "staff", "Hans Blix", hans[:2])
    b = enrolment.enroll_prepared(app, "staff", "H. Blix", hans[2:])
    c = enrolment.enroll_prepared(app, "visitors", "Blix", hans[1:3])
    enrolment.enroll_prepared(app, "staff", "ricardo", faces["Ricardo_Lagos"])

    report = hygiene.check_gallery(app, "staff")
    assert report.compared_with == ["visitors"]
    pairs = {tuple(sorted(f.identity_ids)): f for f in _kinds(report, "same-person")}
    assert set(pairs) == {
        tuple(sorted((a.identity_id, b.identity_id))),
        tuple(sorted((a.identity_id, c.identity_id))),
        tuple(sorted((b.identity_id, c.identity_id))),
    }
    for f in pairs.values():
        assert f.score is not None and f.score >= report.same_person_threshold
        assert all(len(p.sha256) == 64 for p in f.photos)
    across = pairs[tuple(sorted((a.identity_id, c.identity_id)))]
    assert "in gallery 'visitors'" in across.message
    assert across.fixes[0].command == f"vigil people remove {c.identity_id} --gallery visitors"

    # A key bound to staff compares with no other gallery.
    bound = hygiene.check_gallery(app, "staff", scope=GalleryScope(1, "staff"))
    assert bound.compared_with == [] and len(_kinds(bound, "same-person")) == 1
    with pytest.raises(NotFoundError):
        hygiene.check_gallery(app, "visitors", scope=GalleryScope(1, "staff"))

    merged = hygiene.apply_fix(app, "staff", "merge", [a.identity_id, b.identity_id])
    assert "merged 'H. Blix' into 'Hans Blix'" in merged.done
    after = hygiene.check_gallery(app, "staff")
    assert [f.identity_ids for f in _kinds(after, "same-person")] == [[a.identity_id, c.identity_id]]
    hygiene.apply_fix(app, "visitors", "remove-identity", [c.identity_id])
    assert _kinds(hygiene.check_gallery(app, "staff"), "same-person") == []


def test_single_photo_and_low_quality(app: App, faces: Faces, engine) -> None:  # type: ignore[no-untyped-def]
    _gallery(app, "staff")
    one = enrolment.enroll_prepared(app, "staff", "lopez", faces["Jennifer_Lopez"][:1])
    enrolment.enroll_prepared(app, "staff", "ricardo", faces["Ricardo_Lagos"])
    enrolment.enroll_prepared(app, "staff", "nobody", [])
    report = hygiene.check_gallery(app, "staff")
    assert [(f.kind, f.identities) for f in report.findings if f.kind.endswith("photo")] == [
        ("single-photo", ["lopez"]),
        ("no-photo", ["nobody"]),
    ]
    assert _kinds(report, "single-photo")[0].photos[0].sha256 == faces["Jennifer_Lopez"][0].image.sha256
    assert one.warnings == []

    # The quality the matcher needs is a setting: raised above every photo's, each is listed.
    qualities = sorted(f.face.quality[0] for f in faces["Ricardo_Lagos"])  # type: ignore[index]
    strict = App(
        app.settings.model_copy(update={"video_min_quality": float(qualities[1]) + 1e-6}),
        engine_override=engine,
    )
    try:
        low = _kinds(hygiene.check_gallery(strict, "staff"), "low-quality")
    finally:
        strict.close()
    ricardo_low = [f for f in low if f.identities == ["ricardo"]]
    assert len(ricardo_low) == 2 and all(f.score is not None and f.score <= qualities[1] for f in ricardo_low)


def test_the_check_is_audited_and_bad_fixes_refused(app: App, faces: Faces) -> None:
    _gallery(app, "staff")
    enrolment.enroll_prepared(app, "staff", "ricardo", faces["Ricardo_Lagos"][:2])
    hygiene.check_gallery(app, "staff", actor="user:alice")
    with app.db.session() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "gallery_check")).one()
        assert entry.actor == "user:alice"
        assert json.loads(entry.detail)["findings"] == {}
    with pytest.raises(InputError, match="unknown fix"):
        hygiene.apply_fix(app, "staff", "drop-table", [1])
    with pytest.raises(InputError, match="takes 2 id"):
        hygiene.apply_fix(app, "staff", "merge", [1])
    with pytest.raises(NotFoundError):
        hygiene.apply_fix(app, "staff", "remove-photo", [2**62])
    with pytest.raises(NotFoundError):
        hygiene.check_gallery(app, "no/such\x00gallery")
    # A person named like another's id: the merge refuses rather than merge the wrong one.
    other = enrolment.enroll_prepared(app, "staff", "other", faces["Hans_Blix"][:1]).identity_id
    enrolment.enroll_prepared(app, "staff", str(other), [])
    keep = enrolment.enroll_prepared(app, "staff", "keep", faces["Hans_Blix"][1:2]).identity_id
    with pytest.raises(ConflictError, match="is named"):
        hygiene.apply_fix(app, "staff", "merge", [keep, other])


def test_cli_check(run, tmp_path: Path, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    lfw = shared_data / "lfw-dev"
    lagos = [str(p) for p in sorted((lfw / "Ricardo_Lagos").glob("*.jpg"))[:3]]
    run("gallery", "create", "staff", "--kind", "reference")
    run("enroll", "ricardo", *lagos, "--gallery", "staff")
    out, _ = run("enroll", "ricardo", str(sorted((lfw / "Jennifer_Lopez").glob("*.jpg"))[0]), "-g", "staff")
    assert "warning:" in out and "likely someone else's photo" in out
    page = tmp_path / "check.html"
    out, _ = run("gallery", "check", "staff", "--html", str(page))
    assert "wrong-photo" in out and "report written to" in out
    assert "<img" in page.read_text()
    data = json.loads(run("gallery", "check", "staff", "--json")[0])
    wrong = [f for f in data["findings"] if f["kind"] == "wrong-photo"]
    assert len(wrong) == 1
    args = wrong[0]["fixes"][0]["command"].split()[1:]
    out, _ = run(*args)
    assert "removed photo" in out
    data = json.loads(run("gallery", "check", "staff", "--json")[0])
    assert [f for f in data["findings"] if f["kind"] == "wrong-photo"] == []
    _, err = run("gallery", "check", "staff", "--fix", "nonsense", "1", code=3)
    assert "unknown fix" in err


def test_cli_bulk_enrolment_warns(run, tmp_path: Path, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    lfw = shared_data / "lfw-dev"
    person = tmp_path / "people" / "Ricardo Lagos"
    person.mkdir(parents=True)
    stranger = sorted((lfw / "Hans_Blix").glob("*.jpg"))[0]
    for p in [*sorted((lfw / "Ricardo_Lagos").glob("*.jpg"))[:2], stranger]:
        (person / p.name).symlink_to(p)
    run("gallery", "create", "staff", "--kind", "reference")
    out, err = run("enroll-dir", str(tmp_path / "people"), "--gallery", "staff")
    assert "3 photos enrolled" in out
    assert err.count("warning:") == 1 and f"warning: {stranger.name}: matches none" in err
