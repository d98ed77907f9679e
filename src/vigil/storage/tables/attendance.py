"""Attendance marks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from vigil.storage.tables.base import AUTOINCREMENT, Base, BigId, UTCDateTime, utcnow


class AttendanceMark(Base):
    """A person of an attendance gallery recognised by an entrance camera."""

    __tablename__ = "attendance_marks"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    identity_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("identities.id", ondelete="CASCADE"), index=True
    )
    gallery_id: Mapped[int] = mapped_column(BigId, ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    camera_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("cameras.id", ondelete="SET NULL"))
    camera_name: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    track_id: Mapped[int | None] = mapped_column(BigId)
    event_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
