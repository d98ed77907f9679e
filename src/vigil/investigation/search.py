"""Retrospective search: a probe face against the sightings kept by chosen cameras in a time window.

The probe is a photo (its one face, or the largest with ``largest``) or an enrolled identity (all its
templates; a sighting's score is its best score against any of them). Scores are cosine similarities.

Open set, with the threshold from the model card's calibration: the sightings searched play the part
of the gallery, so the threshold is ``card.threshold_for_fpir(target_fpir, n)`` with ``n`` the number
of sightings searched. A search for someone who was never there returns any hit at all with
probability at most the target FPIR (``VIGIL_TARGET_FPIR``, 1 % by default); the more sightings
searched, the stricter the threshold. The result states the threshold, the FPIR and ``n``.

Every search needs a case reference and is audited (``retrospective_search``: the case, who, the
probe's SHA-256 or identity id, the cameras, the window, the threshold, and each hit's sighting id and
score; never the face itself). A search without a case reference is refused before anything is read.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from sqlalchemy import func, select

from vigil.app import App
from vigil.core.errors import InputError, MultipleFacesError, NoFaceError, NotFoundError
from vigil.investigation import sightings
from vigil.storage import audit
from vigil.storage.tables import Camera, Identity, Sighting, Template
from vigil.vision.image import LoadedImage

Progress = Callable[[int, int], None]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Probe:
    """Who to look for: a photo, or an enrolled identity's templates."""

    image: LoadedImage | None = None
    identity_id: int | None = None
    largest: bool = False
    """With several faces in the photo, use the largest (otherwise the search is refused)."""


@dataclass(frozen=True)
class SearchRequest:
    """Where and why to look. ``cameras`` empty: every camera with sightings."""

    case: str
    since: datetime
    until: datetime
    cameras: Sequence[str] = field(default_factory=tuple)
    limit: int = 100
    """At most this many hits, best first."""


class SearchHit(BaseModel):
    sighting_id: int
    camera: str
    first_seen: datetime
    last_seen: datetime
    frames: int
    score: float
    crop_sha256: str | None
    """The face crop, served by ``GET /api/media/{sha256}``."""
    identity_id: int | None
    """The identity a watchlist matched on this sighting at the time, if any."""
    cluster_id: int | None


class SearchResult(BaseModel):
    case: str
    probe_sha256: str | None
    identity_id: int | None
    cameras: list[str]
    since: datetime
    until: datetime
    model: str
    fpir: float
    searched: int
    """Sightings compared (the open-set gallery size)."""
    threshold: float
    """``threshold_for_fpir(fpir, searched)`` of the model card."""
    hits: list[SearchHit]
    truncated: bool = False
    """More sightings were above the threshold than ``limit``."""
    audit_id: int
    timeline_png: str | None = None
    """The timeline plot, base64 PNG, when asked for."""


def check_case(case: str | None, what: str = "a retrospective search") -> str:
    """The case reference, stripped; refuses an empty one (a 422, as any missing field) for ``what``."""
    ref = (case or "").strip()
    if not ref:
        raise InputError(
            f"{what} needs a case reference",
            hint="give the case or incident number with --case (API: the 'case' field); it is audited",
        )
    return ref


def probe_templates(app: App, probe: Probe) -> tuple[npt.NDArray[np.float32], str | None]:
    """(k, d) float32 probe templates and the photo's SHA-256 (None for an identity)."""
    if (probe.image is None) == (probe.identity_id is None):
        raise InputError("search with a photo or an identity id (one of the two)")
    card = app.engine.card
    if probe.image is not None:
        faces = app.engine.detect(probe.image.bgr)
        if len(faces) == 0:
            raise NoFaceError(
                f"{probe.image.name}: no face found", hint="use a photo where the face is at least 80 px"
            )
        if len(faces) > 1 and not probe.largest:
            raise MultipleFacesError(
                f"{probe.image.name}: {len(faces)} faces found, a search looks for one person",
                hint="crop the photo, or pass --largest to use the largest face",
            )
        embedded = app.engine.embed(probe.image.bgr, faces[0])
        assert embedded.embedding is not None  # set by embed
        return embedded.embedding.astype(np.float32), probe.image.sha256
    with app.db.session() as s:
        if s.get(Identity, probe.identity_id) is None:
            raise NotFoundError(f"no identity with id {probe.identity_id}", hint="see `vigil people list`")
        rows = s.execute(
            select(Template.vector, Template.dimension).where(
                Template.identity_id == probe.identity_id, Template.model_id == card.id
            )
        ).all()
    if not rows:
        raise InputError(
            f"identity {probe.identity_id} has no template of model {card.id}",
            hint="enrol a photo of them first",
        )
    return np.stack([np.frombuffer(v, "<f4", count=d) for v, d in rows]).astype(np.float32), None


def _check_cameras(app: App, names: Sequence[str]) -> list[str]:
    with app.db.session() as s:
        for name in names:
            known = s.scalar(select(Camera.id).where(Camera.name == name)) or s.scalar(
                select(Sighting.id).where(Sighting.camera_name == name).limit(1)
            )
            if known is None:
                raise NotFoundError(f"no camera named {name!r}", hint="see `vigil camera list`")
    return sorted(set(names))


def search(
    app: App,
    probe: Probe,
    request: SearchRequest,
    actor: str,
    *,
    on_progress: Progress | None = None,
    engine_lock: AbstractContextManager[Any] | None = None,
) -> SearchResult:
    """Search the sightings for the probe's face; hits above the open-set threshold, best first.

    ``on_progress(done, total)`` is called as sightings are compared; ``engine_lock`` is held while
    the probe photo goes through the face engine (the server serialises engine calls). Audited."""
    case = check_case(request.case)
    if request.until <= request.since:
        raise InputError("the window is empty: --until must be after --since")
    cameras = _check_cameras(app, request.cameras)
    with engine_lock or nullcontext():
        templates, probe_sha = probe_templates(app, probe)
    card = app.engine.card
    fpir = app.settings.target_fpir
    query = sightings.window_query(cameras, request.since, request.until, card.id)
    ids: list[int] = []
    scores: list[npt.NDArray[np.float32]] = []
    with app.db.session() as s:
        total = int(s.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)
        for rows in sightings.batches(s, query):
            vectors = sightings.stack_vectors(rows, card.dimension)
            scores.append((vectors @ templates.T).max(axis=1))
            ids += [r.id for r in rows]
            if on_progress is not None:
                on_progress(len(ids), total)
    n = len(ids)
    threshold = card.threshold_for_fpir(fpir, max(n, 1))
    all_scores = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    above = np.flatnonzero(all_scores >= threshold)
    order = above[np.argsort(-all_scores[above], kind="stable")]
    kept = order[: request.limit]
    with app.db.session() as s:
        rows_by_id = {
            r.id: r for r in s.scalars(select(Sighting).where(Sighting.id.in_([ids[i] for i in kept])))
        }
        hits = [
            SearchHit(
                sighting_id=ids[i],
                camera=rows_by_id[ids[i]].camera_name,
                first_seen=sightings.aware_utc(rows_by_id[ids[i]].first_seen),
                last_seen=sightings.aware_utc(rows_by_id[ids[i]].last_seen),
                frames=rows_by_id[ids[i]].frames,
                score=round(float(all_scores[i]), 6),
                crop_sha256=rows_by_id[ids[i]].crop_sha256,
                identity_id=rows_by_id[ids[i]].identity_id,
                cluster_id=rows_by_id[ids[i]].cluster_id,
            )
            for i in kept
        ]
    audit_id = audit.record(
        app,
        actor,
        "retrospective_search",
        target_type="photo" if probe_sha else "identity",
        target_id=probe_sha or probe.identity_id,
        case=case,
        probe_sha256=probe_sha,
        identity_id=probe.identity_id,
        cameras=cameras or "all",
        since=request.since.isoformat(),
        until=request.until.isoformat(),
        model=card.id,
        fpir=fpir,
        threshold=round(threshold, 6),
        searched=n,
        hits=[{"sighting": h.sighting_id, "score": h.score} for h in hits],
    )
    return SearchResult(
        case=case,
        probe_sha256=probe_sha,
        identity_id=probe.identity_id,
        cameras=cameras,
        since=request.since,
        until=request.until,
        model=card.id,
        fpir=fpir,
        searched=n,
        threshold=round(threshold, 6),
        hits=hits,
        truncated=len(above) > len(kept),
        audit_id=audit_id,
    )


def date2num(t: datetime) -> float:
    """Days since 1970-01-01 UTC (matplotlib's date numbers)."""
    return (sightings.aware_utc(t) - EPOCH).total_seconds() / 86400.0


def _span(result: SearchResult) -> tuple[float, float]:
    """The x range: the hits with some margin (a window of months would crush a day's hits to a
    dot), the whole window when there are no hits."""
    if not result.hits:
        return date2num(result.since), date2num(result.until)
    lo = min(h.first_seen for h in result.hits)
    hi = max(h.last_seen for h in result.hits)
    pad = max((hi - lo) * 0.1, timedelta(seconds=30))
    return date2num(max(lo - pad, result.since)), date2num(min(hi + pad, result.until))


def timeline_png(result: SearchResult, *, width_px: int = 1000) -> bytes:
    """A timeline of the hits: one row per camera, a mark at each sighting (its span as a bar), coloured
    by score. PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cameras = sorted({h.camera for h in result.hits} | set(result.cameras))
    rows = {c: i for i, c in enumerate(cameras)}
    height_in = 1.6 + 0.45 * max(1, len(cameras))
    fig = Figure(figsize=(width_px / 100, height_in), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if result.hits:
        xs = [date2num(h.first_seen) for h in result.hits]
        ys = [rows[h.camera] for h in result.hits]
        for h in result.hits:
            ax.hlines(
                rows[h.camera],
                date2num(h.first_seen),
                date2num(h.last_seen),
                colors="tab:blue",
                lw=6,
                alpha=0.4,
            )
        marks = ax.scatter(
            xs, ys, c=[h.score for h in result.hits], cmap="viridis", s=40, zorder=3, edgecolors="black"
        )
        fig.colorbar(marks, ax=ax, label="score (cosine)", pad=0.01)
    else:
        ax.text(0.5, 0.5, "no hits above the threshold", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(*_span(result))
    ax.xaxis_date(tz="UTC")
    ax.set_yticks(range(len(cameras)), cameras)
    ax.set_ylim(-0.7, max(len(cameras), 1) - 0.3)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(
        f"case {result.case}: {len(result.hits)} hits in {result.searched} sightings "
        f"(threshold {result.threshold:.3f} at FPIR {result.fpir:g}), UTC",
        fontsize=10,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def with_timeline(result: SearchResult) -> SearchResult:
    """``result`` with its timeline plot as base64 PNG (for the API)."""
    return result.model_copy(update={"timeline_png": base64.b64encode(timeline_png(result)).decode()})
