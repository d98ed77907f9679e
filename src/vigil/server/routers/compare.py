"""Gallery against gallery as background jobs, with progress on the event bus.

Jobs are kept in the catalog (:mod:`vigil.investigation.compare_jobs`): they run one at a time on a
worker thread, and a job that a stopped or killed server left unfinished goes on from its checkpoint
when the server starts again.
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from vigil.core.errors import ConflictError, NotFoundError, VigilError
from vigil.events.schemas import ComparisonProgress
from vigil.gallery.scope import GalleryScope
from vigil.investigation import compare as svc
from vigil.investigation import compare_csv
from vigil.investigation import compare_jobs as store
from vigil.investigation.compare_jobs import JobInfo
from vigil.server.deps import Manage, Offset, Scope, ServerState, State

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["investigation"])


class JobView(JobInfo):
    """A job; once done, its result with ``identities`` and ``pairs`` paged by ``offset`` and ``limit``."""

    result: svc.CompareResult | None = None
    template_pairs: int | None = None
    offset: int = 0
    limit: int = 0


class CompareJobs:
    """The server's comparison runner: one job at a time, on one daemon thread, oldest first."""

    def __init__(self, st: ServerState) -> None:
        self._st = st
        self._wake = threading.Condition()
        self._queue: list[str] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, plan: svc.ComparePlan, actor: str) -> JobInfo:
        info = store.create_job(self._st.app, plan, actor)
        self._publish(info)
        self._enqueue([info.id])
        return info

    def resume(self) -> None:
        """Queue the jobs a stopped or killed server left unfinished (at the server's start)."""
        pending = store.pending_jobs(self._st.app)
        if pending:
            log.info("resuming %d comparison job(s) from their checkpoints", len(pending))
            self._enqueue(pending)

    def get(self, job_id: str, scope: GalleryScope) -> JobInfo:
        """The job, if both its galleries are within ``scope``."""
        try:
            info = store.job_info(self._st.app, job_id)
        except NotFoundError:
            info = None
        if info is None or not _visible(info, scope):
            raise NotFoundError(f"no comparison job {job_id!r}", hint="see GET /api/compare")
        return info

    def all(self, scope: GalleryScope) -> list[JobInfo]:
        return [j for j in store.list_jobs(self._st.app) if _visible(j, scope)]

    def stop(self) -> None:
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()

    def _enqueue(self, ids: list[str]) -> None:
        with self._wake:
            self._queue.extend(i for i in ids if i not in self._queue)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="vigil-compare", daemon=True)
                self._thread.start()
            self._wake.notify_all()

    def _publish(self, info: JobInfo) -> None:
        self._st.bus.publish(
            ComparisonProgress(**info.model_dump(exclude={"requested_by", "started_at", "runs"}))
        )

    def _loop(self) -> None:
        while not self._stopping.is_set():
            with self._wake:
                while not self._queue and not self._stopping.is_set():
                    self._wake.wait()
                if self._stopping.is_set():
                    return
                job_id = self._queue.pop(0)
            self._run(job_id)

    def _run(self, job_id: str) -> None:
        app = self._st.app
        info = store.job_info(app, job_id)

        def progress(done: int, total: int) -> None:
            if self._stopping.is_set():
                raise store.JobStoppedError
            self._publish(info.model_copy(update={"state": "running", "done": done, "total": total}))

        try:
            store.run_job(app, job_id, progress=progress, index_lock=self._st.face_lock)
        except store.JobStoppedError:
            log.info("comparison job %s interrupted: it goes on when the server starts again", job_id)
        except VigilError as exc:
            log.warning("comparison job %s failed: %s", job_id, exc.message)
        except Exception:  # a worker thread must report, never die silently
            log.exception("comparison job %s failed", job_id)
            store.fail_job(app, job_id, "internal error (see the server log)")
        self._publish(store.job_info(app, job_id))


def _visible(job: JobInfo, scope: GalleryScope) -> bool:
    return scope.allows_name(job.gallery_a) and scope.allows_name(job.gallery_b)


_jobs_lock = threading.Lock()


def jobs(st: ServerState) -> CompareJobs:
    """The server's job runner, made on first use (and stopped with the server)."""
    with _jobs_lock:
        runner = st.extras.get("compare_jobs")
        if runner is None:
            runner = st.extras["compare_jobs"] = CompareJobs(st)
            st.extras.setdefault("on_stop", []).append(lambda _st: runner.stop())
        return runner


def install_hooks(st: ServerState) -> None:
    """At the server's start, go on with the comparisons a stopped or killed server left unfinished."""
    st.extras.setdefault("on_start", []).append(lambda s: jobs(s).resume())


@router.post(
    "/compare",
    status_code=202,
    summary="Compare gallery A with gallery B (or with itself) for a case: a background job",
)
def start(body: svc.CompareRequest, st: State, me: Manage, scope: Scope) -> JobInfo:
    for name in (body.gallery_a, body.gallery_b):  # a bound key compares its own gallery with itself
        scope.gallery(name)
    plan = svc.plan_comparison(st.app, body)  # refuses a missing case, unknown or expired galleries now
    return jobs(st).submit(plan, me.actor)


@router.get("/compare", summary="Comparison jobs, newest first (kept across restarts)")
def list_jobs(st: State, _: Manage, scope: Scope) -> list[JobInfo]:
    return jobs(st).all(scope)


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
    result = _finished(st, jobs(st).get(job_id, scope))
    return Response(
        compare_csv.to_csv(result, level),
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
    view = JobView(**found.model_dump(), offset=offset, limit=limit)
    r = store.job_result(st.app, job_id) if found.state == "done" else None
    if r is not None:
        view.identity_pairs, view.template_pairs = len(r.identities), len(r.pairs)
        view.result = r.model_copy(
            update={
                "identities": r.identities[offset : offset + limit],
                "pairs": r.pairs[offset : offset + limit],
            }
        )
    return view


def _finished(st: ServerState, job: JobInfo) -> svc.CompareResult:
    result = store.job_result(st.app, job.id) if job.state == "done" else None
    if result is None:
        raise ConflictError(
            f"comparison job {job.id} is {job.state}" + (f": {job.error}" if job.error else ""),
            hint="wait until GET /api/compare/{job} says done",
        )
    return result
