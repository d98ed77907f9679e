"""Redaction from the API (docs/redaction.md): a supervisor or admin has a video file of a media folder
written with every face blurred (but those of ``keep``), as a background job, and downloads it.

Jobs live in the server's memory (they do not survive a restart; their outputs stay on disk, under
``<data dir>/redactions/``). At most :data:`MAX_RUNNING` run at once, each on its own thread with its
own :class:`~vigil.app.App` (the native detectors are not thread-safe), and the last
:data:`MAX_KEPT` finished ones are remembered.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from vigil.accounts import Principal
from vigil.app import App
from vigil.core.config import Settings
from vigil.core.errors import ConflictError, InputError, NotFoundError, VigilError
from vigil.server.deps import MANAGE, ServerState, State, require
from vigil.video import redact as svc
from vigil.video.cameras import check_media_path, is_network_source

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["investigation"])

MAX_RUNNING = 2
"""Redactions running at once; one more is refused (429)."""
MAX_KEPT = 20
"""Finished redactions remembered (the oldest is forgotten first; its output stays on disk)."""

Redactor = Annotated[Principal, Depends(require(*MANAGE, whole_server=True))]
"""Supervisors and admins, with a key bound to no gallery (a media folder is no gallery's)."""

Name = Annotated[str, Field(min_length=1, max_length=200)]


class RedactRequest(BaseModel):
    """What to redact: a video file inside a media folder (setting ``media_dirs``)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, max_length=4096, description="a video file inside a media folder")
    keep: list[Name] = Field(default_factory=list, max_length=100, description="identities left visible")
    galleries: list[Name] | None = Field(
        default=None, max_length=100, description="where keep is looked up (none: every gallery)"
    )
    detect_every: int = Field(default=1, ge=1, le=30, description="detect on every N-th frame")


class RedactionOutput(BaseModel):
    """What a finished redaction wrote."""

    output_sha256: str
    frames: int
    faces_blurred: int
    tracks: int
    kept_identities: list[str]
    detect_every: int
    download: str


class RedactionJob(BaseModel):
    """A redaction: ``running`` (frames done of the total, both passes counted), ``done`` or ``failed``."""

    id: str
    state: Literal["running", "done", "failed"]
    source: str
    actor: str
    started_at: datetime
    frames_done: int = 0
    frames_total: int = 0
    result: RedactionOutput | None = None
    error: str | None = None


@dataclass
class _Job:
    view: RedactionJob
    source: Path
    out: Path
    options: svc.RedactOptions
    lock: threading.Lock = field(default_factory=threading.Lock)


class Redactions:
    """The server's redaction jobs, in memory."""

    def __init__(self, st: ServerState) -> None:
        self._st = st
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, _Job] = OrderedDict()

    def submit(self, body: RedactRequest, actor: str) -> RedactionJob:
        settings = self._st.app.settings
        source = _source(settings, body.source)
        options = svc.RedactOptions(keep=body.keep, galleries=body.galleries, detect_every=body.detect_every)
        _check_keep(self._st.app, options)
        folder = settings.data_dir / "redactions"
        folder.mkdir(mode=0o700, exist_ok=True)
        job_id = secrets.token_hex(8)
        view = RedactionJob(
            id=job_id, state="running", source=source.name, actor=actor, started_at=datetime.now(UTC)
        )
        job = _Job(view, source, folder / f"{job_id}.mp4", options)
        with self._lock:
            if sum(j.view.state == "running" for j in self._jobs.values()) >= MAX_RUNNING:
                raise HTTPException(
                    429, f"{MAX_RUNNING} redactions are running; wait for one to finish and try again"
                )
            self._jobs[job_id] = job
            self._forget_old()
        threading.Thread(target=self._run, args=(job,), name=f"redact-{job_id}", daemon=True).start()
        return self.get(job_id)

    def get(self, job_id: str) -> RedactionJob:
        job = self._job(job_id)
        with job.lock:
            return job.view.model_copy(deep=True)

    def file(self, job_id: str) -> tuple[Path, RedactionJob]:
        view = self.get(job_id)
        if view.state == "running":
            raise ConflictError(
                f"redaction {job_id} is still running", hint=f"poll GET /api/redactions/{job_id}"
            )
        job = self._job(job_id)
        if view.state == "failed" or not job.out.is_file():
            raise NotFoundError(f"redaction {job_id} has no output", hint=view.error or "start it again")
        return job.out, view

    def _job(self, job_id: str) -> _Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(
                f"no redaction job {job_id!r}",
                hint="jobs are kept in memory: a restarted server forgets them (POST /api/redactions)",
            )
        return job

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.view.state != "running"]
        for key in finished[: max(0, len(finished) - MAX_KEPT)]:
            del self._jobs[key]

    def _run(self, job: _Job) -> None:
        def progress(done: int, total: int) -> None:
            with job.lock:
                job.view.frames_done, job.view.frames_total = done, total

        app = App(self._st.app.settings)
        try:
            result = svc.redact(
                app, job.source, job.out, job.options, actor=job.view.actor, on_progress=progress
            )
        except Exception as exc:  # the job fails, with what went wrong; the server goes on
            if not isinstance(exc, VigilError):
                log.exception("redaction %s failed", job.view.id)
            with contextlib.suppress(OSError):
                job.out.unlink(missing_ok=True)
            with job.lock:
                job.view.state, job.view.error = "failed", str(exc)
        else:
            output = RedactionOutput(
                **result.model_dump(include=set(RedactionOutput.model_fields)),
                download=f"/api/redactions/{job.view.id}/file",
            )
            with job.lock:
                job.view.state, job.view.result = "done", output
                job.view.frames_done = job.view.frames_total
        finally:
            app.close()
            with self._lock:
                self._forget_old()


def _source(settings: Settings, source: str) -> Path:
    """The video file ``source`` names: inside a media folder (422 outside, 404 missing), not a folder."""
    if is_network_source(source) or any(ord(c) < 32 for c in source):
        raise InputError(f"source: {source!r} is not a file", hint="give a video file inside a media folder")
    try:
        resolved = Path(source).expanduser().resolve()
        if not resolved.exists() and any(resolved.is_relative_to(f) for f in settings.media_folders):
            raise NotFoundError(
                f"source: {source}: no such file", hint="copy the video into the media folder"
            )
        path = check_media_path(settings, source)
    except InputError as exc:
        raise InputError(f"source: {exc.message}", hint=exc.hint) from None
    except (OSError, RuntimeError) as exc:  # a name too long, a symlink loop
        why = getattr(exc, "strerror", None) or "unreadable"
        raise InputError(
            f"source: {source[:200]!r} cannot be looked up ({why})",
            hint="give a video file inside a media folder",
        ) from None
    assert path is not None  # not a network source
    if path.is_dir():
        raise InputError(
            f"source: {source} is a folder; folders: use the CLI",
            hint="`vigil redact FOLDER --out NEW_FOLDER` (the API redacts video files)",
        )
    return path


def _check_keep(app: App, options: svc.RedactOptions) -> None:
    """Unknown galleries and kept names are refused now (422), not once the job runs."""
    try:
        svc.check_keep(app, options)
    except NotFoundError as exc:
        raise InputError(f"galleries: {exc.message}", hint=exc.hint) from None
    except InputError as exc:
        raise InputError(exc.message.replace("--keep ", "keep: ", 1), hint=exc.hint) from None


def redactions(st: ServerState) -> Redactions:
    jobs = st.extras.get("redactions")
    if jobs is None:
        jobs = st.extras["redactions"] = Redactions(st)
    assert isinstance(jobs, Redactions)
    return jobs


@router.post(
    "/redactions",
    status_code=202,
    summary="Redact a video file of a media folder: every face blurred but those kept (supervisors "
    "and admins; a background job, audited as redact)",
    responses={429: {"description": f"{MAX_RUNNING} redactions are already running"}},
)
def start(body: RedactRequest, st: State, me: Redactor) -> RedactionJob:
    return redactions(st).submit(body, me.actor)


@router.get("/redactions/{job_id}", summary="A redaction job: its state, progress and result")
def get_job(job_id: str, st: State, _: Redactor) -> RedactionJob:
    return redactions(st).get(job_id)


@router.get(
    "/redactions/{job_id}/file",
    summary="The redacted video (MPEG-4) of a finished job (409 while it runs)",
    response_class=FileResponse,
    responses={200: {"content": {"video/mp4": {}}}},
)
def download(job_id: str, st: State, _: Redactor) -> FileResponse:
    path, view = redactions(st).file(job_id)
    stem = Path(view.source).stem[:100] or "video"
    sha = view.result.output_sha256 if view.result else ""
    return FileResponse(
        path,
        media_type="video/mp4",
        filename=f"{stem}-redacted.mp4",
        headers={"X-Output-SHA256": sha, "Cache-Control": "no-store"},
    )
