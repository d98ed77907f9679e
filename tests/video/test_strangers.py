"""Stranger alarms on real video with the real models: one per track, quality gating, hours."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from videoclips import render_walks, watchlist, write_video

from vigil.accounts import Principal, create_user
from vigil.app import App
from vigil.core.errors import InputError, NotFoundError
from vigil.events.schemas import Alarm, SightingEnded
from vigil.gallery import enroll as enrolment
from vigil.gallery.schedule import DAYS, local_zone
from vigil.governance import report
from vigil.storage.tables import AlarmKind, AlarmRecord, AlarmState, ReviewAction, Role
from vigil.video import alarms as alarm_svc
from vigil.video import cameras
from vigil.video.strangers import StrangerRule, parse_hours
from vigil.video.watch import watch
from vigil.vision.image import load_image

STAFF = "Colin_Powell"
STRANGER = "George_W_Bush"


def lfw(shared: Path, person: str, i: int) -> str:
    """The ``i``-th photo (0-based, in name order) of ``person`` in LFW."""
    return str(sorted((shared / "lfw-dev" / person).glob("*.jpg"))[i])


@pytest.fixture
def staffed(app: App, shared_data: Path) -> App:
    """A reference gallery ``staff`` with one person, enrolled from photos other than the clip's."""
    watchlist(app, "staff", kind="reference")
    photos = [load_image(Path(lfw(shared_data, STAFF, i))) for i in (1, 2, 3)]  # the clips show photo 0
    enrolment.enroll(app, "staff", STAFF.replace("_", " "), photos)
    return app


def clip(
    tmp_path: Path, name: str, walks: list[tuple[str, int, int, int, int]], size: int = 150, blur: float = 0
) -> Path:
    """A 70-frame clip of the ``walks`` (see ``render_walks``), faces ``size`` px, Gaussian ``blur``."""
    frames = render_walks(walks, 70, size=size)
    if blur:
        frames = [cv2.GaussianBlur(f, (0, 0), blur) for f in frames]
    path = tmp_path / f"{name}.mp4"
    write_video(str(path), frames)
    return path


def run_camera(app: App, name: str, path: Path, rule: StrangerRule) -> list[Alarm]:
    cameras.add_camera(app, name, str(path), strangers=rule)
    events: list[object] = []
    watch(app, None, camera=name, on_event=events.append)
    return [e for e in events if isinstance(e, Alarm)]


def test_one_stranger_alarm_for_the_stranger_none_for_staff(
    staffed: App, shared_data: Path, tmp_path: Path
) -> None:
    staff, stranger = lfw(shared_data, STAFF, 0), lfw(shared_data, STRANGER, 0)
    path = clip(tmp_path, "both", [(staff, 0, 60, 20, 1), (stranger, 0, 60, 190, -1)])
    events: list[object] = []
    cameras.add_camera(staffed, "lab-door", str(path), strangers=StrangerRule(galleries=["staff"]))
    watch(staffed, None, camera="lab-door", on_event=events.append)
    alarms = [e for e in events if isinstance(e, Alarm)]
    tracks = {e.track_id for e in events if isinstance(e, SightingEnded)}
    assert len(tracks) == 2, events
    assert len(alarms) == 1, alarms
    a = alarms[0]
    assert a.kind == "stranger" and a.identity is None and a.gallery is None and a.identity_id is None
    assert a.galleries_checked == ["staff"] and a.score < a.threshold
    assert a.xyxy[1] > 150  # the lower face: the stranger's walk
    with staffed.db.session() as s:
        row = s.query(AlarmRecord).one()
        assert row.kind is AlarmKind.stranger and row.gallery_id is None and row.identity_id is None
        assert row.retention_days == staffed.settings.stranger_retention_days
        assert row.crop_sha256 and staffed.blobs.get(row.crop_sha256)[:2] == b"\xff\xd8"
    info = alarm_svc.list_alarms(staffed, kind=AlarmKind.stranger)
    assert [(i.kind, i.identity, i.gallery, i.confirmations_required) for i in info] == [
        (AlarmKind.stranger, None, None, 1)
    ]
    assert alarm_svc.list_alarms(staffed, kind=AlarmKind.match) == []
    entry = next(e for e in _audit(staffed) if e["action"] == "alarm")
    assert entry["detail"]["kind"] == "stranger" and entry["detail"]["galleries_checked"] == ["staff"]
    # Reviewed like any other alarm: no gallery, so one confirmation decides it.
    user = create_user(staffed, "guard", Role.operator, "a long password here")
    me = Principal("user", user.id, user.username, user.role)
    done = alarm_svc.review_alarm(staffed, info[0].id, ReviewAction.confirm, me, expected_version=0)
    assert done.state is AlarmState.confirmed and done.enrolled_photos == []
    # The transparency report states the rule and counts the stranger alarm.
    r = report.build(staffed)
    assert r.stranger_alarms == 1 and r.alarms == 1 and r.confirmed == 1
    assert [(w.watchlist, w.camera, w.confirmed) for w in r.per_watchlist_camera] == [
        (report.STRANGER_ROW, "lab-door", 1)
    ]
    assert [(x.camera, x.galleries, x.hours, x.min_quality, x.retention_days) for x in r.stranger_rules] == [
        ("lab-door", ["staff"], None, staffed.settings.stranger_min_quality, 7)
    ]
    assert "Stranger rules in force" in report.to_html(r)


def _audit(app: App) -> list[dict]:
    from vigil.storage import audit

    return [json.loads(e.model_dump_json()) for e in audit.entries(app)]


def test_staff_alone_raises_nothing(staffed: App, shared_data: Path, tmp_path: Path) -> None:
    path = clip(tmp_path, "staff", [(lfw(shared_data, STAFF, 0), 0, 60, 80, 1)])
    assert run_camera(staffed, "door", path, StrangerRule(galleries=["staff"])) == []


@pytest.mark.parametrize(("why", "kw"), [("tiny face", {"size": 60}), ("blurred face", {"blur": 3.0})])
def test_blurred_or_small_faces_are_never_strangers(
    staffed: App, shared_data: Path, tmp_path: Path, why: str, kw: dict
) -> None:
    path = clip(tmp_path, "poor", [(lfw(shared_data, STRANGER, 0), 0, 60, 80, 1)], **kw)
    assert run_camera(staffed, "door", path, StrangerRule(galleries=["staff"])) == [], why
    # The same clip with the gate lowered below its quality raises the alarm: the gate is what stopped it.
    assert len(run_camera(staffed, "door2", path, StrangerRule(galleries=["staff"], min_quality=0.5))) == 1


def test_outside_the_hours_no_alarm(staffed: App, shared_data: Path, tmp_path: Path) -> None:
    path = clip(tmp_path, "night", [(lfw(shared_data, STRANGER, 0), 0, 60, 80, 1)])
    today = datetime.now(UTC).astimezone(local_zone(staffed.settings)).weekday()
    others = ",".join(DAYS[d] for d in range(7) if d not in {today, (today + 1) % 7, (today - 1) % 7})
    assert run_camera(staffed, "door", path, StrangerRule(galleries=["staff"], hours=others)) == []
    assert len(run_camera(staffed, "door2", path, StrangerRule(galleries=["staff"], hours=DAYS[today]))) == 1


def test_hamilton_clip_a_stranger_close_up_alarms_once_the_wide_shot_is_too_small(
    app: App, people: Path, shared_data: Path
) -> None:
    watchlist(app, "crew", kind="reference")
    enrolment.enroll(app, "crew", "Alex Lacamoire", [load_image(people / "alex-lacamoire.png")])
    video = shared_data / "video" / "short_hamilton_clip.mp4"
    alarms = run_camera(app, "stage", video, StrangerRule(galleries=["crew"]))
    # Lin-Manuel Miranda (not in "crew") is seen twice: a wide shot of a ~50 px face (quality about 0.82,
    # under the gate) and a close-up from frame 84 (about 0.97): one stranger alarm, on the close-up.
    assert [(a.kind, a.frame >= 80) for a in alarms] == [("stranger", True)], alarms
    # With him in the gallery, nobody on the stage is a stranger.
    enrolment.enroll(app, "crew", "Lin-Manuel Miranda", [load_image(people / "lin-manuel-miranda.png")])
    assert run_camera(app, "stage2", video, StrangerRule(galleries=["crew"])) == []


def test_suspended_rule_raises_nothing_and_says_why(app: App, shared_data: Path, tmp_path: Path) -> None:
    watchlist(app, "staff", kind="reference")  # nobody enrolled: it cannot tell who belongs
    path = clip(tmp_path, "x", [(lfw(shared_data, STRANGER, 0), 0, 60, 80, 1)])
    cameras.add_camera(app, "door", str(path), strangers=StrangerRule(galleries=["staff"]))
    warnings: list[str] = []
    events: list[object] = []
    watch(app, None, camera="door", on_event=events.append, on_warning=warnings.append)
    assert not [e for e in events if isinstance(e, Alarm)]
    assert any("stranger rule suspended" in w and "no templates" in w for w in warnings), warnings


@pytest.mark.parametrize(
    ("rule", "error", "says"),
    [
        (StrangerRule(galleries=["nobody"]), NotFoundError, "no gallery named 'nobody'"),
        (StrangerRule(galleries=[" ", ""]), InputError, "at least one gallery"),
        (StrangerRule(galleries=[f"g{i}" for i in range(21)]), InputError, "at most 20"),
        (StrangerRule(galleries=["staff\x00\x1b[31m"]), NotFoundError, "no gallery named"),
        (StrangerRule(galleries=["staff"], hours="mon-fri 25:00-26:00"), InputError, "stranger_hours"),
        (StrangerRule(galleries=["staff"], hours="weekdays"), InputError, "stranger_hours"),
        (StrangerRule(galleries=["staff"], hours="08:00-08:00"), InputError, "same time"),
        (StrangerRule(galleries=["staff"], hours="\x00" * 500), InputError, "stranger_hours"),
        (StrangerRule(galleries=["staff"], min_quality=1.5), InputError, "stranger_min_quality"),
    ],
)
def test_bad_rules_are_refused_and_nothing_changes(
    app: App, tmp_path: Path, rule: StrangerRule, error: type, says: str
) -> None:
    watchlist(app, "staff", kind="reference")
    (tmp_path / "v.mp4").write_bytes(b"")
    cameras.add_camera(app, "door", str(tmp_path / "v.mp4"))
    with pytest.raises(error, match=None) as exc:
        cameras.update_camera(app, "door", strangers=rule)
    assert says in str(exc.value)
    with pytest.raises(error):
        cameras.add_camera(app, "door2", str(tmp_path / "v.mp4"), strangers=rule)
    assert [c.name for c in cameras.list_cameras(app)] == ["door"]
    assert cameras.get_camera(app, "door")[0].strangers is None


def test_rule_set_changed_and_cleared_is_audited(app: App, tmp_path: Path) -> None:
    watchlist(app, "staff", kind="reference")
    watchlist(app, "students", kind="attendance")
    (tmp_path / "v.mp4").write_bytes(b"")
    cameras.add_camera(app, "door", str(tmp_path / "v.mp4"))
    rule = StrangerRule(
        galleries=["staff", " students", "staff"], hours="Mon-Fri 7:00-19:00", min_quality=0.9
    )
    before, after = cameras.update_camera(app, "door", strangers=rule, actor="cli:tester")
    assert before.strangers is None
    assert after.strangers == StrangerRule(
        galleries=["staff", "students"], hours="mon,tue,wed,thu,fri 07:00-19:00", min_quality=0.9
    )
    _, cleared = cameras.update_camera(app, "door", clear_strangers=True, actor="cli:tester")
    assert cleared.strangers is None
    updates = [e for e in _audit(app) if e["action"] == "camera_update"]
    assert [u["detail"]["after"]["strangers"] is not None for u in updates] == [True, False]
    assert updates[0]["actor"] == "cli:tester"


def test_hours_windows() -> None:
    night = parse_hours("22:00-06:00")
    assert night.applies_at(datetime(2026, 12, 2, 23, 30)) and night.applies_at(datetime(2026, 12, 2, 5, 59))
    assert not night.applies_at(datetime(2026, 12, 2, 6, 0)) and not night.applies_at(
        datetime(2026, 12, 2, 12)
    )
    weekend = parse_hours("sat, sun")
    assert weekend.text == "sat,sun"
    assert weekend.applies_at(datetime(2026, 12, 5, 12)) and not weekend.applies_at(datetime(2026, 12, 4, 12))
    assert parse_hours("mon-sun").text == ""  # every day: always
    day = parse_hours("mon-fri 08:00-18:00")
    wed = datetime(2026, 12, 2, 8, 0)
    assert day.applies_at(wed) and not day.applies_at(wed - timedelta(minutes=1))
    assert not day.applies_at(wed.replace(hour=18))


def test_stranger_alarms_are_purged_after_their_own_retention_with_their_files(
    staffed: App, shared_data: Path, tmp_path: Path
) -> None:
    from vigil.governance import retention

    staff = lfw(shared_data, STAFF, 0)
    watchlist(staffed, "wanted")  # the staff member is also on a watchlist kept until deleted
    enrolment.enroll(staffed, "wanted", "Colin Powell", [load_image(Path(lfw(shared_data, STAFF, 1)))])
    path = clip(tmp_path, "both", [(staff, 0, 60, 20, 1), (lfw(shared_data, STRANGER, 0), 0, 60, 190, -1)])
    cameras.add_camera(
        staffed, "lab", str(path), retention_days=3, strangers=StrangerRule(galleries=["staff"])
    )
    watch(staffed, None, camera="lab")
    with staffed.db.session() as s:
        rows = {r.kind: r for r in s.query(AlarmRecord)}
        assert set(rows) == {AlarmKind.match, AlarmKind.stranger}
        stranger = rows[AlarmKind.stranger]
        assert stranger.retention_days == 3 and rows[AlarmKind.match].retention_days is None
        files = [stranger.crop_sha256, stranger.thumbnail_sha256]
    assert all(f and staffed.blobs.exists(f) for f in files)
    assert retention.purge(staffed, now=datetime.now(UTC) + timedelta(days=2)).alarms == 0
    report = retention.purge(staffed, now=datetime.now(UTC) + timedelta(days=4))
    assert report.alarms == 1
    assert not any(staffed.blobs.exists(f) for f in files if f)
    with staffed.db.session() as s:
        assert [r.kind for r in s.query(AlarmRecord)] == [AlarmKind.match]  # the match alarm stays


def test_a_track_is_decided_before_it_ends_after_enough_good_shots(
    staffed: App, shared_data: Path, tmp_path: Path
) -> None:
    # Every better shot embedded (up to 3 per track): the second qualifying one decides, mid-track.
    staffed.settings = staffed.settings.model_copy(update={"video_improve_by": 0.0, "stranger_shots": 2})
    path = clip(tmp_path, "long", [(lfw(shared_data, STRANGER, 0), 0, 60, 80, 1)])
    cameras.add_camera(staffed, "door", str(path), strangers=StrangerRule(galleries=["staff"]))
    events: list[object] = []
    done = [0]
    raised_after: list[int] = []  # frames processed when the alarm came

    def on_event(e: object) -> None:
        events.append(e)
        if isinstance(e, Alarm):
            raised_after.append(done[0])

    watch(
        staffed, None, camera="door", on_event=on_event, on_progress=lambda n, total: done.__setitem__(0, n)
    )
    (alarm,) = [e for e in events if isinstance(e, Alarm)]
    (ended,) = [e for e in events if isinstance(e, SightingEnded)]
    assert ended.embeddings >= 2 and alarm.kind == "stranger"
    assert raised_after[0] < ended.frame - 10, (raised_after, ended.frame)  # not at the track's end


def test_a_track_that_matches_later_is_never_a_stranger(staffed: App, shared_data: Path) -> None:
    """The decision on real faces and embeddings, shots of one track fed in turn: a stranger-looking
    shot, then one that matches the staff gallery; the track ends with no stranger alarm."""
    from vigil.core.frame import Frame
    from vigil.video.strangers import StrangerWatch

    cameras.add_camera(staffed, "door", "rtsp://127.0.0.1:9/x", strangers=StrangerRule(galleries=["staff"]))
    cam_id = cameras.get_camera(staffed, "door")[0].id
    watcher = StrangerWatch(staffed, "door", cam_id)
    assert watcher.rule is not None

    def shot(path: str) -> tuple[Frame, object]:
        img = load_image(Path(path))
        faces = staffed.engine.embed(img.bgr, staffed.engine.detect(img.bgr)[0])
        faces = faces.with_(track_id=np.asarray([7]), quality=np.asarray([0.95], np.float32))
        return Frame("door", 1, img.bgr, datetime.now(UTC), 0.0, 0.0), faces

    assert watcher.decide(*shot(lfw(shared_data, STRANGER, 0))) == []  # one good shot: not decided yet
    assert watcher.tracks[7].pending is not None
    assert watcher.decide(*shot(lfw(shared_data, STAFF, 0))) == []  # he belongs here after all
    assert watcher.ended(7) == []
    # The same stranger shot on a new track, then the track ends: one stranger alarm.
    frame, faces = shot(lfw(shared_data, STRANGER, 0))
    assert watcher.decide(frame, faces.with_(track_id=np.asarray([8]))) == []  # type: ignore[attr-defined]
    (alarm,) = watcher.ended(8)
    assert alarm.kind == "stranger" and alarm.track_id == 8 and watcher.ended(8) == []
