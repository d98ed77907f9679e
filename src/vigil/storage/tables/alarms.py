"""Alarms raised by cameras and their reviews."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from vigil.core.crypto import EncryptedBytes
from vigil.storage.tables.base import AUTOINCREMENT, Base, BigId, UTCDateTime, utcnow


class AlarmState(enum.StrEnum):
    pending = "pending"
    confirmed = "confirmed"
    dismissed = "dismissed"
    closed = "closed"
    suppressed = "suppressed"
    """Not raised: the face was nearer to earlier dismissals (negative examples) than to the person."""


class AlarmKind(enum.StrEnum):
    match = "match"
    """A watchlist hit."""
    stranger = "stranger"
    """A face that matched none of the galleries a camera's stranger rule names."""


class AlarmRecord(Base):
    """A watchlist hit on a camera, kept for people to review; never acted on by itself."""

    __tablename__ = "alarms"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    camera_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("cameras.id", ondelete="SET NULL"), index=True
    )
    camera_name: Mapped[str] = mapped_column(String(200))
    gallery_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("galleries.id", ondelete="SET NULL"), index=True
    )
    identity_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("identities.id", ondelete="SET NULL"), index=True
    )
    identity_name: Mapped[str] = mapped_column(String(200))
    track_id: Mapped[int] = mapped_column(BigId)
    frame_index: Mapped[int] = mapped_column(BigId)
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    fpir: Mapped[float] = mapped_column(Float)
    model_id: Mapped[str] = mapped_column(String(100))
    box_xyxy: Mapped[str] = mapped_column(String(100))
    quality: Mapped[float] = mapped_column(Float)
    crop_sha256: Mapped[str | None] = mapped_column(String(64))
    thumbnail_sha256: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    """The pipeline event that raised it: an event delivered twice is stored once."""
    device_name: Mapped[str | None] = mapped_column(String(200), index=True)
    """The edge device that raised it (None: the server's own camera workers)."""
    state: Mapped[AlarmState] = mapped_column(
        Enum(AlarmState, native_enum=False, length=20), default=AlarmState.pending, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Bumped by every review step; a review that names an older version is refused (409)."""
    confirmations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dismiss_reason: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[AlarmKind] = mapped_column(
        Enum(AlarmKind, native_enum=False, length=20),
        default=AlarmKind.match,
        server_default="match",
        index=True,
    )
    suppressed_by: Mapped[str | None] = mapped_column(Text)
    """JSON list of the negative example ids that suppressed it (state ``suppressed``)."""
    retention_days: Mapped[int | None] = mapped_column(Integer)
    """Its own retention (stranger alarms: from the camera rule); None: its gallery's."""

    reviews: Mapped[list[AlarmReview]] = relationship(
        back_populates="alarm", cascade="all, delete-orphan", passive_deletes=True, order_by="AlarmReview.id"
    )


class AlarmNegative(Base):
    """A dismissed alarm's face kept as a negative example for that identity in that watchlist."""

    __tablename__ = "alarm_negatives"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alarm_id: Mapped[int] = mapped_column(BigId, ForeignKey("alarms.id", ondelete="CASCADE"), unique=True)
    gallery_id: Mapped[int] = mapped_column(BigId, ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    identity_id: Mapped[int] = mapped_column(BigId, ForeignKey("identities.id", ondelete="CASCADE"))
    model_id: Mapped[str] = mapped_column(String(100))
    dimension: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(EncryptedBytes)
    """float32 little-endian, L2-normalised (sealed when encryption at rest is on)."""
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    undone_by: Mapped[str | None] = mapped_column(String(200))
    uses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How many later faces it suppressed."""


class ReviewAction(enum.StrEnum):
    confirm = "confirm"
    dismiss = "dismiss"
    close = "close"


class AlarmReview(Base):
    """One person's review step on an alarm."""

    __tablename__ = "alarm_reviews"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alarm_id: Mapped[int] = mapped_column(BigId, ForeignKey("alarms.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(200))
    """``user:<name>`` or ``key:<name>``, kept when the account is deleted."""
    person: Mapped[str | None] = mapped_column(String(50))
    """Who is behind the actor: ``user:<id>`` for a user and that user's keys, ``key:<id>`` for a key
    without an owner. The two-person rule counts distinct persons (migration 0007)."""
    action: Mapped[ReviewAction] = mapped_column(Enum(ReviewAction, native_enum=False, length=20))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    alarm: Mapped[AlarmRecord] = relationship(back_populates="reviews")
