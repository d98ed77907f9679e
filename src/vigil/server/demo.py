"""The demo of `vigil serve --demo`: a watchlist, one enrolled person and a camera playing a video.

Everything comes from scikit-image's public-domain astronaut photo (Eileen Collins, NASA): she is
enrolled from the photo, and a short video is rendered in which the photo moves and shrinks across
the frame, so a newcomer sees a real alarm go through detection, tracking, matching and review
without any data of their own. Nothing is downloaded.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from vigil.app import App
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries, identities
from vigil.storage.tables import GalleryKind
from vigil.video import cameras
from vigil.vision.image import png_image

DEMO_WATCHLIST = "demo-watchlist"
DEMO_PERSON = "Eileen Collins"
DEMO_CAMERA = "demo-camera"
FPS = 25
SECONDS = 12


class DemoSetup(BaseModel):
    watchlist: str
    person: str
    camera: str
    video: str


def _astronaut() -> npt.NDArray[np.uint8]:
    from skimage import data

    return np.asarray(data.astronaut(), dtype=np.uint8)  # type: ignore[no-untyped-call]


def render_video(path: Path) -> None:
    """A 640x360 clip: the photo slides in, pauses, shrinks and slides out (grey background)."""
    import cv2

    bgr = np.ascontiguousarray(_astronaut()[:, :, ::-1])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (640, 360))
    n = FPS * SECONDS
    for i in range(n):
        t = i / n
        frame = np.full((360, 640, 3), 90, np.uint8)
        if 0.1 <= t <= 0.85:
            u = (t - 0.1) / 0.75
            scale = 0.62 - 0.22 * u  # 317 px tall photo shrinking to 205 px
            side = round(512 * scale)
            x = round(-side + (640 + side) * min(1.0, u * 1.1))
            y = 360 - side
            img = cv2.resize(bgr, (side, side), interpolation=cv2.INTER_AREA)
            x0, x1 = max(0, x), min(640, x + side)
            if x1 > x0:
                frame[y : y + side, x0:x1] = img[:, x0 - x : x1 - x]
        writer.write(frame)
    writer.release()
    tmp.replace(path)


DEMO_ACTOR = "system:demo"
"""Who the audit log names for the demo's own gallery, enrolment and camera."""


def prepare_demo(app: App) -> DemoSetup:
    """Create (once) the demo watchlist, enrolment, video and camera; safe to call on every start."""
    known = {g.name for g in galleries.list_galleries(app)}
    if DEMO_WATCHLIST not in known:
        galleries.create_gallery(
            app,
            galleries.validate_spec(
                name=DEMO_WATCHLIST,
                kind=GalleryKind.watchlist,
                purpose="vigil demo: show how an alarm is raised and reviewed",
                legal_basis="demonstration on a public-domain NASA photo; no real person is watched",
                authorized_by="the vigil demo",
                expires_on=date.today() + timedelta(days=365),
            ),
            actor=DEMO_ACTOR,
        )
    people = {i.name for i in identities.list_identities(app, DEMO_WATCHLIST)}
    if DEMO_PERSON not in people:
        photo = png_image(_astronaut(), "skimage-astronaut.png")
        enrolment.enroll(app, DEMO_WATCHLIST, DEMO_PERSON, [photo], actor=DEMO_ACTOR)
    video = app.settings.media_folders[0] / "demo" / "astronaut.mp4"  # cameras play media folders only
    if not video.is_file():
        render_video(video)
    existing = {c.name: c for c in cameras.list_cameras(app)}
    if DEMO_CAMERA in existing and cameras.get_camera(app, DEMO_CAMERA)[1] != str(video):
        cameras.delete_camera(
            app, DEMO_CAMERA, actor=DEMO_ACTOR
        )  # made before media folders: its file is outside them
        del existing[DEMO_CAMERA]
    if DEMO_CAMERA not in existing:
        cameras.add_camera(app, DEMO_CAMERA, str(video), site="demo", kind="fixed", actor=DEMO_ACTOR)
    return DemoSetup(watchlist=DEMO_WATCHLIST, person=DEMO_PERSON, camera=DEMO_CAMERA, video=str(video))
