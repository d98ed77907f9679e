"""A file camera resumed after its worker stopped: it continues where it was and stores no alarm twice."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from videoclips import watchlist

from vigil.app import App
from vigil.core.config import Settings
from vigil.core.errors import InputError
from vigil.events.schemas import Alarm, event_id_for
from vigil.gallery import enroll as enrolment
from vigil.storage.tables import AlarmRecord, Identity
from vigil.video import cameras, resume
from vigil.video.alarms import store_alarm
from vigil.video.sources import FileSource
from vigil.video.watch import watch
from vigil.vision.image import load_image


@pytest.fixture(scope="module")
def clip(shared_data: Path) -> Path:
    return shared_data / "video" / "short_hamilton_clip.mp4"


@pytest.fixture
def stage(app: App, people: Path, clip: Path) -> int:
    """Lin-Manuel Miranda on a watchlist and the hamilton clip as camera ``stage``; its id."""
    watchlist(app, "wanted")
    enrolment.enroll(app, "wanted", "Lin-Manuel Miranda", [load_image(people / "lin-manuel-miranda.png")])
    return cameras.add_camera(app, "stage", str(clip)).id


def _alarms(app: App, camera: str) -> list[AlarmRecord]:
    with app.db.session() as s:
        return list(s.query(AlarmRecord).filter(AlarmRecord.camera_name == camera).order_by(AlarmRecord.id))


def _watch_until(app: App, frame: int | None) -> tuple[dict, list[Alarm], list[int]]:
    """Run camera ``stage`` as a worker does (resume on), stopped after ``frame`` (None: to the end)."""
    stop = threading.Event()
    seen: list[int] = []
    alarms: list[Alarm] = []

    def progress(done: int, total: int | None) -> None:
        seen.append(done - 1)
        if frame is not None and done - 1 >= frame:
            stop.set()

    summary = watch(
        app,
        None,
        camera="stage",
        resume=True,
        stop=stop,
        on_progress=progress,
        on_event=lambda e: alarms.append(e) if isinstance(e, Alarm) else None,
    )
    return summary, alarms, seen


def test_a_stopped_file_camera_continues_where_it_was_with_no_alarm_twice(
    app: App, stage: int, clip: Path
) -> None:
    clean = watch(app, str(clip))  # a clean run of the whole file (named after it)
    clean_alarms = _alarms(app, "short_hamilton_clip")
    assert len(clean_alarms) == clean["alarms"] == 2
    # Stopped in the middle of his close-up (frames 82 to the end), after its alarm.
    first, alarms1, seen1 = _watch_until(app, 150)
    assert len(alarms1) == 2 and seen1[0] == 0
    state = resume.load_progress(app.settings, stage, clip)
    # Saved before the frames still queued for detection were processed: those are seen again.
    assert not state.finished and 140 <= state.next_frame <= 151, state
    assert [a.identity_id for a in state.open_alarms] == [alarms1[1].identity_id]
    second, alarms2, seen2 = _watch_until(app, None)
    assert seen2[0] == state.next_frame, "it continues where it was, not from frame 0"
    assert alarms2 == [], "he is still on stage: the same appearance, no second alarm"
    stored = _alarms(app, "stage")
    assert len(stored) == len(clean_alarms)
    assert [r.frame_index for r in stored] == [r.frame_index for r in clean_alarms]
    assert second["frames"] == clean["frames"] - state.next_frame and first["frames"] >= state.next_frame
    assert resume.load_progress(app.settings, stage, clip).finished
    # Started again (a server restart): a finished file does nothing.
    third, alarms3, seen3 = _watch_until(app, None)
    assert third.get("already_finished") and not alarms3 and not seen3
    assert len(_alarms(app, "stage")) == len(clean_alarms)


def test_a_worker_killed_between_storing_an_alarm_and_saving_replays_without_a_duplicate(
    app: App, stage: int, clip: Path
) -> None:
    _, alarms1, _ = _watch_until(app, 150)
    state = resume.load_progress(app.settings, stage, clip)
    # As if the position had last been saved a few frames before the close-up's alarm was stored.
    back = alarms1[1].frame - 3
    state.next_frame, state.open_alarms = back, []
    resume.save_progress(app.settings, stage, state)
    _, alarms2, seen2 = _watch_until(app, None)
    assert seen2[0] == back and alarms2 == []
    assert len(_alarms(app, "stage")) == 2


def test_a_replaced_file_starts_over(app: App, tmp_path: Path, clip: Path) -> None:
    video = tmp_path / "a.mp4"
    video.write_bytes(clip.read_bytes())
    saved = resume.load_progress(app.settings, 7, video)
    saved.next_frame, saved.finished = 200, True
    resume.save_progress(app.settings, 7, saved)
    assert resume.load_progress(app.settings, 7, video).next_frame == 200
    os.utime(video, ns=(saved.mtime_ns + 10**9, saved.mtime_ns + 10**9))
    again = resume.load_progress(app.settings, 7, video)
    assert (again.next_frame, again.finished) == (0, False)
    resume.state_path(app.settings, 7).write_text("{not json")
    assert resume.load_progress(app.settings, 7, video).next_frame == 0


def test_forget_finished_lets_a_finished_file_play_again(app: App, tmp_path: Path, clip: Path) -> None:
    progress = resume.load_progress(app.settings, 3, clip)
    progress.next_frame = 100
    resume.save_progress(app.settings, 3, progress)
    resume.forget_finished(app.settings, 3)
    assert resume.load_progress(app.settings, 3, clip).next_frame == 100, "not finished: kept"
    progress.finished = True
    resume.save_progress(app.settings, 3, progress)
    resume.forget_finished(app.settings, 3)
    assert resume.load_progress(app.settings, 3, clip).next_frame == 0


def test_carried_alarms_each_absorb_one_track_near_the_resume_point() -> None:
    carried = resume.CarriedAlarms([(5, 100), (5, 100), (6, 100)])
    assert not carried.take(7, 90), "another person"
    assert not carried.take(5, 101), "a track that began after the appearance must have ended"
    assert carried.take(5, 95) and carried.take(5, 99) and not carried.take(5, 99)
    assert carried.take(6, 100)


def test_store_alarm_is_idempotent(app: App, stage: int) -> None:
    with app.db.session() as s:
        identity_id = s.query(Identity.id).scalar()

    def alarm(at: datetime) -> Alarm:
        box = [1.0, 2.0, 30.5, 40.0]
        return Alarm(
            event_id=event_id_for("alarm", "stage", stage, identity_id, 120, at, box),
            camera="stage",
            camera_id=stage,
            ts=at,
            gallery="wanted",
            identity="Lin-Manuel Miranda",
            identity_id=identity_id,
            track_id=3,
            frame=120,
            score=0.9,
            threshold=0.5,
            fpir=0.01,
            model="dlib-resnet-v1",
            xyxy=box,
            quality=0.7,
            latency_ms=1.0,
            crop_jpeg=b"crop",
            thumbnail_jpeg=b"thumb",
        )

    at = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    first = store_alarm(app, alarm(at))
    again = store_alarm(app, alarm(at))
    assert first is not None and first.alarm_id is not None and again is None
    later = store_alarm(app, alarm(at + timedelta(hours=1)))
    assert later is not None, "the same frame of another play of the file is another alarm"
    assert len(_alarms(app, "stage")) == 2


def test_file_source_starts_at_a_frame_with_its_time_and_position(clip: Path) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    src = FileSource(clip, "c", start=start, first_frame=100)
    try:
        frames = list(src)
    finally:
        src.close()
    assert frames[0].index == 100 and len(frames) == 175
    assert frames[0].ts == start + timedelta(seconds=100 / src.source_fps)
    assert frames[0].pos_s == pytest.approx(100 / src.source_fps)
    at_end = FileSource(clip, "c", first_frame=275)
    assert list(at_end) == []  # resumed at its end: nothing left, no error
    at_end.close()


# -- media folders -----------------------------------------------------------------------------


@pytest.fixture
def media(tmp_path: Path, clip: Path) -> tuple[Settings, Path]:
    folder = tmp_path / "media"
    (folder / "stills").mkdir(parents=True)
    (folder / "clip.mp4").write_bytes(clip.read_bytes())
    (folder / "escape").symlink_to("/etc")
    (folder / "passwd.mp4").symlink_to("/etc/passwd")
    return Settings(data_dir=tmp_path / "data", media_dirs=[folder]), folder


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("{media}/clip.mp4", None),
        ("{media}/stills", None),
        ("{media}/../media/clip.mp4", None),
        ("/etc/passwd", "not inside a media folder"),
        ("/etc", "not inside a media folder"),
        ("{media}/escape/passwd", "not inside a media folder"),
        ("{media}/passwd.mp4", "not inside a media folder"),
        ("{media}/../secret.mp4", "not inside a media folder"),
        ("{media}/missing.mp4", "no such file or folder"),
        ("rtsp://10.0.0.2/stream", "network"),
        ("http://10.0.0.2/mjpeg", "network"),
        ("webcam:0", "network"),
    ],
)
def test_file_cameras_are_confined_to_the_media_folders(
    media: tuple[Settings, Path], url: str, expected: str | None
) -> None:
    settings, folder = media
    url = url.format(media=folder)
    if expected == "network":
        assert cameras.check_media_path(settings, url) is None
    elif expected is None:
        assert cameras.check_media_path(settings, url) == Path(url).resolve()
    else:
        with pytest.raises(InputError, match=expected) as info:
            cameras.check_media_path(settings, url)
        assert url in str(info.value)
        assert ("VIGIL_MEDIA_DIRS" in str(info.value)) == expected.startswith("not inside")


def test_media_folder_defaults_to_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.media_folders == [(tmp_path / "data" / "media").resolve()]


def test_add_camera_refuses_a_file_outside_the_media_folders(app: App) -> None:
    with pytest.raises(InputError, match="/etc/passwd: not inside a media folder"):
        cameras.add_camera(app, "etc", "/etc/passwd")
    assert cameras.list_cameras(app) == []
    assert cameras.add_camera(app, "gate", "rtsp://10.0.0.2/s1").name == "gate"


def test_deleting_a_camera_forgets_its_position(app: App, stage: int, clip: Path) -> None:
    resume.save_progress(app.settings, stage, resume.load_progress(app.settings, stage, clip))
    assert resume.state_path(app.settings, stage).is_file()
    cameras.delete_camera(app, "stage")
    assert not resume.state_path(app.settings, stage).exists()
