"""The event schemas: wire round trip with blobs, the public form without them, hostile input refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from vigil.events.schemas import (
    BLOB_FIELDS,
    EVENT_ADAPTER,
    EVENT_TYPES,
    MAX_BLOB_BYTES,
    SCHEMA_VERSION,
    Alarm,
    AlarmReviewed,
    AnyEvent,
    AttendanceMarked,
    CameraOffline,
    CameraOnline,
    CameraStatus,
    ComparisonProgress,
    SightingEnded,
    SightingRecorded,
    SightingStarted,
    event_id_for,
    public,
)

TS = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
CROP = bytes(range(256)) * 40  # every byte value, newlines and NULs included


def alarm(**kw: object) -> Alarm:
    fields: dict[str, object] = {
        "camera": "gate/1",
        "camera_id": 3,
        "ts": TS,
        "identity": "Lin-Manuel Miranda",
        "identity_id": 7,
        "gallery": "wanted",
        "score": 0.93,
        "threshold": 0.9,
        "fpir": 0.01,
        "model": "dlib-resnet-v1",
        "track_id": 1,
        "frame": 82,
        "xyxy": [1.0, 2.0, 3.0, 4.0],
        "quality": 0.7,
        "latency_ms": 12.5,
        "crop_jpeg": CROP,
        "thumbnail_jpeg": CROP[::-1],
    }
    return Alarm(**{**fields, **kw})  # type: ignore[arg-type]


def one_of_each() -> list[AnyEvent]:
    common = {"camera": "c", "ts": TS}
    return [
        SightingStarted(**common, track_id=1, frame=0, xyxy=[0, 0, 1, 1]),
        SightingEnded(
            **common, track_id=1, frame=9, first_frame=0, frames_seen=4, best_quality=0.5, embeddings=1
        ),
        alarm(device="pole-17"),
        AttendanceMarked(
            **common,
            identity="a",
            identity_id=1,
            gallery="staff",
            score=0.9,
            threshold=0.8,
            fpir=0.01,
            model="m",
            track_id=1,
            frame=3,
            xyxy=[0, 0, 1, 1],
        ),
        SightingRecorded(
            **common,
            track_id=1,
            first_frame=0,
            first_seen=TS,
            last_seen=TS,
            frames=4,
            quality=0.5,
            model="m",
            embedding=b"\x00\x00\x80?" * 128,
            crop_jpeg=CROP,
        ),
        CameraOffline(**common, reason="timeout", retry_in_s=2.0),
        CameraOnline(**common, reconnects=1),
        CameraStatus(camera="c", state="running", restarts=0),
        AlarmReviewed(
            camera="c",
            alarm_id=1,
            action="confirm",
            state="confirmed",
            confirmations=1,
            confirmations_required=1,
            by="user:a",
        ),
        ComparisonProgress(
            id="ab12",
            state="running",
            case="case 1",
            gallery_a="a",
            gallery_b="b",
            created_at=TS,
            done=1,
            total=2,
        ),
    ]


def test_every_type_is_in_the_union_once() -> None:
    events = one_of_each()
    assert sorted(e.type for e in events) == sorted(EVENT_TYPES) and len(set(EVENT_TYPES)) == len(EVENT_TYPES)


@pytest.mark.parametrize("event", one_of_each(), ids=lambda e: e.type)
def test_the_wire_form_reads_back_equal_blobs_included(event: AnyEvent) -> None:
    wire = event.model_dump_json()
    back = EVENT_ADAPTER.validate_json(wire)
    assert back == event and type(back) is type(event)
    assert back.version == SCHEMA_VERSION and back.event_id == event.event_id
    for name in BLOB_FIELDS & set(type(event).model_fields):
        value = getattr(event, name)
        if value is not None:
            assert json.loads(wire)[name] == base64.b64encode(value).decode(), "standard base64, no newlines"


@pytest.mark.parametrize("event", one_of_each(), ids=lambda e: e.type)
def test_the_public_form_has_type_version_and_id_and_no_blob(event: AnyEvent) -> None:
    body = public(event)
    assert body["type"] == event.type and body["version"] == SCHEMA_VERSION
    assert body["event_id"] == event.event_id
    assert not BLOB_FIELDS & set(body)
    json.dumps(body)  # JSON-able as it is


def test_an_alarm_keeps_its_crop_bytes_as_they_are() -> None:
    a = alarm()
    assert a.crop_jpeg == CROP, "Python bytes are not base64-decoded"
    assert EVENT_ADAPTER.validate_json(a.model_dump_json()).crop_jpeg == CROP


def test_deterministic_ids_depend_on_every_part() -> None:
    base = event_id_for("alarm", "gate", 3, 7, 82, TS, [1.0, 2.0])
    assert base == event_id_for("alarm", "gate", 3, 7, 82, TS.astimezone(), [1.0, 2.0]), "same instant"
    others = {
        event_id_for("alarm", "gate", 3, 7, 83, TS, [1.0, 2.0]),
        event_id_for("alarm", "gate2", 3, 7, 82, TS, [1.0, 2.0]),
        event_id_for("attendance", "gate", 3, 7, 82, TS, [1.0, 2.0]),
        event_id_for("alarm", "gate", 3, 7, 82, TS, [1.0, 2.1]),
    }
    assert base not in others and len(others) == 4 and len(base) == 32


def test_random_ids_differ() -> None:
    assert len({CameraStatus(camera="c", state="running", restarts=0).event_id for _ in range(50)}) == 50


def test_a_version_1_line_still_parses() -> None:
    line = json.dumps(
        {"version": 1, "type": "camera_online", "camera": "c", "ts": TS.isoformat(), "reconnects": 0}
    )
    event = EVENT_ADAPTER.validate_json(line)
    assert event.version == 1 and len(event.event_id) == 32


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"type": "alarm_v9"}, "does not match any of the expected tags"),
        ({"crop_jpeg": "not base64!"}, "not valid base64"),
        ({"crop_jpeg": base64.b64encode(b"x" * (MAX_BLOB_BYTES + 1)).decode()}, "at most"),
        ({"event_id": "a/b"}, "should match pattern"),
        ({"event_id": "id\n\x00"}, "should match pattern"),
        ({"event_id": "x" * 65}, "at most 64 characters"),
        ({"event_id": ""}, "at least 1 character"),
        ({"identity_id": "seven"}, "valid integer"),
        ({"ts": "yesterday"}, "valid datetime"),
    ],
)
def test_hostile_wire_input_is_refused_with_a_clear_error(change: dict[str, object], words: str) -> None:
    body = {**json.loads(alarm().model_dump_json()), **change}
    with pytest.raises(ValidationError) as info:
        EVENT_ADAPTER.validate_json(json.dumps(body))
    assert words in str(info.value)


def test_events_are_frozen() -> None:
    a = alarm()
    with pytest.raises(ValidationError):
        a.score = 1.0  # type: ignore[misc]
    stored = a.model_copy(update={"alarm_id": 5})
    assert stored.alarm_id == 5 and a.alarm_id is None and stored.event_id == a.event_id
