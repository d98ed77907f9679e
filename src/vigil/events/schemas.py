"""The events vigil emits, one pydantic model per type, in one discriminated union :data:`Event`.

Each event carries ``type`` (its discriminator), ``version`` (:data:`SCHEMA_VERSION`, bumped on any
incompatible change) and ``event_id`` (unique; a consumer drops an id it has seen). The camera
pipeline gives the events it stores (:class:`Alarm`, :class:`AttendanceMarked`,
:class:`SightingRecorded`) a deterministic id (:func:`event_id_for`: the same frame replayed after a
restart gives the same id, and the catalog stores it once); every other event gets a random one.
``ts`` is the wall-clock capture time of the frame that caused the event, or the time a server-side
event happened (UTC, ISO 8601 in JSON).

Two forms leave a process:

- the wire form ``event.model_dump_json()``: everything, blobs (face crops, thumbnails, templates)
  base64-encoded; ``EVENT_ADAPTER.validate_json(data)`` reads any event back. Camera workers and
  the fleet transport send this.
- :func:`public` ``(event)``: a JSON-able dict without the blob fields, for SSE, webhooks, MQTT and
  JSON lines. Crops and templates never go there.

>>> e = CameraStatus(camera="gate", state="running", restarts=0)
>>> EVENT_ADAPTER.validate_json(e.model_dump_json()) == e
True
>>> sorted(public(e))
['camera', 'error', 'event_id', 'restarts', 'state', 'ts', 'type', 'version']
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    model_validator,
)

SCHEMA_VERSION = 2
"""Version 2 (issue 14): ``event_id`` on every event; ``camera_id``, ``device``, ``crop_jpeg`` and
``thumbnail_jpeg`` on alarms; the types attendance_marked, sighting_recorded, alarm_reviewed,
camera_status and compare_progress. Version 1 events (no ``event_id``) still parse: they get a
random one."""

MAX_BLOB_BYTES = 8 * 1024 * 1024
"""The largest blob (decoded) an event may carry: a face crop or a frame thumbnail is far smaller."""

BLOB_FIELDS = frozenset({"crop_jpeg", "thumbnail_jpeg", "embedding"})
"""The fields :func:`public` leaves out."""


def _blob_in(value: Any) -> Any:
    """Bytes stay bytes; a str is base64 (the wire form), decoded strictly."""
    if isinstance(value, str):
        try:
            value = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"not valid base64: {exc}") from None
    if isinstance(value, bytes | bytearray) and len(value) > MAX_BLOB_BYTES:
        raise ValueError(f"{len(value)} bytes; at most {MAX_BLOB_BYTES} bytes are accepted")
    return value


def _blob_out(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


Blob = Annotated[
    bytes,
    BeforeValidator(_blob_in),
    PlainSerializer(_blob_out, return_type=str, when_used="json"),
]
"""Raw bytes in Python, standard base64 (no newlines) in JSON. (pydantic's ``Base64Bytes`` decodes
Python bytes too, so an event could not be built from the JPEG bytes in hand.)"""

EventId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


def new_event_id() -> str:
    """A random event id (32 hex digits)."""
    return uuid.uuid4().hex


def event_id_for(kind: str, camera: str, *parts: object) -> str:
    """The deterministic id of an event: sha256 hex[:32] of its kind, camera and what makes it unique.

    >>> event_id_for("alarm", "gate", 7, 120) == event_id_for("alarm", "gate", 7, 120)
    True
    >>> len(event_id_for("alarm", "gate", 7, 120))
    32
    """
    text = "\x1f".join([kind, camera, *(_part(p) for p in parts)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _part(p: object) -> str:
    if isinstance(p, datetime):
        return (p.astimezone(UTC) if p.tzinfo else p.replace(tzinfo=UTC)).isoformat()
    if isinstance(p, list | tuple):
        return ",".join(_part(v) for v in p)
    return str(p)


def now_utc() -> datetime:
    return datetime.now(UTC)


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: int = SCHEMA_VERSION
    event_id: EventId = Field(default_factory=new_event_id)
    ts: datetime


class _CameraEvent(_Event):
    camera: str


class SightingStarted(_CameraEvent):
    """A new face track began."""

    type: Literal["sighting_started"] = "sighting_started"
    track_id: int
    frame: int
    xyxy: list[float]


class SightingEnded(_CameraEvent):
    """A face track ended (the face left, or was not seen for a while)."""

    type: Literal["sighting_ended"] = "sighting_ended"
    track_id: int
    frame: int
    first_frame: int
    frames_seen: int
    best_quality: float
    embeddings: int
    identity: str | None = None
    """The identity an alarm was raised for on this track, if any."""


class Alarm(_CameraEvent):
    """A face on a watchlist: one per track and identity. People review it before anyone acts.

    The pipeline emits it with the evidence (``crop_jpeg``: the face with a margin, ``thumbnail_jpeg``:
    the frame, at most 480 px wide, with the box drawn; JPEG bytes); the catalog writer stores it and
    sets ``alarm_id`` and the blobs' digests.

    ``kind`` ``stranger``: a face that matched none of the galleries of the camera's stranger rule
    (``galleries_checked``; see :mod:`vigil.video.strangers`), one per track. It has no identity and
    no gallery (None: renderers show "stranger"); ``score``/``threshold``: the nearest gallery's.
    """

    type: Literal["alarm"] = "alarm"
    kind: Literal["match", "stranger"] = "match"
    alarm_id: int | None = None
    camera_id: int | None = None
    device: str | None = None
    """The edge device that raised it (None: this server's own camera workers, or ``vigil watch``)."""
    identity: str | None = None
    identity_id: int | None = None
    gallery: str | None = None
    galleries_checked: list[str] | None = None
    """A stranger alarm: the galleries the face matched none of."""
    score: float
    threshold: float
    fpir: float
    model: str
    track_id: int
    frame: int
    xyxy: list[float]
    quality: float
    latency_ms: float
    """From the frame's capture to the alarm's emission."""
    crop_sha256: str | None = None
    thumbnail_sha256: str | None = None
    crop_jpeg: Blob | None = None
    thumbnail_jpeg: Blob | None = None
    suppressed_by: list[int] | None = None
    """The negative examples (ids) nearer to the face than the person (:mod:`vigil.gallery.negatives`):
    stored ``suppressed``, never raised (the catalog writer passes it on to no one)."""

    @model_validator(mode="after")
    def _kind_fits(self) -> Alarm:
        named = (self.identity, self.identity_id, self.gallery)
        if self.kind == "match" and None in named:
            raise ValueError("a match alarm names its identity, identity_id and gallery")
        if self.kind == "stranger" and named != (None, None, None):
            raise ValueError("a stranger alarm names no identity and no gallery")
        return self


class AttendanceMarked(_CameraEvent):
    """A person of an attendance gallery seen by an entrance camera: one per track and person.
    Never an alarm; it keeps no image. ``mark_id`` is set once stored."""

    type: Literal["attendance_marked"] = "attendance_marked"
    mark_id: int | None = None
    camera_id: int | None = None
    identity: str
    identity_id: int
    gallery: str
    score: float
    threshold: float
    fpir: float
    model: str
    track_id: int
    frame: int
    xyxy: list[float]


class SightingRecorded(_CameraEvent):
    """An ended track of a camera that keeps sightings: its best shot's template and face crop.

    ``embedding``: the (d,) float32 template, little-endian bytes, L2-normalised, of ``model``.
    ``identity_id``/``score``: the best match a watchlist or attendance gallery made on the track.
    ``sighting_id`` is set once stored.
    """

    type: Literal["sighting_recorded"] = "sighting_recorded"
    sighting_id: int | None = None
    camera_id: int | None = None
    track_id: int
    first_frame: int
    first_seen: datetime
    last_seen: datetime
    frames: int
    quality: float
    model: str
    embedding: Blob
    crop_jpeg: Blob | None = None
    crop_sha256: str | None = None
    identity_id: int | None = None
    score: float | None = None


class CameraOffline(_CameraEvent):
    """A live source stopped delivering frames; the pipeline keeps trying to reconnect."""

    type: Literal["camera_offline"] = "camera_offline"
    reason: str
    retry_in_s: float


class CameraOnline(_CameraEvent):
    """A live source (re)connected."""

    type: Literal["camera_online"] = "camera_online"
    reconnects: int


class CameraStatus(_CameraEvent):
    """A camera worker's state changed (published by the server's supervisor)."""

    type: Literal["camera_status"] = "camera_status"
    ts: datetime = Field(default_factory=now_utc)
    state: str
    """stopped, starting, running, offline, finished, restarting or failed."""
    restarts: int
    error: str | None = None


class AlarmReviewed(_CameraEvent):
    """A person confirmed, dismissed or closed an alarm (``state``: what it led to)."""

    type: Literal["alarm_reviewed"] = "alarm_reviewed"
    ts: datetime = Field(default_factory=now_utc)
    alarm_id: int
    action: str
    state: str
    confirmations: int
    confirmations_required: int
    by: str


class ComparisonProgress(_Event):
    """A gallery-against-gallery comparison job advanced, finished or failed (``id``: the job)."""

    type: Literal["compare_progress"] = "compare_progress"
    ts: datetime = Field(default_factory=now_utc)
    id: str
    state: str
    """queued, running, done or failed."""
    case: str
    gallery_a: str
    gallery_b: str
    created_at: datetime
    finished_at: datetime | None = None
    done: int
    total: int
    error: str | None = None
    identity_pairs: int | None = None
    """Once done: the identity pairs found."""


AnyEvent = (
    SightingStarted
    | SightingEnded
    | Alarm
    | AttendanceMarked
    | SightingRecorded
    | CameraOffline
    | CameraOnline
    | CameraStatus
    | AlarmReviewed
    | ComparisonProgress
)
Event = Annotated[AnyEvent, Field(discriminator="type")]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
"""``EVENT_ADAPTER.validate_json(line)`` parses any event from its JSON."""

EVENT_TYPES: tuple[str, ...] = tuple(m.model_fields["type"].default for m in get_args(AnyEvent))
"""Every event type, in the order of the union (the one list webhooks and the UI use)."""


def public(event: AnyEvent) -> dict[str, Any]:
    """``event`` as a JSON-able dict without its blobs (crops, thumbnails, templates).

    >>> a = Alarm(camera="c", ts=now_utc(), identity="x", identity_id=1, gallery="g", score=0.9,
    ...           threshold=0.5, fpir=0.01, model="m", track_id=1, frame=2, xyxy=[0, 0, 1, 1],
    ...           quality=0.5, latency_ms=3.0, crop_jpeg=b"jpeg")
    >>> "crop_jpeg" in public(a), public(a)["type"]
    (False, 'alarm')
    """
    return event.model_dump(mode="json", exclude=set(BLOB_FIELDS))
