"""The events a camera pipeline emits, one pydantic model per type.

Each event carries ``type`` (its discriminator) and ``version`` (bumped on any incompatible change),
so that JSON lines, webhooks and MQTT consumers can check what they read. ``ts`` is the wall-clock
capture time of the frame that caused the event (UTC, ISO 8601 in JSON).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 1


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: int = SCHEMA_VERSION
    camera: str
    ts: datetime


class SightingStarted(_Event):
    """A new face track began."""

    type: Literal["sighting_started"] = "sighting_started"
    track_id: int
    frame: int
    xyxy: list[float]


class SightingEnded(_Event):
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


class Alarm(_Event):
    """A face on a watchlist: one per track and identity. People review it before anyone acts."""

    type: Literal["alarm"] = "alarm"
    alarm_id: int | None = None
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
    quality: float
    latency_ms: float
    """From the frame's capture to the alarm's emission."""
    crop_sha256: str | None = None
    thumbnail_sha256: str | None = None


class CameraOffline(_Event):
    """A live source stopped delivering frames; the pipeline keeps trying to reconnect."""

    type: Literal["camera_offline"] = "camera_offline"
    reason: str
    retry_in_s: float


class CameraOnline(_Event):
    """A live source (re)connected."""

    type: Literal["camera_online"] = "camera_online"
    reconnects: int


Event = Annotated[
    SightingStarted | SightingEnded | Alarm | CameraOffline | CameraOnline, Field(discriminator="type")
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
"""``EVENT_ADAPTER.validate_json(line)`` parses any event from its JSON."""
