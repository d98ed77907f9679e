"""Galleries, identities, their photos and templates."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import Date, Enum, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from vigil.core.crypto import EncryptedBytes
from vigil.storage.tables.base import AUTOINCREMENT, Base, BigId, UTCDateTime, utcnow


class GalleryKind(enum.StrEnum):
    watchlist = "watchlist"
    attendance = "attendance"
    investigation = "investigation"
    reference = "reference"


class Gallery(Base):
    __tablename__ = "galleries"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
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

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(BigId, ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
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

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    identity_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("identities.id", ondelete="CASCADE"), index=True
    )
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

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    identity_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("identities.id", ondelete="CASCADE"), index=True
    )
    photo_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("photos.id", ondelete="SET NULL"))
    model_id: Mapped[str] = mapped_column(String(100), index=True)
    dimension: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(EncryptedBytes)
    """float32 little-endian, ``dimension`` values, L2-normalised (sealed when encryption at rest is on)."""
    quality: Mapped[float] = mapped_column(Float)
    source_sha256: Mapped[str] = mapped_column(String(64), index=True)
    box_xyxy: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    identity: Mapped[Identity] = relationship(back_populates="templates")
