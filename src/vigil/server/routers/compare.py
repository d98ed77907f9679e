"""Gallery against gallery as background jobs, with progress on the event bus.

Jobs live in the memory of the server process: a restart forgets them (the audit log keeps every
finished comparison). They run one at a time on a worker thread; the newest ``MAX_JOBS`` are kept.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel

from vigil.core.errors import ConflictError, NotFoundError, VigilError
from vigil.events.schemas import ComparisonProgress
from vigil.gallery.scope import GalleryScope
from vigil.investigation import compare as svc
from vigil.server.deps import Manage, Offset, Scope, ServerState, State

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["investigation"])

MAX_JOBS = 20
"""Jobs kept in memory; the oldest finished ones are dropped beyond this."""

JobState = Literal["queued", "running", "done", "failed"]


class JobInfo(BaseModel):
    id: str
    state: JobState
    case: str
    gallery_a: str
    gallery_b: str
    requested_by: str
    created_at: datetime
    finished_at: datetime | None
    done: int
    """Templates of A searched so far."""
    total: int
    """Templates of A to search."""
    error: str | None = None


class JobView(JobInfo):
    """A job; once done, its result with ``identities`` and ``pairs`` paged by ``offset`` and ``limit``."""

    result: svc.CompareResult | None = None
    identity_pairs: int | None = None
    """All identity pairs found (the page holds ``limit`` of them)."""
    template_pairs: int | None = None
    offset: int = 0
    limit: int = 0


class _StoppedError(Exception):
    """The server is stopping: the running comparison ends at its next batch."""


@dataclass
class _Job:
    id: str
    plan: svc.ComparePlan
    actor: str
    state: JobState = "queued"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    done: int = 0
    error: str | None = None
    result: svc.CompareResult | None = None

    def info(self) -> JobInfo:
        return JobInfo(
            id=self.id,
            state=self.state,
            case=self.plan.case,
            gallery_a=self.plan.request.gallery_a,
            gallery_b=self.plan.request.gallery_b,
            requested_by=self.actor,
            created_at=self.created_at,
            finished_at=self.finished_at,
            done=self.done,
            total=self.plan.templates_a,
            error=self.error,
        )


class CompareJobs:
    """The server's comparison jobs: run one at a time, each on its own daemon thread."""

    def __init__(self, st: ServerState) -> None:
        self._st = st
        self._jobs: OrderedDict[str, _Job] = OrderedDict()
        self._lock = threading.Lock()
        self._one_at_a_time = threading.Lock()
        self._stopping = threading.Event()

    def submit(self, plan: svc.ComparePlan, actor: str) -> _Job:
        job = _Job(id=secrets.token_hex(8), plan=plan, actor=actor)
        with self._lock:
            self._jobs[job.id] = job
            finished = [j.id for j in self._jobs.values() if j.state in ("done", "failed")]
            for old in finished[: max(0, len(self._jobs) - MAX_JOBS)]:
                del self._jobs[old]
        self._publish(job)
        threading.Thread(target=self._run, args=(job,), name=f"vigil-compare-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: str, scope: GalleryScope) -> _Job:
        """The job, if both its galleries are within ``scope``."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or not _visible(job, scope):
            raise NotFoundError(
                f"no comparison job {job_id!r}",
                hint="jobs are kept in the server's memory: a restart forgets them (see GET /api/compare)",
            )
        return job

    def all(self, scope: GalleryScope) -> list[_Job]:
        with self._lock:
            return [j for j in reversed(self._jobs.values()) if _visible(j, scope)]

    def stop(self) -> None:
        self._stopping.set()

    def _publish(self, job: _Job) -> None:
        info = job.info().model_dump(exclude={"requested_by"})
        pairs = len(job.result.identities) if job.result is not None else None
        self._st.bus.publish(ComparisonProgress(**info, identity_pairs=pairs))

    def _run(self, job: _Job) -> None:
        def progress(done: int, total: int) -> None:
            if self._stopping.is_set():
                raise _StoppedError
            job.done = done
            self._publish(job)

        with self._one_at_a_time:
            try:
                if self._stopping.is_set():
                    raise _StoppedError
                job.state = "running"
                job.result = svc.run_comparison(
                    self._st.app, job.plan, actor=job.actor, progress=progress, index_lock=self._st.face_lock
                )
                job.state = "done"
            except _StoppedError:
                job.state, job.error = "failed", "the server stopped before the comparison finished"
            except VigilError as exc:
                job.state, job.error = "failed", exc.message
            except Exception:  # a worker thread must report, never die silently
                log.exception("comparison job %s failed", job.id)
                job.state, job.error = "failed", "internal error (see the server log)"
            finally:
                job.finished_at = datetime.now(UTC)
            self._publish(job)


def _visible(job: _Job, scope: GalleryScope) -> bool:
    return scope.allows_name(job.plan.request.gallery_a) and scope.allows_name(job.plan.request.gallery_b)


_jobs_lock = threading.Lock()


def jobs(st: ServerState) -> CompareJobs:
    """The server's job store, made on first use (and stopped with the server)."""
    with _jobs_lock:
        store = st.extras.get("compare_jobs")
        if store is None:
            store = st.extras["compare_jobs"] = CompareJobs(st)
            st.extras.setdefault("on_stop", []).append(lambda _st: store.stop())
        return store


@router.post(
    "/compare",
    status_code=202,
    summary="Compare gallery A with gallery B (or with itself) for a case: a background job",
)
def start(body: svc.CompareRequest, st: State, me: Manage, scope: Scope) -> JobInfo:
    for name in (body.gallery_a, body.gallery_b):  # a bound key compares its own gallery with itself
        scope.gallery(name)
    plan = svc.plan_comparison(st.app, body)  # refuses a missing case, unknown or expired galleries now
    return jobs(st).submit(plan, me.actor).info()


@router.get("/compare", summary="Comparison jobs of this server process, newest first")
def list_jobs(st: State, _: Manage, scope: Scope) -> list[JobInfo]:
    return [j.info() for j in jobs(st).all(scope)]


@router.get(
    "/compare/{job_id}.csv",
    summary="A finished comparison as CSV (identity pairs, or every template pair)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
def job_csv(
    job_id: str,
    st: State,
    _: Manage,
    scope: Scope,
    level: Annotated[Literal["identities", "pairs"], Query()] = "identities",
) -> Response:
    result = _finished(jobs(st).get(job_id, scope))
    return Response(
        svc.to_csv(result, level),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="compare-{job_id}-{level}.csv"'},
    )


@router.get(
    "/compare/{job_id}", summary="A comparison job: state, progress, and its result once done (paged)"
)
def job(
    job_id: str,
    st: State,
    _: Manage,
    scope: Scope,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> JobView:
    found = jobs(st).get(job_id, scope)
    view = JobView(**found.info().model_dump(), offset=offset, limit=limit)
    if found.result is not None:
        r = found.result
        view.identity_pairs, view.template_pairs = len(r.identities), len(r.pairs)
        view.result = r.model_copy(
            update={
                "identities": r.identities[offset : offset + limit],
                "pairs": r.pairs[offset : offset + limit],
            }
        )
    return view


def _finished(job: _Job) -> svc.CompareResult:
    if job.result is None:
        raise ConflictError(
            f"comparison job {job.id} is {job.state}" + (f": {job.error}" if job.error else ""),
            hint="wait until GET /api/compare/{job} says done",
        )
    return job.result
