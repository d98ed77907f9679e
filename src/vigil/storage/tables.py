"""Catalog tables (SQLAlchemy 2). The catalog is the source of truth; vector indexes are rebuilt from it."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from vigil.core.crypto import EncryptedBytes


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A moment in UTC, read back with its time zone on every database. SQLite keeps no zone, so what
    it gives back would be naive (and the API's date-times zone-less); a naive value written is taken
    as UTC, an aware one converted to UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


AUTOINCREMENT = {"sqlite_autoincrement": True}
"""An id is never handed out twice, even after the row with the largest one is deleted (migration 0006)."""


class GalleryKind(enum.StrEnum):
    watchlist = "watchlist"
    attendance = "attendance"
    investigation = "investigation"
    reference = "reference"


class Gallery(Base):
    __tablename__ = "galleries"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[GalleryKind] = mapped_column(Enum(GalleryKind, native_enum=False, length=20))
    purpose: Mapped[str | None] = mapped_column(Text)
    legal_basis: Mapped[str | None] = mapped_column(Text)
    authorized_by: Mapped[str | None] = mapped_column(String(200))
    expires_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    """Bumped by every change to the gallery's templates; indexes record the generation they hold."""
    confirmations_required: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    """People who must confirm an alarm of this gallery, each a different person (EU AI Act Art. 14(5))."""
    sites: Mapped[str | None] = mapped_column(Text)
    """Comma-separated sites where this watchlist may alarm (none: every site)."""
    cameras: Mapped[str | None] = mapped_column(Text)
    """Comma-separated cameras where this watchlist may alarm (none: every camera)."""
    retention_days: Mapped[int | None] = mapped_column(Integer)
    """Alarms of this gallery (rows, crops, thumbnails) are purged this many days after capture."""
    attendance_start: Mapped[str | None] = mapped_column(String(5))
    """Attendance galleries: the expected arrival time, ``HH:MM`` local time (later arrivals are late)."""
    attendance_end: Mapped[str | None] = mapped_column(String(5))
    """Attendance galleries: the expected leaving time, ``HH:MM`` local time."""
    attendance_days: Mapped[str | None] = mapped_column(String(50))
    """Attendance galleries: working days, e.g. ``mon,tue,wed,thu,fri`` (absences are counted on these)."""
    attendance_grace_min: Mapped[int | None] = mapped_column(Integer)
    """Attendance galleries: minutes after ``attendance_start`` before an arrival counts as late."""

    identities: Mapped[list[Identity]] = relationship(
        back_populates="gallery", cascade="all, delete-orphan", passive_deletes=True
    )

    def is_expired(self, today: date | None = None) -> bool:
        return self.expires_on is not None and self.expires_on < (today or date.today())


class Identity(Base):
    __tablename__ = "identities"
    __table_args__ = (
        UniqueConstraint("gallery_id", "name", name="uq_identity_gallery_name"),
        AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(200))
    notes: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[str | None] = mapped_column(Text)
    """Operator-defined metadata, a JSON object (keys naming sensitive traits are refused)."""
    consent_on: Mapped[date | None] = mapped_column(Date)
    """Attendance galleries: the date the person consented to being recognised."""
    consent_by: Mapped[str | None] = mapped_column(String(200))
    """Attendance galleries: who recorded the consent."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    gallery: Mapped[Gallery] = relationship(back_populates="identities")
    photos: Mapped[list[Photo]] = relationship(
        back_populates="identity", cascade="all, delete-orphan", passive_deletes=True
    )
    templates: Mapped[list[Template]] = relationship(
        back_populates="identity", cascade="all, delete-orphan", passive_deletes=True
    )


class Photo(Base):
    """An enrolment photo, stored content-addressed in the blob store under its sha256."""

    __tablename__ = "photos"
    __table_args__ = (
        UniqueConstraint("identity_id", "sha256", name="uq_photo_identity_sha"),
        AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    original_name: Mapped[str | None] = mapped_column(String(500))
    width_px: Mapped[int] = mapped_column(Integer)
    height_px: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    identity: Mapped[Identity] = relationship(back_populates="photos")


class Template(Base):
    """One face embedding, tagged with the model that made it."""

    __tablename__ = "templates"
    __table_args__ = (
        UniqueConstraint("identity_id", "model_id", "source_sha256", name="uq_template_identity_model_src"),
        AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"), index=True)
    photo_id: Mapped[int | None] = mapped_column(ForeignKey("photos.id", ondelete="SET NULL"))
    model_id: Mapped[str] = mapped_column(String(100), index=True)
    dimension: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(EncryptedBytes)
    """float32 little-endian, ``dimension`` values, L2-normalised (sealed when encryption at rest is on)."""
    quality: Mapped[float] = mapped_column(Float)
    source_sha256: Mapped[str] = mapped_column(String(64), index=True)
    box_xyxy: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    identity: Mapped[Identity] = relationship(back_populates="templates")


class Camera(Base):
    """A registered video source: where it is and what kind of place it watches."""

    __tablename__ = "cameras"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(Text)
    site: Mapped[str | None] = mapped_column(String(200))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(50), default="fixed")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    retention_days: Mapped[int | None] = mapped_column(Integer)
    """Sightings and snapshots of this camera are purged this many days after capture."""
    keep_sightings: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    """Opt-in: keep a record of every track, matched or not (for investigations)."""
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"), index=True)
    """The edge device that runs this camera (None: the server's own camera workers)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AlarmState(enum.StrEnum):
    pending = "pending"
    confirmed = "confirmed"
    dismissed = "dismissed"
    closed = "closed"


class AlarmRecord(Base):
    """A watchlist hit on a camera, kept for people to review; never acted on by itself."""

    __tablename__ = "alarms"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[int | None] = mapped_column(ForeignKey("cameras.id", ondelete="SET NULL"), index=True)
    camera_name: Mapped[str] = mapped_column(String(200))
    gallery_id: Mapped[int | None] = mapped_column(
        ForeignKey("galleries.id", ondelete="SET NULL"), index=True
    )
    identity_id: Mapped[int | None] = mapped_column(
        ForeignKey("identities.id", ondelete="SET NULL"), index=True
    )
    identity_name: Mapped[str] = mapped_column(String(200))
    track_id: Mapped[int] = mapped_column(Integer)
    frame_index: Mapped[int] = mapped_column(Integer)
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
    device_name: Mapped[str | None] = mapped_column(String(200))
    """The edge device that raised it (None: the server's own camera workers)."""
    state: Mapped[AlarmState] = mapped_column(
        Enum(AlarmState, native_enum=False, length=20), default=AlarmState.pending, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Bumped by every review step; a review that names an older version is refused (409)."""
    confirmations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dismiss_reason: Mapped[str | None] = mapped_column(Text)

    reviews: Mapped[list[AlarmReview]] = relationship(
        back_populates="alarm", cascade="all, delete-orphan", passive_deletes=True, order_by="AlarmReview.id"
    )


class ReviewAction(enum.StrEnum):
    confirm = "confirm"
    dismiss = "dismiss"
    close = "close"


class AlarmReview(Base):
    """One person's review step on an alarm."""

    __tablename__ = "alarm_reviews"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(200))
    """``user:<name>`` or ``key:<name>``, kept when the account is deleted."""
    person: Mapped[str | None] = mapped_column(String(50))
    """Who is behind the actor: ``user:<id>`` for a user and that user's keys, ``key:<id>`` for a key
    without an owner. The two-person rule counts distinct persons (migration 0007)."""
    action: Mapped[ReviewAction] = mapped_column(Enum(ReviewAction, native_enum=False, length=20))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    alarm: Mapped[AlarmRecord] = relationship(back_populates="reviews")


class Role(enum.StrEnum):
    admin = "admin"
    supervisor = "supervisor"
    operator = "operator"
    auditor = "auditor"


class User(Base):
    __tablename__ = "users"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebSession(Base):
    """A browser session: the cookie holds the token, the catalog only its hash."""

    __tablename__ = "web_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ApiKey(Base):
    """A key for an integration, with a role; optionally bound to a gallery (CompreFace's face collection)."""

    __tablename__ = "api_keys"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=20))
    gallery_id: Mapped[int | None] = mapped_column(ForeignKey("galleries.id", ondelete="SET NULL"))
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    owner_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    """The user the key belongs to: the same person as that user (migration 0007)."""
    owner_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    """For a key made by a key that has no owner: that key, whose holder is the same person."""


class Webhook(Base):
    """Where events are POSTed, signed with HMAC-SHA256 under ``secret``."""

    __tablename__ = "webhooks"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(200))
    event_types: Mapped[str] = mapped_column(String(500), default="alarm")
    """Comma-separated event types, or ``*`` for all."""
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DeadLetter(Base):
    """A notification that could not be delivered after every retry."""

    __tablename__ = "dead_letters"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(50))
    """``webhook:<id>`` or ``mqtt``."""
    target: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(String(50))
    payload: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditEntry(Base):
    """One entry of the append-only, hash-chained audit log (see vigil.storage.audit)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50), index=True)
    target_type: Mapped[str | None] = mapped_column(String(50))
    target_id: Mapped[str | None] = mapped_column(String(100))
    target_name: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[str] = mapped_column(Text)
    """JSON: the input that led to a match (photo hash, camera, frame), the result, the case reference."""
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """The previous entry's hash; unique, so two writers can never fork the chain."""
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class ClusterState(enum.StrEnum):
    open = "open"
    promoted = "promoted"
    dismissed = "dismissed"


class Sighting(Base):
    """One track seen by a camera that opted in (``Camera.keep_sightings``), matched or not; kept for the
    camera's retention period. Holds the best shot's template and crop (investigations, clustering)."""

    __tablename__ = "sightings"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[int | None] = mapped_column(ForeignKey("cameras.id", ondelete="SET NULL"), index=True)
    camera_name: Mapped[str] = mapped_column(String(200), index=True)
    track_id: Mapped[int] = mapped_column(Integer)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    frames: Mapped[int] = mapped_column(Integer, default=0)
    quality: Mapped[float] = mapped_column(Float)
    model_id: Mapped[str] = mapped_column(String(100))
    dimension: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(EncryptedBytes)
    """float32 little-endian, L2-normalised: the best shot's template (sealed when encryption is on)."""
    crop_sha256: Mapped[str | None] = mapped_column(String(64))
    identity_id: Mapped[int | None] = mapped_column(
        ForeignKey("identities.id", ondelete="SET NULL"), index=True
    )
    """The identity a watchlist or attendance gallery matched, if any."""
    score: Mapped[float | None] = mapped_column(Float)
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("clusters.id", ondelete="SET NULL"), index=True)
    event_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Cluster(Base):
    """A recurring unknown person: sightings that matched no one, grouped by face."""

    __tablename__ = "clusters"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[ClusterState] = mapped_column(
        Enum(ClusterState, native_enum=False, length=20), default=ClusterState.open, index=True
    )
    size: Mapped[int] = mapped_column(Integer, default=0)
    first_seen: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cameras: Mapped[str | None] = mapped_column(Text)
    """Comma-separated camera names."""
    centroid: Mapped[bytes | None] = mapped_column(LargeBinary)
    """float32, L2-normalised mean of the members' templates (incremental clustering)."""
    promoted_identity_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id", ondelete="SET NULL"))
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AttendanceMark(Base):
    """A person of an attendance gallery recognised by an entrance camera."""

    __tablename__ = "attendance_marks"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"), index=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    camera_id: Mapped[int | None] = mapped_column(ForeignKey("cameras.id", ondelete="SET NULL"))
    camera_name: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    track_id: Mapped[int | None] = mapped_column(Integer)
    event_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SwitchState(enum.StrEnum):
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


class ModelSwitch(Base):
    """A switch of the active model pack: every enrolment photo re-embedded with the new pack, as a
    resumable job (see vigil.gallery.modelstate). At most one runs at a time (a partial unique index)."""

    __tablename__ = "model_switches"
    __table_args__ = (
        Index(
            "uq_model_switches_one_running",
            "state",
            unique=True,
            sqlite_where=text("state = 'running'"),
            postgresql_where=text("state = 'running'"),
        ),
        AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pack: Mapped[str] = mapped_column(String(50))
    model_id: Mapped[str] = mapped_column(String(100))
    """The new pack's embedder: the model of the templates the switch makes."""
    from_pack: Mapped[str | None] = mapped_column(String(50))
    from_model_id: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[SwitchState] = mapped_column(
        Enum(SwitchState, native_enum=False, length=20), default=SwitchState.running, index=True
    )
    requested_by: Mapped[str] = mapped_column(String(200))
    photos_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    photos_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Photos with a template of the new model, or counted as failed."""
    photos_failed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    galleries_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    galleries_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    flip_audited: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    """The flip's audit entry is written (it follows the flip's commit; a run killed between writes it)."""


class ActiveModel(Base):
    """The one row naming the pack that matching uses, and the model of its templates."""

    __tablename__ = "active_model"
    __table_args__ = (CheckConstraint("id = 1", name="ck_active_model_one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    pack: Mapped[str] = mapped_column(String(50))
    model_id: Mapped[str] = mapped_column(String(100))
    since: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    recorded_by: Mapped[str] = mapped_column(String(200))
    switch_id: Mapped[int | None] = mapped_column(ForeignKey("model_switches.id", ondelete="SET NULL"))
    """The switch that made this pack active (None: the first choice)."""


class ModelSwitchGallery(Base):
    """A gallery whose photos all have templates of the switch's model (recorded in one transaction)."""

    __tablename__ = "model_switch_galleries"
    __table_args__ = (UniqueConstraint("switch_id", "gallery_id", name="uq_switch_gallery"), AUTOINCREMENT)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    switch_id: Mapped[int] = mapped_column(ForeignKey("model_switches.id", ondelete="CASCADE"))
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    photos: Mapped[int] = mapped_column(Integer)
    embedded: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    audited: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class ModelSwitchFailure(Base):
    """An enrolment photo in which the new pack's detector found no usable face."""

    __tablename__ = "model_switch_failures"
    __table_args__ = (
        UniqueConstraint("switch_id", "photo_id", name="uq_switch_failure_photo"),
        AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    switch_id: Mapped[int] = mapped_column(ForeignKey("model_switches.id", ondelete="CASCADE"))
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DeviceState(enum.StrEnum):
    pending = "pending"
    """Added; its one-time pairing token not used yet."""
    active = "active"
    revoked = "revoked"


class Device(Base):
    """An edge machine (a pole, a site's box) that runs cameras and sends their events (migration 0009)."""

    __tablename__ = "devices"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    site: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[DeviceState] = mapped_column(Enum(DeviceState, native_enum=False, length=20))
    keeps_templates: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    """False: no biometric template is stored on the device; it sends embeddings, the server matches."""
    pairing_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    pairing_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    credential_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    signing_key: Mapped[bytes | None] = mapped_column(EncryptedBytes)
    """The HMAC key that signs the device's events (sealed when encryption at rest is on)."""
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    paired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_by: Mapped[str | None] = mapped_column(String(200))
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[str | None] = mapped_column(String(50))
    queue_depth: Mapped[int | None] = mapped_column(Integer)
    status_json: Mapped[str | None] = mapped_column(Text)
    """The device's last heartbeat (cameras, outbox), as JSON."""
