"""The CompreFace-compatible API (/api/v1) over a real server, as Double Take calls it, with real photos."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from harness import Server

from vigil.core.modelcard import bundled_card
from vigil.server.compreface_support import ACCEPT_SIMILARITY, similarity

PROBLEM = "application/problem+json"
OBAMA = "Barack Obama"
LIN = "Lin-Manuel Miranda"


def _bound_client(server: Server, gallery: str, role: str = "supervisor") -> httpx.Client:
    """A client whose API key is bound to ``gallery`` (created if new), as Double Take would hold."""
    with server.client("admin") as admin:
        r = admin.post("/api/galleries", json={"name": gallery, "kind": "reference"})
        assert r.status_code in (201, 409), r.text
        key = admin.post("/api/keys", json={"name": f"cf-{gallery}-{role}", "role": role, "gallery": gallery})
        assert key.status_code == 201, key.text
    return httpx.Client(base_url=server.url, headers={"x-api-key": key.json()["key"]}, timeout=60)


def _add(c: httpx.Client, subject: str, photo: Path) -> str:
    with photo.open("rb") as fh:
        r = c.post("/api/v1/recognition/faces", params={"subject": subject}, files={"file": fh})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["subject"] == subject and isinstance(body["image_id"], str)
    return str(body["image_id"])


def _recognize(c: httpx.Client, photo: Path, **params: object) -> list[dict[str, object]]:
    """Double Take's call: multipart ``file``, det_prob_threshold 0.8, face_plugins as configured."""
    with photo.open("rb") as fh:
        r = c.post(
            "/api/v1/recognition/recognize",
            params={"det_prob_threshold": 0.8, "face_plugins": "undefined", **params},
            files={"file": fh},
        )
    assert r.status_code == 200, r.text
    result: list[dict[str, object]] = r.json()["result"]
    return result


def _subjects(face: dict[str, object]) -> list[dict[str, object]]:
    subjects = face["subjects"]
    assert isinstance(subjects, list)
    return subjects


@pytest.fixture(scope="module")
def enrolled(server: Server, people: Path) -> Iterator[httpx.Client]:
    """Gallery cf-main: two photos of Obama, one of Lin-Manuel Miranda; a supervisor key bound to it."""
    c = _bound_client(server, "cf-main")
    _add(c, OBAMA, people / "obama.jpg")
    _add(c, OBAMA, people / "obama2.jpg")
    _add(c, LIN, people / "lin-manuel-miranda.png")
    yield c
    c.close()


def test_faces_are_listed_a_page_at_a_time(enrolled: httpx.Client, people: Path) -> None:
    first = enrolled.get("/api/v1/recognition/faces", params={"page": 0, "size": 2}).json()
    assert (first["page_number"], first["page_size"], first["total_pages"], first["total_elements"]) == (
        0,
        2,
        2,
        3,
    )
    second = enrolled.get("/api/v1/recognition/faces", params={"page": 1, "size": 2}).json()
    faces = first["faces"] + second["faces"]
    assert [f["subject"] for f in faces] == [OBAMA, OBAMA, LIN]
    assert len({f["image_id"] for f in faces}) == 3
    only = enrolled.get("/api/v1/recognition/faces", params={"subject": LIN}).json()
    assert only["total_elements"] == 1 and only["faces"][0]["subject"] == LIN
    assert sorted(enrolled.get("/api/v1/recognition/subjects").json()["subjects"]) == [OBAMA, LIN]
    img = enrolled.get(f"/api/v1/recognition/faces/{only['faces'][0]['image_id']}/img")
    assert img.status_code == 200 and img.content == (people / "lin-manuel-miranda.png").read_bytes()
    assert enrolled.get("/api/v1/recognition/faces/999999/img").json()["code"] == 11


def test_same_photo_again_keeps_its_image_id(enrolled: httpx.Client, people: Path) -> None:
    listed = enrolled.get("/api/v1/recognition/faces", params={"subject": LIN}).json()["faces"]
    assert _add(enrolled, LIN, people / "lin-manuel-miranda.png") == listed[0]["image_id"]


def test_recognize_a_new_photo_of_a_known_person(enrolled: httpx.Client, people: Path) -> None:
    faces = _recognize(enrolled, people / "obama3.jpg", prediction_count=2)
    assert len(faces) == 1
    face = faces[0]
    box = face["box"]
    assert isinstance(box, dict)
    assert 0 <= box["x_min"] < box["x_max"] and 0 <= box["y_min"] < box["y_max"]
    assert 0.8 <= box["probability"] <= 1
    best, other = _subjects(face)
    assert best["subject"] == OBAMA and best["accepted"] is True
    assert isinstance(best["similarity"], float) and ACCEPT_SIMILARITY < best["similarity"] <= 1
    # listed like CompreFace does, even below the threshold, but not accepted
    assert other["subject"] == LIN and other["accepted"] is False
    assert isinstance(other["similarity"], float) and other["similarity"] < ACCEPT_SIMILARITY
    assert "execution_time" in face and "landmarks" not in face


def test_recognize_accepts_base64_json_and_landmarks(enrolled: httpx.Client, people: Path) -> None:
    data = base64.b64encode((people / "obama3.jpg").read_bytes()).decode()
    r = enrolled.post("/api/v1/recognition/recognize?face_plugins=landmarks", json={"file": data})
    assert r.status_code == 200, r.text
    body = r.json()
    (face,) = body["result"]
    assert face["subjects"][0]["subject"] == OBAMA
    assert len(face["landmarks"]) == 5
    assert body["plugins_versions"]["calculator"]


@pytest.mark.parametrize("photo", ["biden.jpg", "alex-lacamoire.png"])
def test_unknown_person_is_not_above_threshold(enrolled: httpx.Client, people: Path, photo: str) -> None:
    (face,) = _recognize(enrolled, people / photo)
    for subject in _subjects(face):
        assert subject["accepted"] is False
        assert isinstance(subject["similarity"], float) and subject["similarity"] < ACCEPT_SIMILARITY


def test_group_photo_gives_a_result_per_face(enrolled: httpx.Client, people: Path) -> None:
    faces = _recognize(enrolled, people / "two_people.jpg")
    assert len(faces) == 2
    accepted = [s["subject"] for f in faces for s in _subjects(f) if s["accepted"]]
    assert accepted == [OBAMA]
    assert len(_recognize(enrolled, people / "two_people.jpg", limit=1)) == 1


def test_delete_face_and_subject_remove_them_from_recognition(server: Server, people: Path) -> None:
    with _bound_client(server, "cf-delete") as c:
        first = _add(c, OBAMA, people / "obama.jpg")
        _add(c, OBAMA, people / "obama2.jpg")
        _add(c, LIN, people / "lin-manuel-miranda.png")

        r = c.delete(f"/api/v1/recognition/faces/{first}")
        assert r.status_code == 200 and r.json() == {"image_id": first, "subject": OBAMA}
        assert c.delete(f"/api/v1/recognition/faces/{first}").json()["code"] == 11
        assert c.get("/api/v1/recognition/faces").json()["total_elements"] == 2
        assert _subjects(_recognize(c, people / "obama3.jpg")[0])[0]["subject"] == OBAMA

        # Double Take's "untrain": every face of the subject
        assert c.delete("/api/v1/recognition/faces", params={"subject": OBAMA}).json() == {"deleted": 1}
        names = [s["subject"] for s in _subjects(_recognize(c, people / "obama3.jpg", prediction_count=5)[0])]
        assert OBAMA not in names and names == [LIN]
        assert OBAMA in c.get("/api/v1/recognition/subjects").json()["subjects"]  # the subject stays

        top = _subjects(_recognize(c, people / "lin-manuel-miranda.png")[0])[0]
        assert top["subject"] == LIN and top["accepted"] is True
        assert c.delete(f"/api/v1/recognition/subjects/{LIN}").json() == {"subject": LIN}
        assert _subjects(_recognize(c, people / "lin-manuel-miranda.png")[0]) == []
        assert c.get("/api/v1/recognition/subjects").json() == {"subjects": [OBAMA]}
        assert c.delete(f"/api/v1/recognition/subjects/{LIN}").json()["code"] == 42

        ids = [_add(c, LIN, people / "lin-manuel-miranda.png"), _add(c, OBAMA, people / "obama.jpg")]
        gone = c.post("/api/v1/recognition/faces/delete", json=[*ids, "424242", "not-an-id"]).json()
        assert sorted(g["image_id"] for g in gone) == sorted(ids)
        assert c.get("/api/v1/recognition/faces").json()["total_elements"] == 0
        assert c.delete("/api/v1/recognition/subjects").json() == {"deleted": 2}
        assert c.get("/api/v1/recognition/subjects").json() == {"subjects": []}


def test_subjects_add_rename_and_merge(server: Server, people: Path) -> None:
    with _bound_client(server, "cf-subjects") as c:
        r = c.post("/api/v1/recognition/subjects", json={"subject": "guest"})
        assert r.status_code == 201 and r.json() == {"subject": "guest"}
        again = c.post("/api/v1/recognition/subjects", json={"subject": "guest"})
        assert again.status_code == 409 and again.json()["code"] == 43 and "guest" in again.json()["message"]
        assert c.put("/api/v1/recognition/subjects/guest", json={"subject": "visitor"}).json() == {
            "updated": True
        }
        assert c.get("/api/v1/recognition/subjects").json() == {"subjects": ["visitor"]}

        _add(c, "obama-a", people / "obama.jpg")
        _add(c, "obama-b", people / "obama2.jpg")
        assert c.put("/api/v1/recognition/subjects/obama-b", json={"subject": "obama-a"}).json() == {
            "updated": True
        }
        faces = c.get("/api/v1/recognition/faces").json()["faces"]
        assert [f["subject"] for f in faces] == ["obama-a", "obama-a"]
        assert sorted(c.get("/api/v1/recognition/subjects").json()["subjects"]) == ["obama-a", "visitor"]
        top = _subjects(_recognize(c, people / "obama3.jpg")[0])[0]
        assert top["subject"] == "obama-a" and top["accepted"] is True
        assert c.put("/api/v1/recognition/subjects/nobody", json={"subject": "x"}).json()["code"] == 42


def test_key_without_gallery_gets_a_clear_error(server: Server, people: Path) -> None:
    with server.client("supervisor") as c:
        r = c.get("/api/v1/recognition/subjects")
        assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)
        body = r.json()
        assert body["code"] == 10 and "not bound to a gallery" in body["message"]
        assert "--gallery" in body["message"]
        with (people / "obama.jpg").open("rb") as fh:
            assert c.post("/api/v1/recognition/recognize", files={"file": fh}).json()["code"] == 10
        with (people / "two_people.jpg").open("rb") as fh:  # detection needs no gallery
            detected = c.post("/api/v1/detection/detect", files={"file": fh})
        assert detected.status_code == 200 and len(detected.json()["result"]) == 2


def test_roles_and_missing_key(server: Server, people: Path) -> None:
    with _bound_client(server, "cf-main", "operator") as operator:
        assert operator.get("/api/v1/recognition/subjects").status_code == 200
        with (people / "obama.jpg").open("rb") as fh:
            r = operator.post("/api/v1/recognition/faces", params={"subject": "x"}, files={"file": fh})
        assert r.status_code == 403 and "operator" in r.json()["message"]
        assert operator.delete("/api/v1/recognition/subjects").status_code == 403
    with _bound_client(server, "cf-main", "auditor") as auditor:
        assert auditor.get("/api/v1/recognition/subjects").status_code == 403
    with server.client(None) as anon, (people / "obama.jpg").open("rb") as fh:
        r = anon.post("/api/v1/recognition/recognize", files={"file": fh})
    assert r.status_code == 401 and r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == 20 and r.json()["message"]


def _png(width: int, height: int) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", np.full((height, width, 3), 128, np.uint8))
    assert ok
    return bytes(data)


@pytest.mark.parametrize(
    ("request_kw", "status", "code"),
    [
        ({"files": {"file": ("empty.jpg", b"")}}, 422, 21),
        ({"files": {"file": ("notes.jpg", b"this is not an image")}}, 422, 21),
        ({"files": {"other": ("x.jpg", b"abc")}}, 422, 34),
        ({"json": {"file": "@@not base64@@"}}, 422, 21),
        ({"json": ["file"]}, 422, 26),
        ({"content": b"raw bytes", "headers": {"content-type": "image/jpeg"}}, 422, 34),
        (
            {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}},
            422,
            26,
        ),
        ({"files": {"file": ("blank.png", _png(320, 240))}}, 422, 28),  # Double Take reads 28 as "no face"
    ],
    ids=[
        "empty",
        "not-an-image",
        "no-file-part",
        "bad-base64",
        "json-not-object",
        "raw-body",
        "bad-multipart",
        "no-face",
    ],
)
def test_bad_uploads_carry_message_and_code(
    enrolled: httpx.Client, request_kw: dict[str, object], status: int, code: int
) -> None:
    r = enrolled.post("/api/v1/recognition/recognize", **request_kw)  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["code"] == code and body["message"] and body["status"] == status


def test_oversized_upload_carries_message_and_code(enrolled: httpx.Client) -> None:
    big = b"\xff\xd8" + bytes(32_000_000)
    r = enrolled.post("/api/v1/recognition/recognize", files={"file": ("huge.jpg", big, "image/jpeg")})
    assert r.status_code == 413 and r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["code"] == 21 and "limit" in body["message"] and body["status"] == 413


def test_missing_subject_and_bad_query(enrolled: httpx.Client, people: Path) -> None:
    with (people / "obama.jpg").open("rb") as fh:
        r = enrolled.post("/api/v1/recognition/faces", files={"file": fh})
    assert r.status_code == 422 and r.json()["code"] == 33 and "subject" in r.json()["message"]
    r = enrolled.get("/api/v1/recognition/faces", params={"size": 0})
    assert r.status_code == 422 and r.json()["code"] == 26


def test_verify_two_photos(enrolled: httpx.Client, people: Path) -> None:
    def verify(source: str, target: str) -> dict[str, object]:
        with (people / source).open("rb") as a, (people / target).open("rb") as b:
            r = enrolled.post("/api/v1/verification/verify", files={"source_image": a, "target_image": b})
        assert r.status_code == 200, r.text
        (item,) = r.json()["result"]
        assert item["source_image_face"]["box"]["x_max"] > 0
        return dict(item)

    group = verify("obama.jpg", "two_people.jpg")["face_matches"]
    assert isinstance(group, list) and len(group) == 2
    assert group[0]["accepted"] is True and group[0]["similarity"] >= ACCEPT_SIMILARITY
    assert group[1]["accepted"] is False and group[1]["similarity"] < ACCEPT_SIMILARITY
    (other,) = verify("obama.jpg", "lin-manuel-miranda.png")["face_matches"]  # type: ignore[misc]
    assert other["accepted"] is False


def test_similarity_maps_the_threshold_to_the_accept_value() -> None:
    card = bundled_card("dlib-resnet-v1")
    for n in (1, 2, 50, 10_000):
        t = card.threshold_for_fpir(0.01, n)
        assert similarity(card, t, t) == pytest.approx(ACCEPT_SIMILARITY, abs=1e-5)
        scores = np.linspace(0.5, 1.0, 101)
        mapped = [similarity(card, float(s), t) for s in scores]
        assert mapped == sorted(mapped) and mapped[0] == 0.0 and mapped[-1] == 1.0
        assert all((m >= ACCEPT_SIMILARITY) == (s >= t) for s, m in zip(scores, mapped, strict=True))
    uncalibrated = card.model_copy(update={"calibration": None})
    t = uncalibrated.default_threshold
    assert similarity(uncalibrated, t, t) == ACCEPT_SIMILARITY
    assert similarity(uncalibrated, t - 0.2, t) < similarity(uncalibrated, t - 0.1, t) < ACCEPT_SIMILARITY


def test_openapi_lists_the_upload_body(server: Server) -> None:
    spec = server.client("admin").get("/openapi.json").json()
    body = spec["paths"]["/api/v1/recognition/recognize"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
