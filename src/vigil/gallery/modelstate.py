"""The active model pack, and switching to another by re-embedding every enrolment photo.

vigil keeps every enrolment photo, so a switch re-embeds them with the new pack's engine as a
resumable job, gallery by gallery, in batches committed as they go. The new model's templates are
stored beside the old ones (which are never touched) and matching goes on with the active pack's
model only, so the old model keeps matching everything and nothing is matched against a half-built
gallery. A run killed half-way resumes and redoes nothing: a photo that has a template of the new
model, or is counted as failed, is skipped. A gallery's completion is recorded in one transaction.
Once every gallery is complete, one transaction flips the active pack, after checking inside it that
no photo lacks a template of the new model: photos enrolled with the old engine meanwhile are
embedded first, and it tries again.

A photo in which the new detector finds no face (or whose file is unreadable or gone) is counted
(``photos_failed``, listed with its identity so the operator can replace it) and does not block the
switch. Audited: the start (``model_switch_start``), each gallery's completion with its counts
(``model_switch_gallery``), the flip (``model_switch_flip``), a cancel and a failure. An audit entry
follows its change's commit; a run killed in between writes it when it resumes.

>>> status = start_switch(app, "edgeface-xs", engine.model_id, "cli:alice")  # doctest: +SKIP
>>> run_switch(app, status.id, engine, progress=lambda st: print(st.photos_done))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil.app import App
from vigil.core.errors import ConflictError, InputError, NotFoundError
from vigil.gallery import reembed
from vigil.gallery.enroll import bump_generation
from vigil.storage import audit
from vigil.storage.tables import (
    ActiveModel,
    Gallery,
    Identity,
    ModelSwitch,
    ModelSwitchFailure,
    ModelSwitchGallery,
    Photo,
    SwitchState,
)
from vigil.vision.engine import FaceEngine
from vigil.vision.packs.active import active_model, check_names

SwitchStateName = Literal["running", "done", "failed", "cancelled"]
BATCH_PHOTOS = 16
"""Photos re-embedded per committed batch (a progress report after each)."""
MAX_LISTED_FAILURES = 200
"""Failed photos listed in a status (``photos_failed`` counts them all)."""


class SwitchInterruptedError(Exception):
    """Raise it from a progress callback to stop a run and leave the switch running (to resume later)."""


class SwitchFailure(BaseModel):
    """A photo the new pack could not use, for the operator to replace."""

    gallery: str
    identity: str
    identity_id: int
    photo_id: int
    photo: str | None
    sha256: str
    reason: str


class SwitchStatus(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    pack: str
    model_id: str
    from_pack: str | None
    from_model_id: str | None
    state: SwitchStateName
    requested_by: str
    photos_total: int
    photos_done: int
    """Photos with a template of the new model, or counted as failed."""
    photos_failed: int
    galleries_total: int
    galleries_done: int
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    failed: list[SwitchFailure] = []
    """The first failed photos, by gallery and identity (at most ``MAX_LISTED_FAILURES``)."""


# -- status ----------------------------------------------------------------------------------------
def get_switch(app: App, switch_id: int) -> SwitchStatus:
    with app.db.session() as s:
        sw = s.get(ModelSwitch, switch_id)
        if sw is None:
            raise NotFoundError(f"no model switch {switch_id}")
        return _status(s, sw)


def current_switch(app: App) -> SwitchStatus | None:
    """The running switch, else the latest one; None if there never was one."""
    with app.db.session() as s:
        sw = s.scalar(
            select(ModelSwitch).order_by(
                (ModelSwitch.state == SwitchState.running).desc(), ModelSwitch.id.desc()
            )
        )
        return _status(s, sw) if sw is not None else None


def _status(s: Session, sw: ModelSwitch) -> SwitchStatus:
    rows = s.execute(
        select(Gallery.name, Identity.name, Identity.id, Photo.id, Photo.original_name, Photo.sha256)
        .add_columns(ModelSwitchFailure.reason)
        .select_from(ModelSwitchFailure)
        .join(Photo, Photo.id == ModelSwitchFailure.photo_id)
        .join(Identity, Identity.id == ModelSwitchFailure.identity_id)
        .join(Gallery, Gallery.id == Identity.gallery_id)
        .where(ModelSwitchFailure.switch_id == sw.id)
        .order_by(Gallery.name, Identity.name, Photo.id)
        .limit(MAX_LISTED_FAILURES)
    ).all()
    failed = [
        SwitchFailure(gallery=g, identity=n, identity_id=i, photo_id=p, photo=o, sha256=h, reason=r)
        for g, n, i, p, o, h, r in rows
    ]
    status = SwitchStatus.model_validate(sw)
    status.failed = failed
    return status


# -- counts ----------------------------------------------------------------------------------------
def _refresh_totals(s: Session, sw: ModelSwitch) -> None:
    """Recount the switch's totals from the catalog (at the start, each completion and the flip)."""
    photos = int(s.scalar(select(func.count(Photo.id))) or 0)
    sw.photos_total = photos
    sw.photos_done = photos - reembed.count_pending(s, sw.model_id, sw.id)
    sw.photos_failed = int(
        s.scalar(select(func.count(ModelSwitchFailure.id)).where(ModelSwitchFailure.switch_id == sw.id)) or 0
    )
    sw.galleries_total = int(s.scalar(select(func.count(Gallery.id))) or 0)
    sw.galleries_done = int(
        s.scalar(select(func.count(ModelSwitchGallery.id)).where(ModelSwitchGallery.switch_id == sw.id)) or 0
    )


# -- start, cancel -----------------------------------------------------------------------------------
def start_switch(app: App, pack: str, model_id: str, actor: str) -> SwitchStatus:
    """Start a switch to ``pack``, whose embedder makes templates of ``model_id``; audited.

    Asked again for the pack of the running switch, it returns that switch (to resume it). Refused
    (ConflictError) for the pack in use, or while a switch to another pack runs."""
    check_names(pack, model_id)
    running = _running(app)
    if running is not None:
        if running.pack == pack and running.model_id == model_id:
            return running
        raise ConflictError(
            f"a switch to the {running.pack} pack is running "
            f"({running.photos_done} of {running.photos_total} photos re-embedded)",
            hint="wait until it is done, or cancel it first",
        )
    from_pack, from_model = _in_use(app)
    if pack == from_pack:
        raise ConflictError(f"{pack} is already the active model pack", hint="there is nothing to switch")
    try:
        with app.db.session() as s:
            sw = ModelSwitch(
                pack=pack,
                model_id=model_id,
                from_pack=from_pack,
                from_model_id=from_model,
                requested_by=actor,
            )
            s.add(sw)
            s.flush()
            _refresh_totals(s, sw)
            switch_id = sw.id
    except IntegrityError as exc:  # the partial unique index: another switch started just now
        raise ConflictError("another model switch started at the same time", hint="see its progress") from exc
    status = get_switch(app, switch_id)
    audit.record(
        app,
        actor,
        "model_switch_start",
        target_type="model_pack",
        target_id=switch_id,
        target_name=pack,
        model_id=model_id,
        from_pack=from_pack,
        from_model_id=from_model,
        photos=status.photos_total,
        photos_done=status.photos_done,
        galleries=status.galleries_total,
    )
    return status


def _running(app: App) -> SwitchStatus | None:
    current = current_switch(app)
    return current if current is not None and current.state == "running" else None


def _in_use(app: App) -> tuple[str | None, str | None]:
    """The pack and model that match now: the process's pack (``App.pack``, where the legacy model
    settings' ``custom`` wins over the catalog), else the active one; its model as recorded, else the
    model of the engine in use."""
    active = active_model(app)
    pack = app.pack or (active.pack if active else None)
    if active is not None and active.pack == pack:
        return pack, active.model_id
    return pack, app.engine.model_id


def cancel_switch(app: App, actor: str) -> SwitchStatus:
    """Cancel the running switch (audited): its run stops at the next batch; the old pack stays active.
    The templates it made stay beside the old ones (a later switch to the same pack reuses them)."""
    running = _running(app)
    if running is None:
        raise ConflictError("no model switch is running")
    _end(app, running.id, SwitchState.cancelled, None)
    audit.record(
        app,
        actor,
        "model_switch_cancel",
        target_type="model_pack",
        target_id=running.id,
        target_name=running.pack,
        photos_done=running.photos_done,
        photos_total=running.photos_total,
    )
    return get_switch(app, running.id)


def _end(app: App, switch_id: int, state: SwitchState, error: str | None) -> None:
    with app.db.session() as s:
        s.execute(
            update(ModelSwitch)
            .where(ModelSwitch.id == switch_id, ModelSwitch.state == SwitchState.running)
            .values(state=state, error=error, finished_at=datetime.now(UTC))
        )


# -- the run -----------------------------------------------------------------------------------------
class _StoppedError(Exception):
    """The switch is no longer running (cancelled): the run ends."""


class _RetryError(Exception):
    """A check inside a transaction found work left: roll back and do it."""


@dataclass
class _Run:
    app: App
    switch: SwitchStatus
    engine: FaceEngine
    progress: Callable[[SwitchStatus], None] | None
    batch_photos: int
    after_flip: bool = False
    """After the flip the switch is done; what old engines enrolled meanwhile is still embedded."""

    @property
    def target(self) -> reembed.SwitchTarget:
        sw = self.switch
        return reembed.SwitchTarget(sw.id, sw.model_id, sw.from_model_id, sw.pack)

    @property
    def states(self) -> tuple[SwitchState, ...]:
        return (SwitchState.running, SwitchState.done) if self.after_flip else (SwitchState.running,)


def run_switch(
    app: App,
    switch_id: int,
    engine: FaceEngine,
    progress: Callable[[SwitchStatus], None] | None = None,
    *,
    batch_photos: int = BATCH_PHOTOS,
) -> SwitchStatus:
    """Re-embed every photo of every gallery with ``engine`` (the new pack's), then flip the active pack.

    Resumable: run it again on a switch that a killed process left ``running``. ``progress`` gets the
    status after each committed batch; raising :class:`SwitchInterruptedError` from it stops the run
    and leaves the switch running. One run at a time per data directory (ConflictError otherwise).
    Any other error marks the switch ``failed`` (audited) and is raised."""
    status = get_switch(app, switch_id)
    if engine.model_id != status.model_id:
        raise InputError(
            f"the engine makes {engine.model_id!r} templates; switch {switch_id} is to {status.model_id!r}",
            hint=f"run it with the {status.pack} pack's engine",
        )
    with reembed.one_run(_lock_path(app)):
        _audit_missed(app, switch_id)
        status = get_switch(app, switch_id)
        if status.state != "running":
            return status
        run = _Run(app, status, engine, progress, max(1, batch_photos))
        try:
            _drive(run)
        except SwitchInterruptedError:
            raise
        except _StoppedError:  # cancelled meanwhile
            pass
        except Exception as exc:
            _fail(app, status, exc)
            raise
    return get_switch(app, switch_id)


def _fail(app: App, status: SwitchStatus, exc: Exception) -> None:
    message = str(exc) or type(exc).__name__
    _end(app, status.id, SwitchState.failed, message[:2000])
    audit.record(
        app,
        status.requested_by,
        "model_switch_failed",
        target_type="model_pack",
        target_id=status.id,
        target_name=status.pack,
        error=message[:500],
    )


def _drive(run: _Run) -> None:
    while True:
        for gallery_id in _gallery_ids(run.app):
            _switch_gallery(run, gallery_id)
        if _flip(run):
            break
    run.after_flip = True
    for gallery_id in _gallery_ids(run.app):  # what an old engine enrolled while the flip committed
        _switch_gallery(run, gallery_id)


def _gallery_ids(app: App) -> list[int]:
    with app.db.session() as s:
        return list(s.scalars(select(Gallery.id).order_by(Gallery.id)))


def _switch_gallery(run: _Run, gallery_id: int) -> None:
    done_before = _completed(run, gallery_id)
    work = 0
    while True:
        pending = _pending(run, gallery_id)
        if pending:
            work += _commit_batch(run, pending)
            _report(run)
            continue
        if not work and (done_before or run.after_flip):
            return
        if _complete_gallery(run, gallery_id, catch_up=done_before):
            return


def _completed(run: _Run, gallery_id: int) -> bool:
    with run.app.db.session() as s:
        return (
            s.scalar(
                select(ModelSwitchGallery.id).where(
                    ModelSwitchGallery.switch_id == run.switch.id, ModelSwitchGallery.gallery_id == gallery_id
                )
            )
            is not None
        )


def _claim(s: Session, run: _Run) -> None:
    """Write first (SQLite takes the write lock, so what is read next is current and stays so until the
    commit); ends the run if the switch was cancelled meanwhile."""
    done = s.execute(
        update(ModelSwitch)
        .where(ModelSwitch.id == run.target.switch_id, ModelSwitch.state.in_(run.states))
        .values(photos_done=ModelSwitch.photos_done)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise _StoppedError


def _pending(run: _Run, gallery_id: int) -> list[reembed.PendingPhoto]:
    with run.app.db.session() as s:
        return reembed.pending_photos(s, run.target, gallery_id, run.batch_photos)


def _commit_batch(run: _Run, photos: list[reembed.PendingPhoto]) -> int:
    """Re-embed ``photos``, then store their templates and failures in one transaction; the number of
    photos stored."""
    outcomes = [reembed.reembed_photo(run.app, run.engine, p, run.target.pack) for p in photos]
    with run.app.db.session() as s:
        _claim(s, run)
        added, failed = reembed.store_outcomes(s, run.target, outcomes)
        s.execute(
            update(ModelSwitch)
            .where(ModelSwitch.id == run.target.switch_id)
            .values(
                photos_done=ModelSwitch.photos_done + added + failed,
                photos_failed=ModelSwitch.photos_failed + failed,
            )
        )
    return added + failed


def _report(run: _Run) -> None:
    if run.progress is not None:
        run.progress(get_switch(run.app, run.switch.id))


def _complete_gallery(run: _Run, gallery_id: int, *, catch_up: bool) -> bool:
    """Record the gallery's completion in one transaction (False: a photo arrived meanwhile, do it)."""
    sw_id, model_id = run.switch.id, run.switch.model_id
    try:
        with run.app.db.session() as s:
            _claim(s, run)
            gallery = s.get(Gallery, gallery_id)
            if gallery is None:  # deleted meanwhile
                return True
            if reembed.count_pending(s, model_id, sw_id, gallery_id):
                raise _RetryError
            counts = reembed.gallery_counts(s, gallery_id, model_id, sw_id)
            row = s.scalar(
                select(ModelSwitchGallery).where(
                    ModelSwitchGallery.switch_id == sw_id, ModelSwitchGallery.gallery_id == gallery_id
                )
            )
            if row is None:
                row = ModelSwitchGallery(switch_id=sw_id, gallery_id=gallery_id)
                s.add(row)
            row.photos, row.embedded, row.failed = counts
            row.completed_at, row.audited = datetime.now(UTC), False
            change = bump_generation(s, gallery_id) if counts[1] else None
            sw = s.get(ModelSwitch, sw_id)
            assert sw is not None  # claimed above
            _refresh_totals(s, sw)
            name = gallery.name
    except _RetryError:
        return False
    if change is not None:
        reembed.refresh_indexes(run.app, gallery_id, change, run.target, run.engine.card.dimension)
    _audit_gallery(run.app, run.switch, gallery_id, name, counts, catch_up)
    return True


def _flip(run: _Run) -> bool:
    """Make the new pack active in one transaction, if no gallery and no photo is left (else False)."""
    sw_id = run.switch.id
    try:
        with run.app.db.session() as s:
            _claim(s, run)
            list(s.scalars(select(Gallery.id).with_for_update()))  # PostgreSQL: enrolments wait for this
            left = reembed.count_pending(s, run.target.model_id, sw_id)
            open_galleries = s.scalar(
                select(func.count(Gallery.id)).where(
                    ~exists().where(
                        ModelSwitchGallery.switch_id == sw_id, ModelSwitchGallery.gallery_id == Gallery.id
                    )
                )
            )
            if left or open_galleries:
                raise _RetryError
            sw = s.get(ModelSwitch, sw_id)
            assert sw is not None  # claimed above
            _refresh_totals(s, sw)
            sw.state, sw.finished_at = SwitchState.done, datetime.now(UTC)
            active = s.get(ActiveModel, 1) or ActiveModel(id=1)
            active.pack, active.model_id, active.switch_id = sw.pack, sw.model_id, sw.id
            active.since, active.recorded_by = sw.finished_at, sw.requested_by
            s.add(active)
    except _RetryError:
        return False
    _audit_missed(run.app, sw_id)
    return True


# -- audit entries that follow their commit ---------------------------------------------------------
def _audit_gallery(
    app: App, sw: SwitchStatus, gallery_id: int, name: str, counts: tuple[int, int, int], catch_up: bool
) -> None:
    photos, embedded, failed = counts
    audit.record(
        app,
        sw.requested_by,
        "model_switch_gallery",
        target_type="gallery",
        target_id=gallery_id,
        target_name=name,
        switch_id=sw.id,
        pack=sw.pack,
        model_id=sw.model_id,
        photos=photos,
        embedded=embedded,
        failed=failed,
        catch_up=catch_up,
    )
    with app.db.session() as s:
        s.execute(
            update(ModelSwitchGallery)
            .where(ModelSwitchGallery.switch_id == sw.id, ModelSwitchGallery.gallery_id == gallery_id)
            .values(audited=True)
        )


def audit_pending(app: App) -> None:
    """Write the audit entries of the latest switch that a run killed right after a commit left
    unwritten (its resumed run writes them too); a no-op while a run holds the lock."""
    current = current_switch(app)
    if current is None:
        return
    try:
        with reembed.one_run(_lock_path(app)):
            _audit_missed(app, current.id)
    except ConflictError:
        return


def _lock_path(app: App) -> Path:
    return app.settings.data_dir / "model-switch.lock"


def _audit_missed(app: App, switch_id: int) -> None:
    """Write the audit entries of completions and of the flip whose run was killed before writing them."""
    with app.db.session() as s:
        missed = s.execute(
            select(ModelSwitchGallery.gallery_id, Gallery.name, ModelSwitchGallery.photos)
            .add_columns(ModelSwitchGallery.embedded, ModelSwitchGallery.failed)
            .join(Gallery, Gallery.id == ModelSwitchGallery.gallery_id)
            .where(ModelSwitchGallery.switch_id == switch_id, ~ModelSwitchGallery.audited)
        ).all()
        sw = s.get(ModelSwitch, switch_id)
        flip_due = sw is not None and sw.state is SwitchState.done and not sw.flip_audited
    status = get_switch(app, switch_id)
    for gid, name, photos, embedded, failed in missed:
        _audit_gallery(app, status, gid, name, (photos, embedded, failed), False)
    if flip_due:
        _audit_flip(app, status)


def _audit_flip(app: App, sw: SwitchStatus) -> None:
    detail: dict[str, Any] = {
        "switch_id": sw.id,
        "model_id": sw.model_id,
        "from_pack": sw.from_pack,
        "from_model_id": sw.from_model_id,
        "photos": sw.photos_total,
        "failed": sw.photos_failed,
        "galleries": sw.galleries_total,
    }
    audit.record(
        app, sw.requested_by, "model_switch_flip", target_type="model_pack", target_name=sw.pack, **detail
    )
    with app.db.session() as s:
        s.execute(update(ModelSwitch).where(ModelSwitch.id == sw.id).values(flip_audited=True))
