"""`watch` end to end on real video with the real models: alarms, open set, tracking, live streams."""

from __future__ import annotations

import json
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import cv2
import pytest
from videoclips import MjpegServer, render_walks, watchlist, write_video

from vigil.app import App
from vigil.events.schemas import (
    EVENT_ADAPTER,
    Alarm,
    CameraOffline,
    CameraOnline,
    SightingEnded,
    SightingStarted,
)
from vigil.gallery import enroll as enrolment
from vigil.storage.tables import AlarmRecord, Gallery
from vigil.video.pipeline import PipelineEvent
from vigil.video.watch import watch
from vigil.vision.image import load_image

FUTURE = date.today() + timedelta(days=30)


def run_watch(app: App, source: Path | str, **kw: object) -> tuple[list[PipelineEvent], dict, list[str]]:
    events: list[PipelineEvent] = []
    warnings: list[str] = []
    summary = watch(app, str(source), on_event=events.append, on_warning=warnings.append, **kw)  # type: ignore[arg-type]
    return events, summary, warnings


@pytest.fixture(scope="module")
def clip(shared_data: Path) -> Path:
    return shared_data / "video" / "short_hamilton_clip.mp4"


def test_hamilton_one_alarm_per_appearance_and_stored_for_review(app: App, people: Path, clip: Path) -> None:
    watchlist(app, "wanted")
    enrolment.enroll(app, "wanted", "Lin-Manuel Miranda", [load_image(people / "lin-manuel-miranda.png")])
    events, summary, _ = run_watch(app, clip)
    alarms = [e for e in events if isinstance(e, Alarm)]
    ended = {e.track_id: e for e in events if isinstance(e, SightingEnded)}
    lin_tracks = {t for t, e in ended.items() if e.identity == "Lin-Manuel Miranda"}
    # He appears twice: a wide shot (frames 0-18, a face of about 50 px) and a close-up from frame 82.
    assert len(alarms) == 2, alarms
    assert alarms[0].frame < 19 and alarms[1].frame >= 80
    assert {a.identity for a in alarms} == {"Lin-Manuel Miranda"}
    assert sorted(a.track_id for a in alarms) == sorted(lin_tracks)  # one alarm per appearance track
    assert summary["frames"] == 275 and summary["alarms"] == len(alarms) and summary["dropped"] == 0
    a = alarms[0]
    assert a.score >= a.threshold and a.fpir == app.settings.target_fpir and a.model == "dlib-resnet-v1"
    assert set(ended) == {e.track_id for e in events if isinstance(e, SightingStarted)}
    with app.db.session() as s:
        rows = s.query(AlarmRecord).all()
        assert [r.identity_name for r in rows] == ["Lin-Manuel Miranda"] * len(alarms)
        row = rows[0]
        assert row.state == "pending" and row.camera_name == "short_hamilton_clip"
        assert (row.score, row.threshold, row.fpir) == (
            pytest.approx(a.score, abs=1e-5),
            pytest.approx(a.threshold, abs=1e-5),
            a.fpir,
        )
        assert row.crop_sha256 and row.thumbnail_sha256
        crop = cv2.imdecode(
            __import__("numpy").frombuffer(app.blobs.get(row.crop_sha256), "uint8"), cv2.IMREAD_COLOR
        )
        assert crop is not None and crop.shape[0] > 80


def test_hamilton_open_set_no_alarm_for_people_not_in_it(app: App, people: Path, clip: Path) -> None:
    watchlist(app, "others")
    enrolment.enroll(app, "others", "Alex Lacamoire", [load_image(people / "alex-lacamoire.png")])
    enrolment.enroll(app, "others", "Barack Obama", [load_image(people / "obama.jpg")])
    events, summary, _ = run_watch(app, clip)
    assert [e for e in events if isinstance(e, Alarm)] == []
    assert summary["alarms"] == 0 and summary["tracks"] >= 1


def test_galleries_that_are_not_active_watchlists_raise_no_alarms(app: App, people: Path, clip: Path) -> None:
    watchlist(app, "staff", kind="reference")
    watchlist(app, "old")
    for g in ("staff", "old"):
        enrolment.enroll(app, g, "Lin-Manuel Miranda", [load_image(people / "lin-manuel-miranda.png")])
    with app.db.session() as s:
        s.query(Gallery).filter_by(name="old").update({"expires_on": date.today() - timedelta(days=1)})
    events, summary, warnings = run_watch(app, clip, max_frames=150)  # every watchlist: only "old"
    assert summary["alarms"] == 0 and not [e for e in events if isinstance(e, Alarm)]
    assert any("expired" in w for w in warnings)
    events, summary, warnings = run_watch(app, clip, galleries=["staff", "old"], max_frames=150)
    assert summary["alarms"] == 0 and not [e for e in events if isinstance(e, Alarm)]
    assert any("not a watchlist" in w for w in warnings)
    assert any("expired" in w for w in warnings)
    assert any("no active watchlist" in w for w in warnings)


LFW_WALKERS = [
    # (photo walking through, first frame, last frame, y, direction)
    ("Paul_Wolfowitz/Paul_Wolfowitz_0002.jpg", 0, 59, 20, 1),
    ("Jennifer_Lopez/Jennifer_Lopez_0003.jpg", 30, 89, 195, -1),
    ("Ricardo_Lagos/Ricardo_Lagos_0002.jpg", 120, 179, 100, 1),
]


@pytest.fixture(scope="module")
def synthetic(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """Three people from lfw-dev walk across a scene, two of them at the same time."""
    lfw = shared_data / "lfw-dev"
    walks = [(str(lfw / p), a, b, y, d) for p, a, b, y, d in LFW_WALKERS]
    frames = render_walks(walks, 200)
    path = tmp_path_factory.mktemp("synthetic") / "walks.mp4"
    write_video(str(path), frames)
    return path, frames


def test_synthetic_walks_one_stable_track_each_and_one_alarm(
    app: App, shared_data: Path, synthetic: tuple[Path, list]
) -> None:
    watchlist(app, "wanted")
    enrolment.enroll(
        app,
        "wanted",
        "Paul Wolfowitz",
        [load_image(shared_data / "lfw-dev/Paul_Wolfowitz/Paul_Wolfowitz_0003.jpg")],
    )
    events, summary, _ = run_watch(app, synthetic[0])
    started = [e for e in events if isinstance(e, SightingStarted)]
    ended = [e for e in events if isinstance(e, SightingEnded)]
    alarms = [e for e in events if isinstance(e, Alarm)]
    assert len(started) == len(ended) == 3  # one track per walk-through, no fragments
    for e, (_, first, last, _, _) in zip(
        sorted(ended, key=lambda e: e.first_frame), LFW_WALKERS, strict=True
    ):
        assert abs(e.first_frame - first) <= 4 and abs(e.frame - last) <= 4
    assert [(a.identity, a.track_id) for a in alarms] == [("Paul Wolfowitz", started[0].track_id)]
    assert summary["tracks"] == 3


def test_cli_watch_json_lines_camera_and_annotated_video(
    run, people: Path, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    _, err = run("camera", "add", "stage", str(clip), code=3)
    assert f"{clip}: not inside a media folder" in err and "VIGIL_MEDIA_DIRS" in err
    monkeypatch.setenv("VIGIL_MEDIA_DIRS", json.dumps([str(clip.parent)]))
    run(
        "gallery",
        "create",
        "wanted",
        "--kind",
        "watchlist",
        "--purpose",
        "p",
        "--legal-basis",
        "l",
        "--authorized-by",
        "a",
        "--expires",
        FUTURE.isoformat(),
    )
    run("enroll", "Lin-Manuel Miranda", str(people / "lin-manuel-miranda.png"), "--gallery", "wanted")
    out, _ = run(
        "camera",
        "add",
        "stage",
        str(clip),
        "--site",
        "theatre",
        "--location",
        "38.8977,-77.0365",
        "--kind",
        "fixed",
        "--json",
    )
    assert json.loads(out)["name"] == "stage"
    out, _ = run("camera", "list", "--json")
    assert [c["name"] for c in json.loads(out)] == ["stage"]
    run("camera", "add", "bad", "ftp://x/y", code=3)
    run("camera", "add", "stage", str(clip), code=6)

    video = tmp_path / "annotated.mp4"
    out, _ = run("watch", "--camera", "stage", "--gallery", "wanted", "--json", "--annotate", str(video))
    lines = [json.loads(line) for line in out.splitlines()]
    summary = lines[-1]
    assert summary["type"] == "summary"
    for key in ("frames", "dropped", "fps", "alarms"):
        assert key in summary
    alarms = [ln for ln in lines if ln["type"] == "alarm"]
    assert alarms and summary["alarms"] == len(alarms)
    for a in alarms:
        for key, kind in (
            ("identity", str),
            ("gallery", str),
            ("score", float),
            ("threshold", float),
            ("camera", str),
            ("track_id", int),
            ("frame", int),
            ("ts", str),
        ):
            assert isinstance(a[key], kind), key
        assert a["camera"] == "stage" and a["identity"] == "Lin-Manuel Miranda"
        assert len(a["event_id"]) == 32 and a["alarm_id"] and a["crop_sha256"]
        assert "crop_jpeg" not in a and "thumbnail_jpeg" not in a, "the public form: no blobs on stdout"
    for line in out.splitlines()[:-1]:
        EVENT_ADAPTER.validate_json(line)  # every event parses back into its schema
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == summary["frames"]
    cap.release()

    _, errors = run("watch", str(tmp_path / "nope.mp4"), code=3)
    assert "no such file" in errors
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 5000)
    _, errors = run("watch", str(tmp_path / "bad.mp4"), code=9)
    assert "cannot open as a video" in errors
    _, errors = run("watch", "gopher://host/x", code=3)
    assert "unsupported scheme" in errors
    with __import__("sqlite3").connect(run.data_dir / "vigil.db") as db:  # nothing already stored was lost
        assert db.execute("select count(*) from alarms").fetchone()[0] == len(alarms)


@pytest.mark.slow
def test_live_stream_cut_and_restored_goes_on_alarming(
    app: App, shared_data: Path, synthetic: tuple[Path, list]
) -> None:
    watchlist(app, "wanted")
    enrolment.enroll(
        app,
        "wanted",
        "Paul Wolfowitz",
        [load_image(shared_data / "lfw-dev/Paul_Wolfowitz/Paul_Wolfowitz_0003.jpg")],
    )
    server = MjpegServer(synthetic[1][:100], fps=25)
    server.start()
    stop = threading.Event()
    seen: list[PipelineEvent] = []
    cutting = threading.Event()

    def on_event(event: PipelineEvent) -> None:
        seen.append(event)
        kinds = [type(e).__name__ for e in seen if isinstance(e, (Alarm, CameraOffline, CameraOnline))]
        if kinds == ["Alarm"] and not cutting.is_set():
            cutting.set()

            def cut() -> None:
                server.stop()
                time.sleep(1.5)
                server.start()

            threading.Thread(target=cut, daemon=True).start()
        if kinds[-1:] == ["Alarm"] and "CameraOnline" in kinds:
            stop.set()

    try:
        summary = watch(app, server.url, on_event=on_event, max_seconds=60, timeout_s=2, stop=stop)
    finally:
        server.stop()
    kinds = [type(e).__name__ for e in seen if isinstance(e, (Alarm, CameraOffline, CameraOnline))]
    assert kinds[:2] == ["Alarm", "CameraOffline"]
    assert "CameraOnline" in kinds and kinds[-1] == "Alarm"
    assert summary["alarms"] >= 2 and summary["interrupted"] is False
