"""Webhooks and the notifications they could not deliver."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vigil.storage.tables.base import AUTOINCREMENT, Base, BigId, UTCDateTime, utcnow


class Webhook(Base):
    """Where events are POSTed, signed with HMAC-SHA256 under ``secret``."""

    __tablename__ = "webhooks"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
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

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(50))
    """``webhook:<id>`` or ``mqtt``."""
    target: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(String(50))
    payload: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
