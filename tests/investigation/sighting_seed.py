"""Helpers for the investigation tests: one catalog of real sightings, made once per session (the
``seed`` fixture) and copied for each test that changes it.

Cameras: ``hall`` (the hamilton clip, keeps sightings; Lin-Manuel Miranda is on the ``wanted``
watchlist, so his tracks are matched), ``lobby`` (a synthetic clip of three LFW people, unknown to
vigil, each walking through twice; keeps sightings) and ``street`` (the hamilton clip's first 60 frames;
did not opt in, keeps none).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType

from vigil.app import App
from vigil.core.config import Settings
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.video import cameras
from vigil.video.watch import watch
from vigil.vision.image import load_image

TESTS = Path(__file__).resolve().parents[1]

# (LFW photo, first frame, last frame, y, direction): three people, each twice, a different photo each time.
UNKNOWN = ("Zhu_Rongji", "Angelina_Jolie", "Hans_Blix")
WALKS = [
    ("Zhu_Rongji/Zhu_Rongji_0001.jpg", 0, 49, 20, 1),
    ("Angelina_Jolie/Angelina_Jolie_0003.jpg", 0, 49, 195, -1),
    ("Hans_Blix/Hans_Blix_0002.jpg", 80, 129, 100, 1),
    ("Zhu_Rongji/Zhu_Rongji_0004.jpg", 160, 209, 195, -1),
    ("Angelina_Jolie/Angelina_Jolie_0004.jpg", 160, 209, 20, 1),
    ("Hans_Blix/Hans_Blix_0003.jpg", 240, 289, 100, -1),
]
WALK_FRAMES = 320


def load_module(name: str, path: Path) -> ModuleType:
    """A helper module of another test folder, by path (their folders are not packages)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Seed:
    data_dir: Path
    since: datetime
    until: datetime
    lin_id: int
    database_url: str | None = None
    """The catalog when it is not the data directory's SQLite file (a PostgreSQL database)."""


def watchlist(app: App, name: str) -> None:
    spec = galleries.validate_spec(
        name=name,
        kind="watchlist",
        purpose="test",
        legal_basis="court order 12",
        authorized_by="Judge A",
        expires_on=date.today() + timedelta(days=30),
    )
    galleries.create_gallery(app, spec)


def make_seed(shared_data: Path, engine, root: Path, database_url: str | None = None) -> Seed:  # type: ignore[no-untyped-def]
    """Watch the three cameras into a fresh catalog under ``root`` (or the empty ``database_url``)."""
    video = load_module("videoclips", TESTS / "video" / "videoclips.py")
    lfw = shared_data / "lfw-dev"
    walks = root / "walks.mp4"
    frames = video.render_walks([(str(lfw / p), a, b, y, d) for p, a, b, y, d in WALKS], WALK_FRAMES)
    video.write_video(str(walks), frames)
    clip = shared_data / "video" / "short_hamilton_clip.mp4"
    data = root / "data"
    since = datetime.now(UTC) - timedelta(minutes=1)
    settings = Settings(data_dir=data, media_dirs=[root, shared_data], database_url=database_url)
    app = App(settings, engine_override=engine)
    try:
        watchlist(app, "wanted")
        lin = enrolment.enroll(
            app,
            "wanted",
            "Lin-Manuel Miranda",
            [load_image(shared_data / "people" / "lin-manuel-miranda.png")],
        )
        cameras.add_camera(app, "hall", str(clip), keep_sightings=True)
        cameras.add_camera(app, "lobby", str(walks), keep_sightings=True)
        cameras.add_camera(app, "street", str(clip))
        watch(app, None, camera="hall")
        watch(app, None, camera="lobby")
        watch(app, None, camera="street", max_frames=60)
    finally:
        app.close()
    return Seed(data, since, datetime.now(UTC) + timedelta(minutes=1), lin.identity_id, database_url)


def copy_seed(seed: Seed, target: Path) -> Path:
    """The seed's data directory copied to ``target`` (with its SQLite catalog, if it has one)."""
    shutil.copytree(seed.data_dir, target)
    return target
