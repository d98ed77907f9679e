"""Alarms raised on real LFW photos, for the tests of negative examples (issue 17.1).

Jennifer Lopez (two photos) is on the watchlist; Angelina Jolie, who is not, is a look-alike for the
default engine: each of her LFW photos scores above the watchlist's threshold against Lopez (found by
scoring every lfw-dev identity with four or more photos against every other). :func:`photo_alarm`
runs one photo, placed on a 640x360 frame, through the pipeline's own steps (detect, embed, identify,
screen against negatives, build the alarm with its crop) and stores it with the catalog writer.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from vigil.app import App
from vigil.core.frame import Frame
from vigil.events.schemas import Alarm, AnyEvent
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.gallery.matching import identify_faces
from vigil.video import evidence
from vigil.video.sinks import CatalogWriter
from vigil.vision.image import load_image

PERSON = "Jennifer_Lopez"
LOOKALIKE = "Angelina_Jolie"


def photos(shared_data: Path, name: str) -> list[Path]:
    return sorted((shared_data / "lfw-dev" / name).glob("*.jpg"))


def enrol_person(app: App, shared_data: Path, gallery: str = "wanted") -> int:
    """The watchlist ``gallery`` with Jennifer Lopez enrolled from her first two photos; her id."""
    spec = galleries.validate_spec(
        name=gallery,
        kind="watchlist",
        purpose="test",
        legal_basis="court order 12",
        authorized_by="Judge A",
        expires_on=date.today() + timedelta(days=30),
    )
    galleries.create_gallery(app, spec)
    images = [load_image(p) for p in photos(shared_data, PERSON)[:2]]
    return enrolment.enroll(app, gallery, "Jennifer Lopez", images).identity_id


def frame_of(path: Path, index: int = 0) -> Frame:
    """The photo in the middle of a grey 640x360 frame."""
    canvas = np.full((360, 640, 3), 90, np.uint8)
    img = cv2.imread(str(path))
    h, w = img.shape[:2]
    y, x = (360 - h) // 2, (640 - w) // 2
    canvas[y : y + h, x : x + w] = img
    ts = datetime(2026, 12, 1, 12, 0, tzinfo=UTC) + timedelta(seconds=index)
    return Frame(camera="gate", index=index, bgr=canvas, ts=ts, mono=0.0, pos_s=float(index))


def photo_alarm(app: App, path: Path, index: int = 0, gallery: str = "wanted") -> Alarm | None:
    """The alarm (screened by negatives) the photo raises on camera ``gate``, or None below threshold."""
    frame = frame_of(path, index)
    faces = app.engine.analyze(frame.bgr)[np.asarray([0])]
    faces = faces.with_(track_id=np.asarray([index + 1], np.int64))
    result = identify_faces(app, faces, [gallery])
    match = next((m for m in result.faces[0].matches if m.above_threshold), None)
    if match is None:
        return None
    assert faces.embedding is not None
    decision = evidence.screen(app, evidence.Decision(match, result.fpir, result.model), faces.embedding[0])
    return evidence.alarm("gate", None, frame, faces, decision)


def store(app: App, alarm: Alarm) -> tuple[AnyEvent | None, CatalogWriter]:
    """``alarm`` written by a catalog writer: (what it passes on, the writer)."""
    writer = CatalogWriter(app)
    return writer.write(alarm), writer
