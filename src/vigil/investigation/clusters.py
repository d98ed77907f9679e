"""Unknown-face clusters: sightings that matched no one, grouped into recurring unknown people.

Threshold: the model's calibrated 1:1 threshold at the target false-match rate,
``t = card.threshold_for_fmr(target_fmr)`` (cosine similarity; ``VIGIL_TARGET_FMR``, 0.1 % by default);
two faces belong together when their similarity reaches ``t``, i.e. their cosine distance is at most
``1 - t``.

Algorithm (:func:`update`), incremental and in batches so that a day of sightings takes seconds:

1. The sightings that matched no one and are in no cluster yet are taken oldest first, in batches of
   :data:`BATCH` (only the current model's templates).
2. Each is first assigned to the cluster whose centroid (the L2-normalised mean of its members'
   templates) is most similar, if that similarity reaches ``t``: open clusters from earlier updates and
   clusters formed by earlier batches of this one.
3. The rest of the batch is clustered among itself: scikit-learn's ``AgglomerativeClustering`` with
   average linkage on cosine distance, cut at ``1 - t`` (a group's members are on average at least
   ``t`` alike).
4. The clusters this update formed are merged when their centroids reach ``t`` (one person split
   across batches).
5. A new cluster is kept only when it has at least ``min_size`` sightings (default 2: a *recurring*
   face); the others stay unclustered and are tried again at the next update.

Promoted and dismissed clusters are never touched again; their sightings are not re-clustered.
Promotion enrols every member crop (in which the detector finds a face) as a new identity in a
gallery, through the enrolment service, and links the sightings to it (so erasing that person also
erases them). Promotion and dismissal are audited.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.app import App
from vigil.core.errors import ConflictError, NoFaceError, NotFoundError
from vigil.gallery.enroll import (
    PreparedFace,
    check_consent,
    check_gallery_open,
    enroll_prepared,
    prepare_face,
)
from vigil.investigation import sightings
from vigil.investigation.sightings import SightingInfo
from vigil.storage import audit
from vigil.storage.tables import Cluster, ClusterState, Sighting
from vigil.vision.image import decode_image

BATCH = 2000
"""Sightings clustered among themselves at once (agglomerative clustering is quadratic in this)."""

Progress = Callable[[int, int], None]


class ClusterInfo(BaseModel):
    id: int
    state: ClusterState
    size: int
    first_seen: datetime | None
    last_seen: datetime | None
    cameras: list[str]
    promoted_identity_id: int | None
    decided_by: str | None
    decided_at: datetime | None
    cover_sha256: str | None = None
    """The best member crop, served by ``GET /api/media/{sha256}``."""


class ClusterDetail(ClusterInfo):
    members: list[SightingInfo]


class UpdateReport(BaseModel):
    threshold: float
    """Cosine similarity at which faces belong together (1:1 threshold at ``fmr``)."""
    fmr: float
    model: str
    considered: int
    """Unclustered sightings that matched no one."""
    assigned: int
    """Joined a cluster from an earlier update."""
    new_clusters: int
    clustered: int
    """Sightings in new clusters."""
    left_unclustered: int
    seconds: float


class PromoteReport(BaseModel):
    cluster_id: int
    gallery: str
    identity: str
    identity_id: int
    enrolled: int
    skipped: list[int]
    """Sightings whose crop had no detectable face (not enrolled)."""


def threshold(app: App) -> float:
    """The cosine similarity at which two faces are clustered together."""
    return app.engine.card.threshold_for_fmr(app.settings.target_fmr)


def _unit(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    out: npt.NDArray[np.float32] = (v / np.maximum(n, 1e-12)).astype(np.float32)
    return out


def agglomerate(vectors: npt.NDArray[np.float32], threshold_cos: float) -> npt.NDArray[np.int64]:
    """Labels (n,) int64 of ``vectors`` ((n, d) float32, unit length): average linkage on cosine
    distance, cut at ``1 - threshold_cos``."""
    if len(vectors) < 2:
        return np.zeros(len(vectors), np.int64)
    from sklearn.cluster import AgglomerativeClustering  # type: ignore[import-untyped]

    model = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=1.0 - threshold_cos
    )
    return np.asarray(model.fit_predict(vectors.astype(np.float64)), np.int64)


@dataclass
class _Group:
    """A cluster while an update runs: an existing one (``cluster_id``) or a new one."""

    cluster_id: int | None
    total: npt.NDArray[np.float64]
    """Sum of the members' templates."""
    members: list[int] = field(default_factory=list)
    """Sightings added by this update."""
    size: int = 0

    @property
    def centroid(self) -> npt.NDArray[np.float32]:
        return _unit(self.total.astype(np.float32))


def cluster_vectors(
    vectors: npt.NDArray[np.float32],
    threshold_cos: float,
    existing: list[npt.NDArray[np.float32]] | None = None,
    *,
    batch: int = BATCH,
    on_progress: Progress | None = None,
) -> tuple[npt.NDArray[np.int64], int]:
    """The clustering of :func:`update` on plain arrays (for the benchmark and the tests).

    ``vectors``: (n, d) float32 unit templates, in time order; ``existing``: member templates
    ((m_i, d) float32) of the open clusters. Returns (labels (n,) int64, number of clusters): label
    ``i < len(existing)`` is an existing cluster, larger labels new ones (before the ``min_size`` rule).
    """
    groups = [
        _Group(i, members.astype(np.float64).sum(axis=0), size=len(members))
        for i, members in enumerate(existing or [])
    ]
    labels = _cluster_into(groups, vectors, threshold_cos, batch, on_progress)
    return labels, len(groups)


def _cluster_into(
    groups: list[_Group],
    vectors: npt.NDArray[np.float32],
    threshold_cos: float,
    batch: int,
    on_progress: Progress | None,
) -> npt.NDArray[np.int64]:
    """Assign or cluster ``vectors`` (steps 2 to 4), growing ``groups``; the group index of each."""
    labels = np.full(len(vectors), -1, np.int64)
    first_new = len(groups)
    for start in range(0, len(vectors), batch):
        chunk = vectors[start : start + batch]
        rest = np.arange(len(chunk))
        if groups:
            centroids = np.stack([g.centroid for g in groups])
            sims = chunk @ centroids.T
            best = sims.argmax(axis=1)
            ok = sims[np.arange(len(chunk)), best] >= threshold_cos
            hit = np.flatnonzero(ok)
            labels[start + hit] = best[hit]
            rest = np.flatnonzero(~ok)
        if len(rest):
            sub = agglomerate(chunk[rest], threshold_cos)
            base = len(groups)
            for _ in range(int(sub.max()) + 1):
                groups.append(_Group(None, np.zeros(vectors.shape[1], np.float64)))
            labels[start + rest] = base + sub
        for i in range(start, start + len(chunk)):
            g = groups[labels[i]]
            g.total += vectors[i]
            g.size += 1
        if on_progress is not None:
            on_progress(min(start + batch, len(vectors)), len(vectors))
    # Step 4: one person split across batches -> merge the new groups whose centroids are alike.
    new = list(range(first_new, len(groups)))
    if len(new) > 1:
        merged = agglomerate(np.stack([groups[i].centroid for i in new]), threshold_cos)
        target: dict[int, int] = {}
        remap = np.arange(len(groups))
        for gi, m in zip(new, merged, strict=True):
            keep = target.setdefault(int(m), gi)
            if keep != gi:
                groups[keep].total += groups[gi].total
                groups[keep].size += groups[gi].size
                groups[gi].size = 0
                remap[gi] = keep
        labels = remap[labels]
    return labels


def update(
    app: App, actor: str = "system:clusters", *, min_size: int = 2, on_progress: Progress | None = None
) -> UpdateReport:
    """Cluster the sightings that matched no one and are in no cluster (see the module's docstring)."""
    t0 = datetime.now(UTC)
    card = app.engine.card
    t = threshold(app)
    with app.db.session() as s:
        open_clusters = list(
            s.scalars(select(Cluster).where(Cluster.state == ClusterState.open).order_by(Cluster.id))
        )
        groups: list[_Group] = []
        for c in open_clusters:
            members = list(
                s.scalars(select(Sighting).where(Sighting.cluster_id == c.id, Sighting.model_id == card.id))
            )
            if not members:  # a cluster of another model's sightings: never compared across models
                continue
            vectors = sightings.stack_vectors(members, card.dimension)
            groups.append(_Group(c.id, vectors.astype(np.float64).sum(axis=0), size=len(members)))
        pending = list(
            s.scalars(
                select(Sighting)
                .where(
                    Sighting.cluster_id.is_(None),
                    Sighting.identity_id.is_(None),
                    Sighting.model_id == card.id,
                )
                .order_by(Sighting.first_seen, Sighting.id)
            )
        )
        vectors = sightings.stack_vectors(pending, card.dimension)
        labels = _cluster_into(groups, vectors, t, BATCH, on_progress)
        assigned = clustered = new_clusters = 0
        touched: set[int] = set()
        for gi, g in enumerate(groups):
            idx = np.flatnonzero(labels == gi)
            if len(idx) == 0:
                continue
            if g.cluster_id is None:
                if len(idx) < min_size:
                    continue
                cluster = Cluster(state=ClusterState.open)
                s.add(cluster)
                s.flush()
                g.cluster_id = cluster.id
                new_clusters += 1
                clustered += len(idx)
            else:
                assigned += len(idx)
            for i in idx:
                pending[i].cluster_id = g.cluster_id
            touched.add(g.cluster_id)
        s.flush()
        sightings.refresh_clusters(s, touched)
    report = UpdateReport(
        threshold=round(t, 6),
        fmr=app.settings.target_fmr,
        model=card.id,
        considered=len(pending),
        assigned=assigned,
        new_clusters=new_clusters,
        clustered=clustered,
        left_unclustered=len(pending) - assigned - clustered,
        seconds=round((datetime.now(UTC) - t0).total_seconds(), 3),
    )
    if assigned or new_clusters:
        audit.record(app, actor, "cluster_update", **report.model_dump(mode="json"))
    return report


def _info(s: Session, c: Cluster) -> ClusterInfo:
    cover = s.scalar(
        select(Sighting.crop_sha256)
        .where(Sighting.cluster_id == c.id, Sighting.crop_sha256.is_not(None))
        .order_by(Sighting.quality.desc())
        .limit(1)
    )
    return ClusterInfo(
        id=c.id,
        state=c.state,
        size=c.size,
        first_seen=sightings.aware_utc(c.first_seen) if c.first_seen else None,
        last_seen=sightings.aware_utc(c.last_seen) if c.last_seen else None,
        cameras=[x for x in (c.cameras or "").split(",") if x],
        promoted_identity_id=c.promoted_identity_id,
        decided_by=c.decided_by,
        decided_at=sightings.aware_utc(c.decided_at) if c.decided_at else None,
        cover_sha256=cover,
    )


def list_clusters(app: App, state: ClusterState | None = ClusterState.open) -> list[ClusterInfo]:
    """Clusters (open ones by default; None: all), largest first."""
    q = select(Cluster).order_by(Cluster.size.desc(), Cluster.id)
    if state is not None:
        q = q.where(Cluster.state == state)
    with app.db.session() as s:
        return [_info(s, c) for c in s.scalars(q)]


def _get(s: Session, cluster_id: int) -> Cluster:
    c = s.get(Cluster, cluster_id)
    if c is None:
        raise NotFoundError(f"no cluster {cluster_id}", hint="see `vigil clusters list`")
    return c


def get_cluster(app: App, cluster_id: int) -> ClusterDetail:
    """A cluster with its member sightings (their crops), oldest first."""
    with app.db.session() as s:
        c = _get(s, cluster_id)
        members = s.scalars(
            select(Sighting).where(Sighting.cluster_id == c.id).order_by(Sighting.first_seen, Sighting.id)
        )
        return ClusterDetail(**_info(s, c).model_dump(), members=[sightings.info(m) for m in members])


def _open(s: Session, cluster_id: int) -> Cluster:
    c = _get(s, cluster_id)
    if c.state != ClusterState.open:
        raise ConflictError(f"cluster {cluster_id} was already {c.state.value}", hint="only open clusters")
    return c


def promote(
    app: App,
    cluster_id: int,
    gallery: str,
    name: str,
    actor: str,
    *,
    consent_on: date | None = None,
    consent_by: str | None = None,
) -> PromoteReport:
    """Enrol every member crop with a detectable face as identity ``name`` of ``gallery``.

    Crops with no detectable face are skipped and reported; if none has one, nothing changes
    (:class:`NoFaceError`). The member sightings are linked to the new identity; audited. An
    attendance gallery needs the person's consent (``consent_on``, ``consent_by``), as any enrolment."""
    check_gallery_open(app, gallery)
    check_consent(app, gallery, name, consent_on, consent_by)
    with app.db.session() as s:
        _open(s, cluster_id)
        members = [
            (m.id, m.crop_sha256)
            for m in s.scalars(
                select(Sighting).where(Sighting.cluster_id == cluster_id).order_by(Sighting.id)
            )
        ]
    prepared: list[PreparedFace] = []
    used: list[int] = []
    skipped: list[int] = []
    for sighting_id, sha in members:
        if not sha or not app.blobs.exists(sha):
            skipped.append(sighting_id)
            continue
        image = decode_image(app.blobs.get(sha), name=f"sighting-{sighting_id}.jpg")
        try:
            prepared.append(prepare_face(app, image, largest=True))
            used.append(sighting_id)
        except NoFaceError:
            skipped.append(sighting_id)
    if not prepared:
        raise NoFaceError(
            f"cluster {cluster_id}: no member crop has a face the detector finds",
            hint="enrol a better photo of the person by hand",
        )
    result = enroll_prepared(
        app, gallery, name, prepared, consent_on=consent_on, consent_by=consent_by, actor=None
    )
    with app.db.session() as s:
        c = _open(s, cluster_id)
        c.state = ClusterState.promoted
        c.promoted_identity_id = result.identity_id
        c.decided_by = actor
        c.decided_at = sightings.naive_utc(datetime.now(UTC))
        for m in s.scalars(select(Sighting).where(Sighting.cluster_id == cluster_id)):
            m.identity_id = result.identity_id
    report = PromoteReport(
        cluster_id=cluster_id,
        gallery=gallery,
        identity=result.identity,
        identity_id=result.identity_id,
        enrolled=len(used),
        skipped=skipped,
    )
    audit.record(
        app,
        actor,
        "cluster_promote",
        target_type="cluster",
        target_id=cluster_id,
        target_name=result.identity,
        gallery=gallery,
        identity_id=result.identity_id,
        enrolled=len(used),
        skipped=skipped,
        photos=[p.image.sha256 for p in prepared],
    )
    return report


def dismiss(app: App, cluster_id: int, actor: str, reason: str | None = None) -> ClusterInfo:
    """Mark a cluster as not of interest: it stays out of later updates; audited (``cluster_dismiss``)
    in the same transaction."""
    with app.db.session() as s:
        c = _open(s, cluster_id)
        c.state = ClusterState.dismissed
        c.decided_by = actor
        c.decided_at = sightings.naive_utc(datetime.now(UTC))
        s.flush()
        result = _info(s, c)
        audit.append(
            s,
            actor,
            "cluster_dismiss",
            target_type="cluster",
            target_id=cluster_id,
            size=result.size,
            reason=reason,
        )
        return result
