"""Sightings and unknown-face clusters."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vigil.core.crypto import EncryptedBytes
from vigil.storage.tables.base import AUTOINCREMENT, Base, BigId, UTCDateTime, utcnow


class ClusterState(enum.StrEnum):
    open = "open"
    promoted = "promoted"
    dismissed = "dismissed"


class Sighting(Base):
    """One track seen by a camera that opted in (``Camera.keep_sightings``), matched or not; kept for the
    camera's retention period. Holds the best shot's template and crop (investigations, clustering)."""

    __tablename__ = "sightings"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    camera_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("cameras.id", ondelete="SET NULL"), index=True
    )
    camera_name: Mapped[str] = mapped_column(String(200), index=True)
    track_id: Mapped[int] = mapped_column(BigId)
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
        BigId, ForeignKey("identities.id", ondelete="SET NULL"), index=True
    )
    """The identity a watchlist or attendance gallery matched, if any."""
    score: Mapped[float | None] = mapped_column(Float)
    cluster_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("clusters.id", ondelete="SET NULL"), index=True
    )
    event_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Cluster(Base):
    """A recurring unknown person: sightings that matched no one, grouped by face."""

    __tablename__ = "clusters"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
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
    promoted_identity_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("identities.id", ondelete="SET NULL")
    )
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CompareJob(Base):
    """A gallery-against-gallery comparison, its progress and checkpoint (it survives a restart)."""

    __tablename__ = "compare_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    """Random, never reused."""
    state: Mapped[str] = mapped_column(String(20), index=True)
    """queued, running, interrupted (the server stopped: it goes on at the next start), done, failed."""
    case: Mapped[str] = mapped_column(String(200))
    gallery_a: Mapped[str] = mapped_column(String(200))
    gallery_b: Mapped[str] = mapped_column(String(200))
    gallery_a_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("galleries.id", ondelete="SET NULL"))
    gallery_b_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("galleries.id", ondelete="SET NULL"))
    request_json: Mapped[str] = mapped_column(Text)
    model_id: Mapped[str] = mapped_column(String(100))
    fpir: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    """Fixed when the job was planned: a resumed job decides on the same threshold."""
    requested_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    after_template_id: Mapped[int] = mapped_column(BigId, default=0, server_default="0")
    """The checkpoint: templates of A up to this id have been searched."""
    runs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How many times it was started (1 + resumptions)."""
    pairs: Mapped[bytes | None] = mapped_column(EncryptedBytes)
    """The template pairs found so far (ids and scores, see :mod:`vigil.investigation.compare_jobs`)."""
    summary_json: Mapped[str | None] = mapped_column(Text)
    """Once done: the result without its pairs (counts, recall, elapsed time)."""
    error: Mapped[str | None] = mapped_column(Text)
