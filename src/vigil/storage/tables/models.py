"""The active model pack and model switches."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from vigil.storage.tables.base import AUTOINCREMENT, Base, BigId, UTCDateTime, utcnow


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

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
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
    switch_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("model_switches.id", ondelete="SET NULL"))
    """The switch that made this pack active (None: the first choice)."""


class ModelSwitchGallery(Base):
    """A gallery whose photos all have templates of the switch's model (recorded in one transaction)."""

    __tablename__ = "model_switch_galleries"
    __table_args__ = (UniqueConstraint("switch_id", "gallery_id", name="uq_switch_gallery"), AUTOINCREMENT)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    switch_id: Mapped[int] = mapped_column(BigId, ForeignKey("model_switches.id", ondelete="CASCADE"))
    gallery_id: Mapped[int] = mapped_column(BigId, ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
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

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    switch_id: Mapped[int] = mapped_column(BigId, ForeignKey("model_switches.id", ondelete="CASCADE"))
    photo_id: Mapped[int] = mapped_column(BigId, ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    identity_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("identities.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
