"""Redaction (issue 17, item 4): every face blurred on every frame, or every face but the kept ones'.

The measurement (docs/redaction.md) runs the detector on every frame of the original hamilton clip
and checks that each face it finds lies inside a blurred box, then runs it again on the redacted
output: what it still finds there is counted as a miss.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from vigil.app import App
from vigil.core.errors import InputError, VigilError
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.storage.tables import AuditEntry
from vigil.video import redact as svc
from vigil.video.detection import video_detector
from vigil.vision.image import load_image


@pytest.fixture(scope="module")
def clip(shared_data: Path) -> Path:
    return shared_data / "video" / "short_hamilton_clip.mp4"


def _detect_all(app: App, video: Path) -> dict[int, np.ndarray]:
    detector = video_detector(app.settings, base=app.engine.detector)
    return {f.index: detector.detect(f.bgr).xyxy for f in svc._frames(video)}


def _inside(box: np.ndarray, regions: np.ndarray, slack: float = 1.0) -> bool:
    x1, y1, x2, y2 = box
    return any(
        a <= x1 + slack and b <= y1 + slack and c >= x2 - slack and d >= y2 - slack for a, b, c, d in regions
    )


def _overlap(box: np.ndarray, regions: np.ndarray) -> float:
    """The share of ``box`` that lies in the blurred ``regions`` (the largest one)."""
    x1, y1, x2, y2 = box
    area = max(1e-6, (x2 - x1) * (y2 - y1))
    best = 0.0
    for a, b, c, d in regions:
        w, h = min(x2, c) - max(x1, a), min(y2, d) - max(y1, b)
        best = max(best, max(0.0, w) * max(0.0, h) / area)
    return best


def measure(app: App, clip: Path, out: Path, options: svc.RedactOptions) -> dict[str, object]:
    """The figures of docs/redaction.md for one setting."""
    original = _detect_all(app, clip)
    plans: list[svc.BlurPlan] = []
    result = svc.redact(app, clip, out, options, on_plan=plans.append)
    plan = plans[0]
    uncovered = [
        i
        for i, boxes in original.items()
        for box in boxes
        if not _inside(box, svc.to_blur(plan, i, options.margin))
    ]
    again = _detect_all(app, out)
    found = [(i, box) for i, boxes in again.items() for box in boxes]
    outside = [i for i, box in found if _overlap(box, svc.to_blur(plan, i, options.margin)) < 0.5]
    return {
        "detect_every": options.detect_every,
        "frames": result.frames,
        "frames_with_faces": sum(len(b) > 0 for b in original.values()),
        "faces": sum(len(b) for b in original.values()),
        "uncovered_faces": len(uncovered),
        "uncovered_frames": len(set(uncovered)),
        "redetected": len(found),
        "redetected_frames": len({i for i, _ in found}),
        "redetected_outside_blur": len(outside),
        "faces_blurred": result.faces_blurred,
    }


@pytest.mark.slow
def test_hamilton_every_frame_no_face_left_unblurred(app: App, clip: Path, tmp_path: Path) -> None:
    figures = measure(app, clip, tmp_path / "redacted.mp4", svc.RedactOptions())
    print(json.dumps(figures))
    assert figures["frames"] == 275 and figures["faces"] >= 190
    assert figures["uncovered_faces"] == 0, figures
    # A re-detection on the output counts as a miss; the 3 the detector still reports are a hand
    # holding the microphone, no face (inspected frame by frame, docs/redaction.md).
    assert figures["redetected"] <= 5, figures
    with app.db.session() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "redact")).one()
    detail = json.loads(entry.detail)
    assert entry.target_name == "short_hamilton_clip.mp4"
    assert detail["output_sha256"] == svc._sha256_file(tmp_path / "redacted.mp4")
    assert detail["frames"] == 275 and detail["kept_identities"] == []
    cap = cv2.VideoCapture(str(tmp_path / "redacted.mp4"))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 360)
    assert abs(cap.get(cv2.CAP_PROP_FPS) - 29.97) < 0.01
    cap.release()


@pytest.mark.slow
@pytest.mark.parametrize("every", [3, 5])
def test_hamilton_detecting_every_n_frames(app: App, clip: Path, tmp_path: Path, every: int) -> None:
    """Detecting less often leaves a few faces outside the predicted boxes: the figure in the docs."""
    figures = measure(app, clip, tmp_path / "redacted.mp4", svc.RedactOptions(detect_every=every))
    print(json.dumps(figures))
    assert figures["uncovered_frames"] <= 10 and figures["redetected_frames"] <= 15, figures


def test_keep_leaves_the_named_person_and_blurs_the_rest(app: App, people: Path, tmp_path: Path) -> None:
    src = tmp_path / "photos"
    src.mkdir()
    for name in ("lin-manuel-miranda.png", "obama.jpg", "two_people.jpg"):
        shutil.copy(people / name, src / name)
    galleries.create_gallery(app, galleries.GallerySpec(name="staff", kind="reference"))
    enrolment.enroll(app, "staff", "Barack Obama", [load_image(people / "obama2.jpg")])
    out = tmp_path / "redacted"
    result = svc.redact(app, src, out, svc.RedactOptions(keep=["Barack Obama"], galleries=["staff"]))
    assert result.kind == "images" and result.frames == 3
    assert result.kept_identities == ["Barack Obama"] and result.kept_tracks >= 1
    assert sorted(p.name for p in out.iterdir()) == ["lin-manuel-miranda.png", "obama.png", "two_people.png"]
    original = cv2.imread(str(src / "obama.jpg"))
    kept = cv2.imread(str(out / "obama.png"))
    assert np.array_equal(original, kept)  # Obama's own photo: untouched
    lin = cv2.imread(str(out / "lin-manuel-miranda.png"))
    assert not np.array_equal(lin, cv2.imread(str(src / "lin-manuel-miranda.png")))
    assert len(app.engine.detect(lin)) == 0  # nobody else's face is left to find
    with app.db.session() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "redact")).one()
    detail = json.loads(entry.detail)
    assert detail["output_sha256"] == result.output_sha256 == svc._sha256_folder(out)
    assert detail["kept_identities"] == ["Barack Obama"] and detail["frames"] == 3


def test_pixelation_leaves_no_face_to_recognise(app: App, people: Path) -> None:
    image = load_image(people / "lin-manuel-miranda.png").bgr
    faces = app.engine.detect(image)
    blurred = svc.blur_boxes(image, svc.grow(faces.xyxy, 0.25, image.shape[1], image.shape[0]))
    assert len(app.engine.detect(blurred)) == 0
    # Deblurring cannot bring it back: a sharpened copy is still no face.
    sharp = cv2.addWeighted(blurred, 2.5, cv2.GaussianBlur(blurred, (0, 0), 3), -1.5, 0)
    assert len(app.engine.detect(np.asarray(sharp, np.uint8))) == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: (t / "missing.mp4", t / "out.mp4", {}), "no such file or folder"),
        (lambda t: (t / "clip.mp4", t / "clip.mp4", {}), "overwrite the source"),
        (lambda t: (t / "clip.mp4", t / "out.avi", {}), "MPEG-4"),
        (lambda t: (t / "clip.mp4", t / "no" / "out.mp4", {}), "no such folder"),
        (lambda t: (t / "fake.mp4", t / "out.mp4", {}), "cannot open as a video"),
        (lambda t: (t / "clip.mp4", t / "out.mp4", {"keep": ["No\x07Body"]}), "not an identity name"),
        (lambda t: (t / "clip.mp4", t / "out.mp4", {"keep": ["Nobody"]}), "no such identity"),
    ],
)
def test_refusals(app: App, clip: Path, tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "clip.mp4").symlink_to(clip)
    (tmp_path / "fake.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100)
    source, out, kw = make(tmp_path)
    with pytest.raises(VigilError, match=message):
        svc.redact(app, source, out, svc.RedactOptions(**kw))


def test_folder_output_must_be_new(app: App, people: Path, tmp_path: Path) -> None:
    src = tmp_path / "photos"
    src.mkdir()
    shutil.copy(people / "obama.jpg", src / "a.jpg")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.png").write_bytes(b"x")
    with pytest.raises(InputError, match="not an empty folder"):
        svc.redact(app, src, tmp_path / "full")


def test_cli(run, people: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "photos"
    src.mkdir()
    shutil.copy(people / "two_people.jpg", src / "a.jpg")
    out, _ = run("redact", str(src), "--out", str(tmp_path / "red"), "--json")
    result = json.loads(out)
    assert result["frames"] == 1 and result["faces_blurred"] == 2
    run("redact", str(src), "--out", str(tmp_path / "red"), code=3)
