"""Gallery against gallery: every template of gallery A searched in gallery B, for a case.

A wanted-persons list against a larger enrolment gallery, or one gallery against itself to find the
same person enrolled twice under two names. Each template of A is a probe of a 1:N open-set search in
B; a pair is reported when its cosine score reaches the identification threshold that the model
card gives for B's number of identities at the target false-positive identification rate (FPIR,
``settings.target_fpir`` unless the request names one). So, of the probes of A whose person is *not*
in B, a share of about FPIR will still show a (false) pair: every pair is a lead for a person to
check, never a finding by itself.

Results come at two levels: template pairs (above the threshold, each probe's ``top_k`` best
identities of B), and identity pairs (the best template pair of each pair of identities, with the
number of template pairs behind it), both sorted by score, best first. A gallery against itself
skips a person's own templates and reports each pair once (identity with the smaller id first).

Memory: A's templates are streamed from the catalog in batches (``batch_size``, 4096 by default: a
(4096, d) float32 block plus FAISS's (4096, k) results and its 4096 x 1024 score block, about 20 MB),
never loaded whole. B's index is what it is: exact search holds B's vectors, n x d x 4 bytes
(1,000,000 x 128 float32 = 512 MB). ``index="ivf"`` builds an approximate ``IVF{sqrt n},Flat`` index
from it (a second copy while the comparison runs), searches ``nprobe`` 32 lists, and reports its
recall against exact search on a sample of probes. Only the pairs found are kept.

Every comparison needs a case reference and is audited (action ``compare``) with the case, both
galleries, the threshold and rate in force, the number of pairs and the best identity pairs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from vigil.app import App
from vigil.core.errors import ForbiddenError, ModelError
from vigil.core.modelcard import ModelCard, load_card
from vigil.gallery.enroll import load_templates
from vigil.gallery.galleries import get_gallery
from vigil.investigation.search import check_case
from vigil.storage import audit
from vigil.storage.ann import IndexPolicy
from vigil.storage.index import FaissIndex, IndexKey, VectorIndex
from vigil.storage.tables import Gallery, Identity, Template

BATCH_SIZE = 4096
"""Templates of A searched per batch."""
IVF_NPROBE = 32
"""Inverted lists searched per probe by the approximate index."""
RECALL_SAMPLE = 256
"""Probes of the first batch also searched exactly, to measure the approximate index's recall."""
AUDIT_PAIRS = 100
"""Identity pairs the audit entry names (the best ones); the count of all is always recorded."""
_SQL_CHUNK = 900
"""Ids per ``IN (...)`` query (well under SQLite's parameter limit)."""
_MAX_TEMPLATES_SEARCHED = 4
"""Templates of one identity of B that may take up a probe's candidate slots."""

Progress = Callable[[int, int], None]
"""``progress(done, total)``: templates of A searched so far, of all."""


class CompareRequest(BaseModel):
    """What to compare, for which case, and how."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    gallery_a: str = Field(min_length=1, max_length=200, description="the gallery whose templates are probes")
    gallery_b: str = Field(min_length=1, max_length=200, description="the gallery searched (may be A)")
    case: str | None = Field(default=None, max_length=200, description="the case reference (required)")
    top_k: int = Field(default=5, ge=1, le=100, description="identities of B kept per template of A")
    fpir: float | None = Field(
        default=None, gt=0, lt=1, description="target FPIR for the threshold (default: the setting)"
    )
    index: Literal["exact", "ivf"] = "exact"
    batch_size: int = Field(default=BATCH_SIZE, ge=1, le=65_536)


class PairHit(BaseModel):
    """A template of A and one of B whose score reaches the threshold."""

    score: float
    identity_a_id: int
    identity_a: str
    template_a: int
    identity_b_id: int
    identity_b: str
    template_b: int


class IdentityPair(PairHit):
    """The best template pair of two identities, and how many of their pairs reached the threshold."""

    template_pairs: int


class CompareResult(BaseModel):
    case: str
    gallery_a: str
    gallery_b: str
    within: bool
    """A and B are the same gallery: pairs of different identities, each reported once."""
    model: str
    fpir: float
    threshold: float
    threshold_source: str
    """Where the threshold comes from, in words (model card calibration, rate, gallery size)."""
    identities_b: int
    templates_a: int
    templates_b: int
    top_k: int
    index: str
    recall: float | None = None
    """Approximate index only: the share of the exact k nearest templates it also returned, over the
    first ``recall_sample`` probes."""
    recall_above_threshold: float | None = None
    """Approximate index only: the share of the exact search's pairs above the threshold (same probes)
    that it also found; None when exact search found none there."""
    recall_sample: int = 0
    identities: list[IdentityPair]
    pairs: list[PairHit]
    elapsed_s: float


@dataclass(frozen=True)
class ComparePlan:
    """A checked request: the galleries, their sizes, and the threshold in force."""

    request: CompareRequest
    case: str
    gallery_a_id: int
    gallery_b_id: int
    card: ModelCard
    templates_a: int
    templates_b: int
    identities_b: int
    max_templates_a: int
    """Most templates any one identity of A has (a gallery against itself skips that many neighbours)."""
    max_templates_b: int
    fpir: float
    threshold: float
    threshold_source: str

    @property
    def within(self) -> bool:
        return self.gallery_a_id == self.gallery_b_id


class _Search(Protocol):
    def search(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...

    def __len__(self) -> int: ...


# -- planning -------------------------------------------------------------------------------------
def model_card(app: App) -> ModelCard:
    """The embedder's card, without loading the face models when the card alone is enough."""
    light = app.engine_override is None and "engine" not in app.__dict__
    if light and app.pack in ("dlib", "custom") and app.settings.embedder in ("dlib-resnet", "dlib-onnx"):
        from vigil.vision.dlib.embedder import MODEL_ID

        return load_card(MODEL_ID, app.settings.cards_dir)
    return app.engine.card


def _sizes(app: App, gallery_id: int, model_id: str) -> tuple[int, int, int]:
    """(templates, identities with templates, most templates of one identity) of a gallery and model."""
    with app.db.session() as s:
        per_identity = (
            select(Template.identity_id, func.count(Template.id).label("n"))
            .join(Identity)
            .where(Identity.gallery_id == gallery_id, Template.model_id == model_id)
            .group_by(Template.identity_id)
            .subquery()
        )
        row = s.execute(
            select(func.coalesce(func.sum(per_identity.c.n), 0), func.count(), func.max(per_identity.c.n))
        ).one()
    return int(row[0]), int(row[1]), int(row[2] or 0)


def plan_comparison(app: App, request: CompareRequest) -> ComparePlan:
    """Check a request (case, galleries, expiry) and fix the threshold; searches nothing.

    Raises:
        InputError: no case reference.
        ForbiddenError: an expired watchlist.
        NotFoundError: a gallery does not exist.
    """
    case = check_case(request.case, "a gallery comparison")
    card = model_card(app)
    with app.db.session() as s:
        galleries: list[Gallery] = [get_gallery(s, request.gallery_a), get_gallery(s, request.gallery_b)]
        for g in galleries:
            if g.is_expired():
                raise ForbiddenError(
                    f"watchlist {g.name!r} expired on {g.expires_on} and can no longer be compared",
                    hint="renew its legal basis and expiry date",
                )
        a_id, b_id = galleries[0].id, galleries[1].id
    templates_a, _, max_a = _sizes(app, a_id, card.id)
    templates_b, identities_b, max_b = _sizes(app, b_id, card.id)
    fpir = request.fpir if request.fpir is not None else app.settings.target_fpir
    # A gallery against itself: each probe is searched among the other identities.
    n = max(1, identities_b - 1 if a_id == b_id else identities_b)
    threshold = card.threshold_for_fpir(fpir, n)
    if card.calibration is None:
        source = f"the {card.id} model card's default threshold (the model is not calibrated)"
    else:
        source = (
            f"the {card.id} model card's calibration on {card.calibration.dataset}: FPIR {fpir:g} over "
            f"{n:,} identities of {request.gallery_b!r} is a false-match rate of "
            f"{card.fmr_for_fpir(fpir, n):.3g} per comparison"
        )
    return ComparePlan(
        request=request,
        case=case,
        gallery_a_id=a_id,
        gallery_b_id=b_id,
        card=card,
        templates_a=templates_a,
        templates_b=templates_b,
        identities_b=identities_b,
        max_templates_a=max_a,
        max_templates_b=max_b,
        fpir=fpir,
        threshold=threshold,
        threshold_source=source,
    )


# -- searching ------------------------------------------------------------------------------------
def stream_templates(
    app: App, gallery_id: int, card: ModelCard, batch_size: int = BATCH_SIZE, after: int = 0
) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
    """A gallery's templates of ``card``'s model in id order (ids above ``after``), ``batch_size`` at a
    time, one query each: (b,) int64 template ids, (b,) int64 identity ids, (b, d) float32 vectors."""
    last = after
    d = card.dimension
    while True:
        with app.db.session() as s:
            rows = s.execute(
                select(Template.id, Template.identity_id, Template.vector, Template.dimension)
                .join(Identity)
                .where(Identity.gallery_id == gallery_id, Template.model_id == card.id, Template.id > last)
                .order_by(Template.id)
                .limit(batch_size)
            ).all()
        if not rows:
            return
        if any(r[3] != d for r in rows):
            raise ModelError(f"templates of gallery {gallery_id} do not have {card.id}'s dimension {d}")
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        owners = np.fromiter((r[1] for r in rows), np.int64, len(rows))
        vectors = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), d)
        yield ids, owners, vectors.astype(np.float32)
        last = int(ids[-1])


def _current_generation(app: App, gallery_id: int) -> int:
    with app.db.session() as s:
        return int(s.scalar(select(Gallery.generation).where(Gallery.id == gallery_id)) or 0)


def _index_of_b(app: App, plan: ComparePlan, index_lock: AbstractContextManager[Any] | None) -> VectorIndex:
    """B's exact index (as identification uses it). Under ``index_lock`` (a server, where enrolment may
    change the shared index meanwhile) a private copy is taken, so the comparison sees one generation."""
    with index_lock or nullcontext():
        gid, card = plan.gallery_b_id, plan.card
        index = app.indexes.get(
            IndexKey(gid, card.id),
            _current_generation(app, gid),
            card.dimension,
            lambda: load_templates(app, gid, card.id),
        )
        if index_lock is None or not isinstance(index, FaissIndex):
            return index  # Milvus: the shared collection itself (pairs with templates removed since drop out)
        return index.copy()


class IvfSearch:
    """Approximate search with the gallery index's own ``ivf`` tier (:mod:`vigil.storage.ann`),
    ``nprobe`` lists per probe: B's index itself where it is already approximate, else one built
    from its exact vectors for this comparison."""

    def __init__(self, exact: FaissIndex, nprobe: int = IVF_NPROBE) -> None:
        if exact.approximate is not None:
            self._index = exact
        else:
            policy = IndexPolicy(approximate_above=0, compressed_above=2**62, nprobe=nprobe)
            self._index = FaissIndex.build(exact.dimension, (exact.ids(), _vectors(exact)), policy)
        ivf = self._index.approximate
        assert ivf is not None
        self.nlist = ivf.nlist
        self.nprobe = min(ivf.nlist, ivf.policy.nprobe)

    def __len__(self) -> int:
        return len(self._index)

    def search(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        return self._index.search(queries, k)


class ExhaustiveSearch:
    """Exact search whatever tier the index is in (every list of an approximate one)."""

    def __init__(self, index: FaissIndex) -> None:
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    def search(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        return self._index.search(queries, k, exact=True)


def _vectors(index: FaissIndex) -> npt.NDArray[np.float32]:
    parts = [v for _, v in index.items()]
    return np.concatenate(parts) if len(parts) != 1 else parts[0]


def recall(
    exact: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]],
    approx: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]],
    threshold: float = -np.inf,
) -> float | None:
    """Share of the exact (q, k) neighbours scoring at least ``threshold`` that the approximate search
    also returned (ids and scores as ``search`` gives them); None when there are none."""
    found = total = 0
    for e_ids, e_scores, a_ids in zip(exact[0], exact[1], approx[0], strict=True):
        want = {int(t) for t, s in zip(e_ids, e_scores, strict=True) if t >= 0 and s >= threshold}
        total += len(want)
        found += len(want & {int(t) for t in a_ids if t >= 0})
    return found / total if total else None


def _lookup(app: App, column: Any, key: Any, ids: list[int]) -> dict[int, Any]:
    """``{key: column}`` for rows whose ``key`` is in ``ids``, in chunks."""
    out: dict[int, Any] = {}
    with app.db.session() as s:
        for i in range(0, len(ids), _SQL_CHUNK):
            rows = s.execute(select(key, column).where(key.in_(ids[i : i + _SQL_CHUNK])))
            out.update((int(k), v) for k, v in rows)
    return out


PAIR_DTYPE = np.dtype([("ta", "<i8"), ("ia", "<i8"), ("tb", "<i8"), ("ib", "<i8"), ("score", "<f4")])
"""A template pair as a checkpoint keeps it (36 bytes)."""


class Pairs:
    """The pairs found so far: template pairs and the best pair per identity pair."""

    def __init__(self, within: bool) -> None:
        self.within = within
        self.templates: dict[tuple[int, int], tuple[float, int, int]] = {}
        self.identities: dict[tuple[int, int], list[float | int]] = {}

    def add(self, ta: int, ia: int, tb: int, ib: int, score: float) -> None:
        if self.within and ia > ib:  # one gallery: each pair once, smaller identity id first
            ta, ia, tb, ib = tb, ib, ta, ia
        if (ta, tb) in self.templates:
            return
        self.templates[ta, tb] = (score, ia, ib)
        best = self.identities.get((ia, ib))
        if best is None:
            self.identities[ia, ib] = [score, ta, tb, 1]
            return
        best[3] += 1
        if score > best[0]:
            best[0], best[1], best[2] = score, ta, tb

    def collect(
        self,
        app: App,
        probes: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
        found: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]],
        threshold: float,
        top_k: int,
    ) -> None:
        """Keep each probe's ``top_k`` best identities of B above ``threshold``.

        ``probes``: (q,) template and identity ids of A; ``found``: (q, k) template ids and scores of B."""
        ids, scores = found
        rows, cols = np.nonzero((ids >= 0) & (scores >= threshold))
        if len(rows) == 0:
            return
        owners = _lookup(app, Template.identity_id, Template.id, np.unique(ids[rows, cols]).tolist())
        per_probe: dict[int, dict[int, tuple[float, int]]] = {}
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            tb = int(ids[r, c])
            ib = owners.get(tb)
            if ib is None or (self.within and ib == int(probes[1][r])):  # removed since, or the same person
                continue
            best = per_probe.setdefault(r, {})
            score = float(scores[r, c])
            if ib not in best or score > best[ib][0]:
                best[ib] = (score, tb)
        for r, best in per_probe.items():
            ranked = sorted(best.items(), key=lambda item: -item[1][0])[:top_k]
            for ib, (score, tb) in ranked:
                self.add(int(probes[0][r]), int(probes[1][r]), tb, ib, score)

    def to_bytes(self) -> bytes:
        rows = np.array(
            [(ta, ia, tb, ib, score) for (ta, tb), (score, ia, ib) in self.templates.items()],
            dtype=PAIR_DTYPE,
        )
        return rows.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes | None, within: bool) -> Pairs:
        pairs = cls(within)
        for ta, ia, tb, ib, score in np.frombuffer(data or b"", dtype=PAIR_DTYPE).tolist():
            pairs.add(int(ta), int(ia), int(tb), int(ib), float(score))
        return pairs

    def results(self, app: App) -> tuple[list[IdentityPair], list[PairHit]]:
        """Both levels, best first, with the identities' names; a pair with an identity that no longer
        exists (erased, or removed since) is left out."""
        wanted = sorted({i for pair in self.identities for i in pair})
        names: dict[int, str] = _lookup(app, Identity.name, Identity.id, wanted)
        identities = [
            IdentityPair(
                score=round(float(best[0]), 6),
                identity_a_id=ia,
                identity_a=names[ia],
                template_a=int(best[1]),
                identity_b_id=ib,
                identity_b=names[ib],
                template_b=int(best[2]),
                template_pairs=int(best[3]),
            )
            for (ia, ib), best in self.identities.items()
            if ia in names and ib in names
        ]
        pairs = [
            PairHit(
                score=round(score, 6),
                identity_a_id=ia,
                identity_a=names[ia],
                template_a=ta,
                identity_b_id=ib,
                identity_b=names[ib],
                template_b=tb,
            )
            for (ta, tb), (score, ia, ib) in self.templates.items()
            if ia in names and ib in names
        ]
        identities.sort(key=lambda p: (-p.score, p.identity_a_id, p.identity_b_id))
        pairs.sort(key=lambda p: (-p.score, p.template_a, p.template_b))
        return identities, pairs


@dataclass
class Checkpoint:
    """Where a comparison stands: the templates of A up to ``after_template_id`` have been searched."""

    pairs: Pairs
    after_template_id: int = 0
    done: int = 0
    recall: float | None = None
    recall_above_threshold: float | None = None
    recall_sample: int = 0
    elapsed_s: float = 0.0
    """Spent in earlier runs (a resumed comparison adds its own)."""


def run_comparison(
    app: App,
    plan: ComparePlan,
    *,
    actor: str,
    progress: Progress | None = None,
    index_lock: AbstractContextManager[Any] | None = None,
    resume: Checkpoint | None = None,
    checkpoint: Callable[[Checkpoint], None] | None = None,
    audit_extra: dict[str, Any] | None = None,
) -> CompareResult:
    """Search every template of A in B (see the module docstring) and audit the comparison.

    ``progress(done, total)`` is called before the first batch and after each; an exception it raises
    stops the comparison (nothing is audited then, nothing was reported). ``checkpoint`` is called
    after each batch with where the comparison stands; a comparison given such a point as ``resume``
    goes on from there (B is searched as it is now; the plan's threshold is the one decided on)."""
    started = time.perf_counter()
    state = resume if resume is not None else Checkpoint(Pairs(plan.within))
    if progress is not None:
        progress(state.done, max(state.done, plan.templates_a))
    if plan.templates_a and plan.templates_b:
        _search_all(app, plan, state, index_lock, (progress, checkpoint))
    state.elapsed_s += time.perf_counter() - started
    result = _result(app, plan, state)
    _audit(app, actor, plan, result, audit_extra or {})
    return result


def _search_all(
    app: App,
    plan: ComparePlan,
    state: Checkpoint,
    index_lock: AbstractContextManager[Any] | None,
    report: tuple[Progress | None, Callable[[Checkpoint], None] | None],
) -> None:
    """Search A's templates after the checkpoint in B, batch by batch, updating ``state``."""
    request = plan.request
    b = _index_of_b(app, plan, index_lock)
    exact: _Search = b  # Milvus searches with its own index
    searcher: _Search = b
    if isinstance(b, FaissIndex):
        exact = searcher = ExhaustiveSearch(b)
        if request.index == "ivf":
            searcher = IvfSearch(b)
    per_identity = max(1, min(plan.max_templates_b, _MAX_TEMPLATES_SEARCHED))
    k = request.top_k * per_identity + (plan.max_templates_a if plan.within else 0)
    k = max(1, min(k, len(exact)))
    progress, checkpoint = report
    batches = stream_templates(app, plan.gallery_a_id, plan.card, request.batch_size, state.after_template_id)
    for ids, owners, vectors in batches:
        found = searcher.search(vectors, k)
        if searcher is not exact and state.recall_sample == 0:
            state.recall_sample = sample = min(RECALL_SAMPLE, len(vectors))
            truth = exact.search(vectors[:sample], k)
            approx = (found[0][:sample], found[1][:sample])
            state.recall = recall(truth, approx)
            state.recall_above_threshold = recall(truth, approx, plan.threshold)
        state.pairs.collect(app, (ids, owners), found, plan.threshold, request.top_k)
        state.done += len(ids)
        state.after_template_id = int(ids[-1])
        if checkpoint is not None:
            checkpoint(state)
        if progress is not None:
            progress(state.done, max(state.done, plan.templates_a))


def _result(app: App, plan: ComparePlan, state: Checkpoint) -> CompareResult:
    request = plan.request
    identities, hits = state.pairs.results(app)
    return CompareResult(
        case=plan.case,
        gallery_a=request.gallery_a,
        gallery_b=request.gallery_b,
        within=plan.within,
        model=plan.card.id,
        fpir=plan.fpir,
        threshold=round(plan.threshold, 6),
        threshold_source=plan.threshold_source,
        identities_b=plan.identities_b,
        templates_a=plan.templates_a,
        templates_b=plan.templates_b,
        top_k=request.top_k,
        index=request.index,
        recall=None if state.recall is None else round(state.recall, 4),
        recall_above_threshold=None
        if state.recall_above_threshold is None
        else round(state.recall_above_threshold, 4),
        recall_sample=state.recall_sample,
        identities=identities,
        pairs=hits,
        elapsed_s=round(state.elapsed_s, 3),
    )


def compare_galleries(
    app: App, request: CompareRequest, *, actor: str, progress: Progress | None = None
) -> CompareResult:
    """Check, run and audit one comparison (what `vigil compare` does)."""
    return run_comparison(app, plan_comparison(app, request), actor=actor, progress=progress)


def _audit(app: App, actor: str, plan: ComparePlan, result: CompareResult, extra: dict[str, Any]) -> None:
    audit.record(
        app,
        actor,
        "compare",
        target_type="gallery",
        target_id=plan.gallery_b_id,
        target_name=result.gallery_b,
        case=result.case,
        gallery_a=result.gallery_a,
        gallery_b=result.gallery_b,
        within=result.within,
        model=result.model,
        fpir=result.fpir,
        threshold=result.threshold,
        templates_a=result.templates_a,
        templates_b=result.templates_b,
        top_k=result.top_k,
        index=result.index,
        recall=result.recall,
        recall_above_threshold=result.recall_above_threshold,
        pairs=len(result.pairs),
        identity_pairs=len(result.identities),
        matches=[
            {
                "a": p.identity_a,
                "a_id": p.identity_a_id,
                "b": p.identity_b,
                "b_id": p.identity_b_id,
                "score": p.score,
            }
            for p in result.identities[:AUDIT_PAIRS]
        ],
        **extra,
    )
