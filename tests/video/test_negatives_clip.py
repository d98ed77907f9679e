"""Reviews that teach, on video (issue 17.1): a clip of a non-enrolled look-alike replayed after one
dismissal as "not this person" raises no repeat alarm; the enrolled person's clip alarms as before.
Real pipeline (`watch`), real models, real LFW photos; bench/negatives.py prints the same figure."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import select
from videoclips import write_video

from negatives_seed import LOOKALIKE, PERSON, enrol_person, photos
from vigil import accounts
from vigil.app import App
from vigil.events.schemas import Alarm
from vigil.governance import report
from vigil.storage.tables import AlarmRecord, AlarmState, ReviewAction, Role
from vigil.video import alarms as svc
from vigil.video.pipeline import PipelineEvent
from vigil.video.watch import watch


def _clip(path: Path, pictures: list[Path]) -> Path:
    """Each photo on a still 640x360 scene for 12 frames, then 30 frames of the empty scene."""
    rng = np.random.default_rng(3)
    scene = np.full((360, 640, 3), 95, np.uint8)
    frames = []
    for p in pictures:
        img = cv2.imread(str(p))
        shown = scene.copy()
        shown[55:305, 195:445] = img
        for n, base in ((12, shown), (30, scene)):
            noisy = [base + rng.normal(0, 1.5, base.shape) for _ in range(n)]
            frames += [np.clip(f, 0, 255).astype(np.uint8) for f in noisy]
    write_video(str(path), frames)
    return path


def _states(app: App, camera: str) -> list[AlarmState]:
    with app.db.session() as s:
        return list(s.scalars(select(AlarmRecord.state).where(AlarmRecord.camera_name == camera)))


def test_one_dismissal_stops_the_lookalikes_repeat_alarms(
    app: App, shared_data: Path, tmp_path: Path
) -> None:
    enrol_person(app, shared_data)
    jolie, lopez = photos(shared_data, LOOKALIKE), photos(shared_data, PERSON)[2:]
    clips = {f"{who}-{n}": _clip(tmp_path / f"{who}-{n}.mp4", pics) for who, pics in
             (("lookalike", jolie), ("person", lopez)) for n in (1, 2)}  # fmt: skip
    seen: list[PipelineEvent] = []
    for cam in ("lookalike-1", "person-1"):
        watch(app, str(clips[cam]), on_event=seen.append)
    before = [a for a in seen if isinstance(a, Alarm) and a.camera == "lookalike-1"]
    assert len(before) == len(jolie) == 7  # every appearance of the look-alike is a false alarm
    assert _states(app, "person-1") == [AlarmState.pending] * len(lopez)

    accounts.add_user(app, "rev", Role.operator, by="test")
    first = min(before, key=lambda a: a.frame)
    assert first.alarm_id is not None
    detail = svc.review_alarm(
        app,
        first.alarm_id,
        ReviewAction.dismiss,
        accounts.user_principal(app, "rev"),
        expected_version=0,
        reason="not her",
        not_this_person=True,
    )
    assert detail.negative is not None

    seen.clear()
    for cam in ("lookalike-2", "person-2"):
        summary = watch(app, str(clips[cam]), on_event=seen.append)
        if cam == "lookalike-2":
            assert summary["alarms"] == 0  # nothing raised, nothing passed on
    assert not [e for e in seen if isinstance(e, Alarm) and e.camera == "lookalike-2"]
    assert _states(app, "lookalike-2") == [AlarmState.suppressed] * len(jolie)  # kept for the record
    # Negatives only remove alarms: the person's own appearances alarm exactly as before.
    assert _states(app, "person-2") == [AlarmState.pending] * len(lopez)
    shown = svc.alarm_detail(app, svc.list_alarms(app, camera="lookalike-2", limit=1)[0].id)
    assert [n.alarm_id for n in shown.suppressions] == [first.alarm_id]
    with app.db.session() as s:
        assert s.scalar(select(AlarmRecord.id).where(AlarmRecord.id == first.alarm_id)) is not None
    assert svc.alarm_detail(app, first.alarm_id).negative.uses == len(jolie)  # type: ignore[union-attr]
    # The transparency report counts them apart: raised alarms, and those earlier dismissals stopped.
    r = report.build(app)
    assert (r.alarms, r.suppressed) == (len(jolie) + 2 * len(lopez), len(jolie))
    row = next(w for w in r.per_watchlist_camera if w.camera == "lookalike-2")
    assert (row.alarms, row.suppressed) == (0, len(jolie))
    assert f"suppressed by earlier dismissals (negative examples): {len(jolie)}" in report.to_html(r)
