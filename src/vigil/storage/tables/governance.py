"""The audit log's rows (written by :mod:`vigil.storage.audit`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vigil.storage.tables.base import Base, BigId, UTCDateTime


class AuditEntry(Base):
    """One entry of the append-only, hash-chained audit log (see vigil.storage.audit)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
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
