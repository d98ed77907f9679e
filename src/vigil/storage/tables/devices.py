"""Edge devices (fleet)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Enum, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vigil.core.crypto import EncryptedBytes
from vigil.storage.tables.base import AUTOINCREMENT, Base, BigId, UTCDateTime, utcnow


class DeviceState(enum.StrEnum):
    pending = "pending"
    """Added; its one-time pairing token not used yet."""
    active = "active"
    revoked = "revoked"


class Device(Base):
    """An edge machine (a pole, a site's box) that runs cameras and sends their events (migration 0009)."""

    __tablename__ = "devices"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
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
    queue_depth: Mapped[int | None] = mapped_column(BigId)
    status_json: Mapped[str | None] = mapped_column(Text)
    """The device's last heartbeat (cameras, outbox), as JSON."""
