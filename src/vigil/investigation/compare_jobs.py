"""Comparison jobs kept in the catalog: they survive a restart and go on from their checkpoint.

A job is a planned comparison (:func:`vigil.investigation.compare.plan_comparison`) stored with its
request, the threshold and rate decided on, and its progress. While it runs, a checkpoint (the last
template of A searched, the pairs found so far) is written after a batch at most every
``CHECKPOINT_S`` seconds, and always when it stops. A job that a stopped or killed server left
``running`` or ``interrupted`` goes on from its checkpoint (the server resumes them when it starts,
`vigil compare --resume ID` does it from the command line): the templates of A searched before are
not searched again, a pair found twice is kept once, and the threshold stays the one planned, so the
result is the one an uninterrupted run gives (B is searched as it is when the job goes on).

The stored pairs are template and identity ids with scores (sealed at rest when encryption is on);
names are looked up when a result is read, so an identity erased since drops out of every stored
result. The newest ``MAX_JOBS`` finished jobs are kept. The comparison is audited once, as
``compare``, when it finishes (with its job id and how many runs it took).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import delete, select

from vigil.app import App
from vigil.core.errors import ConflictError, ModelError, NotFoundError, VigilError
from vigil.investigation import compare as svc
from vigil.storage.tables import CompareJob, utcnow

MAX_JOBS = 50
"""Finished jobs kept; the oldest are deleted when a new one is created."""
CHECKPOINT_S = 2.0
"""Least time between two checkpoints of a running job."""

JobState = Literal["queued", "running", "interrupted", "done", "failed"]
PENDING: tuple[JobState, ...] = ("queued", "running", "interrupted")
"""States of a job that has yet to finish (a server start resumes them)."""


class JobStoppedError(Exception):
    """Raised by a job's progress callback to stop it at the next batch; it stays ``interrupted``."""


class JobInfo(BaseModel):
    id: str
    state: JobState
    case: str
    gallery_a: str
    gallery_b: str
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    done: int
    """Templates of A searched so far."""
    total: int
    """Templates of A to search."""
    runs: int
    """Times it was started: more than 1 when it went on after a restart."""
    identity_pairs: int | None = None
    """Identity pairs found so far (None before the first checkpoint)."""
    error: str | None = None


def _info(job: CompareJob) -> JobInfo:
    pairs = json.loads(job.summary_json).get("identity_pairs") if job.summary_json else None
    return JobInfo(
        id=job.id,
        state=job.state,
        case=job.case,
        gallery_a=job.gallery_a,
        gallery_b=job.gallery_b,
        requested_by=job.requested_by,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        done=job.done,
        total=max(job.total, job.done),
        runs=job.runs,
        identity_pairs=pairs,
        error=job.error,
    )


def create_job(app: App, plan: svc.ComparePlan, actor: str) -> JobInfo:
    """Store a planned comparison as a ``queued`` job (run it with :func:`run_job`)."""
    with app.db.session() as s:
        job = CompareJob(
            id=secrets.token_hex(8),
            state="queued",
            case=plan.case,
            gallery_a=plan.request.gallery_a,
            gallery_b=plan.request.gallery_b,
            gallery_a_id=plan.gallery_a_id,
            gallery_b_id=plan.gallery_b_id,
            request_json=plan.request.model_dump_json(),
            model_id=plan.card.id,
            fpir=plan.fpir,
            threshold=plan.threshold,
            requested_by=actor,
            total=plan.templates_a,
        )
        s.add(job)
        s.flush()
        finished = s.scalars(
            select(CompareJob.id)
            .where(CompareJob.state.in_(("done", "failed")))
            .order_by(CompareJob.created_at.desc())
            .offset(MAX_JOBS)
        ).all()
        if finished:
            s.execute(delete(CompareJob).where(CompareJob.id.in_(finished)))
        return _info(job)


def _get(app: App, job_id: str) -> CompareJob:
    with app.db.session() as s:
        job = s.get(CompareJob, job_id)
        if job is None:
            raise NotFoundError(
                f"no comparison job {job_id!r}", hint="see GET /api/compare or `vigil compare --list`"
            )
        s.expunge(job)
        return job


def job_info(app: App, job_id: str) -> JobInfo:
    return _info(_get(app, job_id))


def list_jobs(app: App) -> list[JobInfo]:
    """Newest first."""
    with app.db.session() as s:
        return [_info(j) for j in s.scalars(select(CompareJob).order_by(CompareJob.created_at.desc()))]


def pending_jobs(app: App) -> list[str]:
    """Ids of the jobs yet to finish, oldest first."""
    with app.db.session() as s:
        return list(
            s.scalars(
                select(CompareJob.id).where(CompareJob.state.in_(PENDING)).order_by(CompareJob.created_at)
            )
        )


def job_result(app: App, job_id: str) -> svc.CompareResult | None:
    """A finished job's result (names as they are now; erased identities left out); None before."""
    job = _get(app, job_id)
    stored = json.loads(job.summary_json) if job.summary_json else {}
    if job.state != "done" or "result" not in stored:
        return None
    summary = svc.CompareResult.model_validate(stored["result"])
    pairs = svc.Pairs.from_bytes(job.pairs, summary.within)
    identities, hits = pairs.results(app)
    return summary.model_copy(update={"identities": identities, "pairs": hits})


def _plan(app: App, job: CompareJob) -> svc.ComparePlan:
    """The job's plan, checked again (a gallery may be gone or expired), with its own threshold."""
    plan = svc.plan_comparison(app, svc.CompareRequest.model_validate_json(job.request_json))
    if plan.card.id != job.model_id:
        raise ModelError(
            f"the job was planned with {job.model_id}, the active model is now {plan.card.id}",
            hint="start a new comparison",
        )
    return replace(plan, case=job.case, fpir=job.fpir, threshold=job.threshold)


def _save(app: App, job_id: str, **values: object) -> None:
    with app.db.session() as s:
        job = s.get(CompareJob, job_id)
        if job is not None:
            for k, v in values.items():
                setattr(job, k, v)


def _checkpointer(app: App, job_id: str) -> Callable[[svc.Checkpoint], None]:
    last = [time.monotonic()]

    def write(state: svc.Checkpoint, force: bool = False) -> None:
        if not force and time.monotonic() - last[0] < CHECKPOINT_S:
            return
        last[0] = time.monotonic()
        _save(app, job_id, **_point(state))

    return write


def _point(state: svc.Checkpoint, result: svc.CompareResult | None = None) -> dict[str, object]:
    """The columns of a checkpoint (with the result, once done, less its pairs: they are in ``pairs``)."""
    summary = None
    if result is not None:
        summary = result.model_copy(update={"identities": [], "pairs": []}).model_dump(mode="json")
    return {
        "done": state.done,
        "after_template_id": state.after_template_id,
        "pairs": state.pairs.to_bytes(),
        "summary_json": json.dumps(
            {
                "recall": state.recall,
                "recall_above_threshold": state.recall_above_threshold,
                "recall_sample": state.recall_sample,
                "elapsed_s": state.elapsed_s,
                "identity_pairs": len(state.pairs.identities),
                **({"result": summary} if summary else {}),
            }
        ),
    }


def _resume_point(job: CompareJob, within: bool) -> svc.Checkpoint:
    extra = json.loads(job.summary_json) if job.summary_json else {}
    return svc.Checkpoint(
        pairs=svc.Pairs.from_bytes(job.pairs, within),
        after_template_id=job.after_template_id,
        done=job.done,
        recall=extra.get("recall"),
        recall_above_threshold=extra.get("recall_above_threshold"),
        recall_sample=int(extra.get("recall_sample", 0)),
        elapsed_s=float(extra.get("elapsed_s", 0.0)),
    )


def run_job(
    app: App,
    job_id: str,
    *,
    progress: svc.Progress | None = None,
    index_lock: AbstractContextManager[Any] | None = None,
) -> svc.CompareResult:
    """Run (or go on with) a job until it is done; its state, checkpoint and result are stored.

    ``progress`` may raise :class:`JobStoppedError` to stop it (state ``interrupted``: it goes on
    later from its checkpoint). A :class:`~vigil.core.errors.VigilError` (a gallery deleted or
    expired since, the model switched) fails it with that message, and is raised again."""
    job = _get(app, job_id)
    if job.state in ("done", "failed"):
        raise ConflictError(f"comparison job {job_id} is already {job.state}", hint="start a new one")
    try:
        plan = _plan(app, job)
    except VigilError as e:
        _save(app, job_id, state="failed", error=e.message, finished_at=utcnow())
        raise
    point = _resume_point(job, plan.within)
    _save(app, job_id, state="running", started_at=job.started_at or utcnow(), runs=job.runs + 1)
    write = _checkpointer(app, job_id)
    try:
        result = svc.run_comparison(
            app,
            plan,
            actor=job.requested_by,
            progress=progress,
            index_lock=index_lock,
            resume=point,
            checkpoint=write,
            audit_extra={"job": job_id, "runs": job.runs + 1},
        )
    except JobStoppedError:
        _save(app, job_id, state="interrupted", **_point(point))
        raise
    except VigilError as e:
        _save(app, job_id, state="failed", error=e.message, finished_at=utcnow(), **_point(point))
        raise
    _save(app, job_id, state="done", finished_at=utcnow(), **_point(point, result))
    return result


def interrupt_job(app: App, job_id: str) -> None:
    """Mark a running job interrupted (its runner was stopped outside :func:`run_job`'s control, e.g. a
    Ctrl-C); it goes on from its last checkpoint."""
    _save(app, job_id, state="interrupted")


def fail_job(app: App, job_id: str, error: str) -> None:
    """Mark a job failed (an unexpected error in its runner); its checkpoint stays for inspection."""
    _save(app, job_id, state="failed", error=error, finished_at=utcnow())
