"""Cameras."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vigil.storage.tables.base import AUTOINCREMENT, Base, BigId, UTCDateTime, utcnow


class Camera(Base):
    """A registered video source: where it is and what kind of place it watches."""

    __tablename__ = "cameras"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
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
    device_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("devices.id", ondelete="SET NULL"), index=True
    )
    """The edge device that runs this camera (None: the server's own camera workers)."""
    stranger_galleries: Mapped[str | None] = mapped_column(Text)
    """The stranger rule (JSON list of gallery names): alarm on a face that matches none of them.
    None: no stranger alarms."""
    stranger_hours: Mapped[str | None] = mapped_column(String(200))
    """When the stranger rule applies (``HH:MM-HH:MM`` and optional days, local time); None: always."""
    stranger_min_quality: Mapped[float | None] = mapped_column(Float)
    """Faces below this quality are never strangers (None: the ``stranger_min_quality`` setting)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
