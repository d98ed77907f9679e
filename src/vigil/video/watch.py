"""`watch`: run one source through the pipeline until it ends (or is stopped).

Every event goes pipeline -> sink -> ``on_event``: the sink (default
:class:`~vigil.video.sinks.CatalogWriter`) stores or forwards it and returns what ``on_event`` gets
(nothing when it returns None: an alarm stored before, say).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from vigil.app import App
from vigil.core.errors import InputError
from vigil.events.schemas import Alarm, AttendanceMarked
from vigil.storage import audit
from vigil.video.annotate import Annotator
from vigil.video.cameras import get_camera
from vigil.video.pipeline import Pipeline, PipelineEvent
from vigil.video.resume import OpenAlarm, carried_alarms, load_progress, save_progress
from vigil.video.sinks import CatalogWriter, Sink
from vigil.video.sources import FileSource, SourceStatus, now_utc, open_source

log = logging.getLogger(__name__)

SAVE_EVERY_S = 1.0
"""A file camera saves its position this often (and after each alarm)."""


def watch(
    app: App,
    spec: str | None,
    *,
    camera: str | None = None,
    galleries: list[str] | None = None,
    fps: float | None = None,
    annotate: Path | None = None,
    on_event: Callable[[PipelineEvent], None] = lambda e: None,
    on_warning: Callable[[str], None] = lambda m: None,
    max_frames: int | None = None,
    max_seconds: float | None = None,
    timeout_s: float = 5.0,
    fail_fast: bool = True,
    stop: threading.Event | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
    realtime: bool = False,
    annotator: Any = None,
    on_metrics: Callable[[dict[str, Any]], None] | None = None,
    metrics_every_s: float = 1.0,
    actor: str | None = None,
    start: datetime | None = None,
    resume: bool = False,
    sink: Sink | None = None,
) -> dict[str, Any]:
    """Watch ``spec`` (or the registered ``camera``'s address); returns the run's summary.

    Alarms are written to the catalog as they happen (by ``sink``, default ``CatalogWriter(app)``), so
    a run stopped half-way (Ctrl-C, a cut stream) keeps every alarm it raised; ``on_event`` gets what
    the sink returns, and the summary counts the alarms and marks the sink passed on. Setting
    ``stop`` ends the run after the frame in hand.
    ``on_progress(frames_done, total)`` is called after each frame (total: a file's frame count, else None).
    ``realtime`` plays a file at its own rate (as a camera); ``annotator`` is any object with the
    :class:`~vigil.video.annotate.Annotator` methods ``draw`` and ``close`` (the server's live preview).
    ``on_metrics(summary)`` gets the running summary (with ``dropped``) every ``metrics_every_s``.
    The run is audited (``camera_run``: when, which watchlists were checked, frames and alarms).
    ``start`` dates the first frame of a video file (a recording made then; default: now).
    ``resume`` (a camera worker on a registered file camera): continue the file where the last run
    of this camera left it, or return at once if it was played to its end (see :mod:`vigil.video.resume`).
    """
    camera_id = None
    name = None
    if camera is not None:
        info, url = get_camera(app, camera)
        camera_id, name = info.id, info.name
        spec = spec or url
    if spec is None:
        raise InputError("nothing to watch", hint="give a video file, a stream URL, or --camera NAME")
    progress, first_frame = None, 0
    if resume and camera_id is not None and Path(spec).is_file():
        progress = load_progress(app.settings, camera_id, Path(spec))
        if progress.finished:
            on_warning(f"{spec}: played to its end before; start the camera again to replay it")
            return {"type": "summary", "camera": name, "frames": 0, "alarms": 0, "already_finished": True}
        start, first_frame = progress.start, progress.next_frame
    source = open_source(
        spec,
        name=name,
        fps=fps,
        timeout_s=timeout_s,
        fail_fast=fail_fast,
        max_frames=max_frames,
        max_seconds=max_seconds,
        realtime=realtime,
        start=start,
        first_frame=first_frame,
    )
    carried = None
    if progress is not None and camera_id is not None and isinstance(source, FileSource):
        carried = carried_alarms(app, camera_id, progress, source.source_fps)
    if annotate is not None:
        out_fps = fps or (source.source_fps if isinstance(source, FileSource) else 25.0)
        annotator = Annotator(annotate, fps=out_fps)
    pipeline = Pipeline(
        app, source.name, galleries, camera_id=camera_id, annotator=annotator, carried=carried
    )
    writer: Sink = sink if sink is not None else CatalogWriter(app)

    def emit(events: list[PipelineEvent]) -> None:
        for event in events:
            t0 = time.monotonic()
            out = writer.write(event)
            pipeline.metrics.add("store", time.monotonic() - t0)
            if out is None or not isinstance(out, PipelineEvent):  # dropped (stored before)
                continue
            if isinstance(out, Alarm):
                pipeline.metrics.alarms += 1
            elif isinstance(out, AttendanceMarked):
                pipeline.metrics.attendance_marks += 1
            on_event(out)

    def save(finished: bool = False) -> None:
        if progress is None or camera_id is None:
            return
        last = pipeline.last_frame
        if last is not None:
            progress.next_frame = last.index + 1
        progress.finished = finished
        progress.open_alarms = [
            OpenAlarm(identity_id=i, frame=st.track.last_frame)
            for st in pipeline.states.values()
            for i in st.alarmed
        ]
        save_progress(app.settings, camera_id, progress)

    for warning in pipeline.watchlists.ignored:
        on_warning(warning)
    if pipeline.strangers.suspended:
        on_warning(pipeline.strangers.suspended)
    if not pipeline.watchlists.names and pipeline.strangers.rule is None:
        on_warning("no active watchlist: faces are tracked but no alarm can be raised")
    interrupted = False
    started = now_utc()
    next_metrics = time.monotonic() + metrics_every_s
    next_save = time.monotonic() + SAVE_EVERY_S
    ended = False
    try:
        for item in source:
            if (max_frames is not None and pipeline.frames_fed >= max_frames) or (stop and stop.is_set()):
                break
            events = pipeline.status(item) if isinstance(item, SourceStatus) else pipeline.feed(item)
            emit(events)
            if progress is not None and (
                time.monotonic() >= next_save or any(isinstance(e, Alarm) for e in events)
            ):
                next_save = time.monotonic() + SAVE_EVERY_S
                save()
            if on_progress is not None and not isinstance(item, SourceStatus):
                total = (
                    source.frame_count if isinstance(source, FileSource) and source.frame_count > 0 else None
                )
                on_progress(item.index + 1, total)
            if on_metrics is not None and time.monotonic() >= next_metrics:
                next_metrics = time.monotonic() + metrics_every_s
                on_metrics(
                    {
                        **pipeline.metrics.summary(),
                        "dropped": source.dropped,
                        "watchlists": pipeline.watchlists.names,
                    }
                )
        else:
            ended = True
    except KeyboardInterrupt:
        interrupted = True
    finally:
        try:
            if not ended:
                save()  # before the queued frames: a resumed run processes them
            emit(pipeline.finish())
            if ended:
                save(finished=True)
        finally:
            source.close()
            audit.record(
                app,
                actor or audit.cli_actor(),
                "camera_run",
                target_type="camera",
                target_id=camera_id,
                target_name=source.name,
                camera=source.name,
                started=started.isoformat(),
                ended=now_utc().isoformat(),
                watchlists=pipeline.watchlists.names,
                attendance=pipeline.attendance.galleries,
                frames=pipeline.metrics.frames,
                alarms=pipeline.metrics.alarms,
                attendance_marks=pipeline.metrics.attendance_marks,
            )
    for problem in source.problems:
        on_warning(problem)
    summary: dict[str, Any] = {"type": "summary", "camera": source.name}
    summary.update(pipeline.metrics.summary())
    summary["dropped"] = source.dropped
    summary["watchlists"] = pipeline.watchlists.names
    summary["attendance"] = pipeline.attendance.galleries
    summary["problems"] = list(source.problems)
    summary["interrupted"] = interrupted
    if annotate is not None:
        summary["annotated"] = str(annotate)
    return summary


def audit_lost_run(
    app: App, camera: str, started: datetime | None, metrics: dict[str, Any], exit_code: int | None
) -> None:
    """Audit the running period (``camera_run``) of a camera worker that died: a worker records its
    own when it ends normally. ``metrics``: the last watchlists, frames and alarms it reported."""
    audit.record(
        app,
        f"camera:{camera}",
        "camera_run",
        target_type="camera",
        target_name=camera,
        camera=camera,
        started=started.isoformat() if started else None,
        ended=now_utc().isoformat(),
        watchlists=metrics.get("watchlists"),
        frames=metrics.get("frames"),
        alarms=metrics.get("alarms"),
        ended_by=f"worker died (exit code {exit_code})",
    )
