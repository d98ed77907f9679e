"""Sightings: one record per face track on cameras that opted in (``Camera.keep_sightings``).

A sighting holds the track's best shot (the highest-quality embedded shot): its template and its face
crop (JPEG, in the blob store), the first and last time the face was seen, the frames it was tracked
for, the camera, and the identity a watchlist matched with its score, if any. A track that was never
embedded (too small or too poor) leaves no sighting. Cameras that did not opt in keep none: faces that
match nothing are not kept (SCOPE.md).

Sightings are kept for the camera's ``retention_days``, or :data:`DEFAULT_RETENTION_DAYS` when the
camera sets none (and for sightings of a camera since deleted); :func:`purge_expired` deletes rows and
crop files together, run by ``vigil purge`` and the server's scheduler.

The pipeline emits a :class:`~vigil.events.schemas.SightingRecorded` event per such track; the
catalog writer stores it with :func:`store_sighting`, once per ``event_id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil.app import App
from vigil.core.errors import InputError
from vigil.events.schemas import SightingRecorded
from vigil.storage.tables import Camera, Cluster, Identity, Sighting

DEFAULT_RETENTION_DAYS = 30
"""Days sightings are kept when their camera sets no ``retention_days``."""


class SightingInfo(BaseModel):
    id: int
    camera: str
    track_id: int
    first_seen: datetime
    last_seen: datetime
    frames: int
    quality: float
    crop_sha256: str | None
    """The face crop, served by ``GET /api/media/{sha256}``."""
    identity_id: int | None
    identity: str | None = None
    score: float | None
    cluster_id: int | None


def naive_utc(t: datetime) -> datetime:
    """``t`` as a naive UTC time, as the catalog compares times."""
    return (t.astimezone(UTC) if t.tzinfo else t).replace(tzinfo=None)


def aware_utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def camera_keeps_sightings(app: App, camera_id: int | None) -> bool:
    """Whether the registered camera opted in to keeping sightings (an unregistered source never does)."""
    if camera_id is None:
        return False
    with app.db.session() as s:
        return bool(s.scalar(select(Camera.keep_sightings).where(Camera.id == camera_id)))


def store_sighting(app: App, event: SightingRecorded) -> SightingRecorded | None:
    """Store the crop (blob store) and the sighting of ``event``; the stored copy (``sighting_id`` and
    ``crop_sha256`` set), or None when a sighting with its ``event_id`` is stored already."""
    vector = np.frombuffer(event.embedding, dtype="<f4")
    if vector.size == 0 or not np.all(np.isfinite(vector)):
        raise InputError(
            f"sighting {event.event_id}: the template is empty or not finite",
            hint="a sighting's embedding is float32 little-endian bytes",
        )
    crop_sha = app.blobs.put(event.crop_jpeg) if event.crop_jpeg else None
    try:
        with app.db.session() as s:
            # A camera or a person deleted since (a device's late event): the sighting keeps no link.
            known_camera = event.camera_id is not None and s.get(Camera, event.camera_id) is not None
            known_identity = event.identity_id is not None and s.get(Identity, event.identity_id) is not None
            row = Sighting(
                event_id=event.event_id,
                camera_id=event.camera_id if known_camera else None,
                camera_name=event.camera,
                track_id=event.track_id,
                first_seen=naive_utc(event.first_seen),
                last_seen=naive_utc(event.last_seen),
                frames=event.frames,
                quality=event.quality,
                model_id=event.model,
                dimension=len(vector),
                vector=vector.tobytes(),
                crop_sha256=crop_sha,
                identity_id=event.identity_id if known_identity else None,
                score=event.score if known_identity else None,
            )
            s.add(row)
            s.flush()
            sighting_id = row.id
    except IntegrityError:
        with app.db.session() as s:
            if s.scalar(select(Sighting.id).where(Sighting.event_id == event.event_id)) is not None:
                return None
        raise
    return event.model_copy(update={"sighting_id": sighting_id, "crop_sha256": crop_sha})


def vector_of(row: Sighting) -> npt.NDArray[np.float32]:
    """The sighting's template, (d,) float32."""
    return np.frombuffer(row.vector, dtype="<f4", count=row.dimension).astype(np.float32)


def stack_vectors(rows: Sequence[Sighting], dimension: int) -> npt.NDArray[np.float32]:
    """(len(rows), dimension) float32 templates of ``rows``."""
    if not rows:
        return np.zeros((0, dimension), np.float32)
    return np.stack([vector_of(r) for r in rows])


def info(row: Sighting, identity: str | None = None) -> SightingInfo:
    return SightingInfo(
        id=row.id,
        camera=row.camera_name,
        track_id=row.track_id,
        first_seen=aware_utc(row.first_seen),
        last_seen=aware_utc(row.last_seen),
        frames=row.frames,
        quality=round(row.quality, 4),
        crop_sha256=row.crop_sha256,
        identity_id=row.identity_id,
        identity=identity,
        score=None if row.score is None else round(row.score, 6),
        cluster_id=row.cluster_id,
    )


def window_query(
    cameras: Sequence[str] | None, since: datetime | None, until: datetime | None, model_id: str | None
) -> Select[Any]:
    """Sightings of ``cameras`` (all when empty) first seen in [since, until), oldest first."""
    q = select(Sighting)
    if cameras:
        q = q.where(Sighting.camera_name.in_(list(cameras)))
    if since is not None:
        q = q.where(Sighting.first_seen >= naive_utc(since))
    if until is not None:
        q = q.where(Sighting.first_seen < naive_utc(until))
    if model_id is not None:
        q = q.where(Sighting.model_id == model_id)
    return q.order_by(Sighting.first_seen, Sighting.id)


def batches(s: Session, query: Select[Any], size: int = 2000) -> Iterator[list[Sighting]]:
    """The rows of ``query`` (ordered by id within equal times) in batches of ``size``."""
    offset = 0
    while True:
        rows = list(s.scalars(query.limit(size).offset(offset)))
        if not rows:
            return
        yield rows
        offset += len(rows)


def list_sightings(
    app: App,
    *,
    cameras: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
    gallery_id: int | None = None,
) -> list[SightingInfo]:
    """The sightings in a window, newest first; ``gallery_id``: only those matched to its people."""
    q = (
        window_query(cameras, since, until, None)
        .order_by(None)
        .order_by(Sighting.first_seen.desc(), Sighting.id.desc())
    )
    q = q.add_columns(Identity.name).outerjoin(Identity)
    if gallery_id is not None:
        q = q.where(Identity.gallery_id == gallery_id)
    with app.db.session() as s:
        rows = s.execute(q.limit(limit)).all()
        return [info(row, name) for row, name in rows]


def count(app: App, camera: str | None = None) -> int:
    from sqlalchemy import func

    q = select(func.count(Sighting.id))
    if camera is not None:
        q = q.where(Sighting.camera_name == camera)
    with app.db.session() as s:
        return int(s.scalar(q) or 0)


def delete_sightings(s: Session, ids: Iterable[int]) -> set[str]:
    """Delete sightings (and refresh or delete the clusters they were in); the crop digests they held.

    The caller deletes the files once the transaction has committed
    (:func:`vigil.gallery.enroll.delete_unreferenced_blobs` on the returned digests)."""
    wanted = sorted(set(ids))
    shas: set[str] = set()
    clusters: set[int] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for sha, cluster_id in s.execute(
            select(Sighting.crop_sha256, Sighting.cluster_id).where(Sighting.id.in_(chunk))
        ):
            if sha:
                shas.add(sha)
            if cluster_id is not None:
                clusters.add(cluster_id)
        s.execute(delete(Sighting).where(Sighting.id.in_(chunk)))
    s.flush()
    refresh_clusters(s, clusters)
    return shas


def refresh_clusters(s: Session, cluster_ids: Iterable[int]) -> None:
    """Recompute size, times, cameras and centroid of clusters from their members; a cluster left with
    no member is deleted (its centroid is a face template of the people in it)."""
    for cid in sorted(set(cluster_ids)):
        cluster = s.get(Cluster, cid)
        if cluster is None:
            continue
        members = list(s.scalars(select(Sighting).where(Sighting.cluster_id == cid)))
        if not members:
            s.delete(cluster)
            continue
        set_cluster_stats(cluster, members)
    s.flush()


def set_cluster_stats(cluster: Cluster, members: Sequence[Sighting]) -> None:
    """Size, first/last seen, cameras and centroid (normalised mean template) from ``members``."""
    vectors = stack_vectors(members, members[0].dimension)
    mean = vectors.mean(axis=0)
    cluster.size = len(members)
    cluster.first_seen = min(m.first_seen for m in members)
    cluster.last_seen = max(m.last_seen for m in members)
    cluster.cameras = ",".join(sorted({m.camera_name for m in members}))
    cluster.centroid = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype("<f4").tobytes()


def referenced_crops(s: Session, shas: Iterable[str]) -> set[str]:
    """The digests among ``shas`` that a sighting still uses (so that another purge keeps the file)."""
    wanted = sorted(set(shas))
    used: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for sha in s.scalars(select(Sighting.crop_sha256).where(Sighting.crop_sha256.in_(chunk))):
            if sha:
                used.add(sha)
    return used


def expired_ids(s: Session, now: datetime) -> list[int]:
    """Sightings past their camera's retention at ``now`` (:data:`DEFAULT_RETENTION_DAYS` when the
    camera sets none, or no longer exists)."""
    ids: list[int] = []
    days_by_camera = {cid: days for cid, days in s.execute(select(Camera.id, Camera.retention_days))}
    groups: dict[int, list[int | None]] = {}
    for camera_id, days in days_by_camera.items():
        groups.setdefault(days or DEFAULT_RETENTION_DAYS, []).append(camera_id)
    groups.setdefault(DEFAULT_RETENTION_DAYS, []).append(None)
    for days, camera_ids in groups.items():
        cutoff = naive_utc(now - timedelta(days=days))
        known = [c for c in camera_ids if c is not None]
        where: ColumnElement[bool] = Sighting.camera_id.in_(known)
        if None in camera_ids:
            where = or_(where, Sighting.camera_id.is_(None))
        ids += list(s.scalars(select(Sighting.id).where(where, Sighting.last_seen < cutoff)))
    return ids


def purge_expired(s: Session, now: datetime) -> tuple[int, set[str]]:
    """Delete the sightings past retention at ``now``: (how many, the crop digests they held)."""
    ids = expired_ids(s, now)
    return len(ids), delete_sightings(s, ids) if ids else set()


def matching_ids(
    s: Session,
    templates: npt.NDArray[np.float32],
    model_id: str,
    threshold_cos: float,
    *,
    unmatched_only: bool = True,
) -> list[int]:
    """Sightings whose template scores at least ``threshold_cos`` against any of ``templates``
    ((n, d) float32, L2-normalised), among those no watchlist matched when ``unmatched_only``."""
    if len(templates) == 0:
        return []
    q = select(Sighting).where(Sighting.model_id == model_id).order_by(Sighting.id)
    if unmatched_only:
        q = q.where(Sighting.identity_id.is_(None))
    found: list[int] = []
    for rows in batches(s, q):
        scores = stack_vectors(rows, templates.shape[1]) @ templates.T
        found += [r.id for r, best in zip(rows, scores.max(axis=1), strict=True) if best >= threshold_cos]
    return found
