"""Where a file camera was: its position in the file, kept across restarts of its worker.

A camera worker playing a video file keeps ``<data dir>/cameras/<camera id>.json`` up to date (every
second and after each alarm): the next frame to process, the time of the file's first frame (so that
frames keep their capture time), whether the file was played to its end, and the alarms raised on
appearances still going on. A worker started again (after a crash, a kill, a server restart)
continues from there, or does nothing if the file had finished. The state names the file (resolved
path, size, modification time): a file replaced under the same name starts over.

The appearances going on when the worker died are seen again by the new worker as new tracks;
:class:`CarriedAlarms` keeps them from raising the same alarm a second time.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import select

from vigil.app import App
from vigil.core.config import Settings
from vigil.storage.tables import AlarmRecord
from vigil.video.sources import now_utc


class OpenAlarm(BaseModel):
    """An alarm raised on a track that had not ended when the state was saved."""

    identity_id: int
    frame: int
    """The track's last frame seen."""


class FileProgress(BaseModel):
    """How far a file camera got in its file."""

    model_config = ConfigDict(extra="forbid")

    source: str
    """The file, resolved."""
    size: int
    mtime_ns: int
    start: datetime
    """Wall-clock time of the file's first frame (timezone-aware)."""
    next_frame: int = 0
    finished: bool = False
    open_alarms: list[OpenAlarm] = []


def state_path(settings: Settings, camera_id: int) -> Path:
    return settings.cameras_dir / f"{camera_id}.json"


def _fresh(path: Path) -> FileProgress:
    st = path.stat()
    return FileProgress(source=str(path), size=st.st_size, mtime_ns=st.st_mtime_ns, start=now_utc())


def load_progress(settings: Settings, camera_id: int, path: Path) -> FileProgress:
    """The saved progress of camera ``camera_id`` in the file ``path``; from the start if there is none,
    if it is unreadable, or if it was saved for another file (or this one before it was replaced)."""
    path = path.resolve()
    try:
        saved = FileProgress.model_validate_json(state_path(settings, camera_id).read_bytes())
    except (OSError, ValidationError):
        return _fresh(path)
    fresh = _fresh(path)
    if (saved.source, saved.size, saved.mtime_ns) != (fresh.source, fresh.size, fresh.mtime_ns):
        return fresh
    return saved


def save_progress(settings: Settings, camera_id: int, progress: FileProgress) -> None:
    """Write the state atomically (a worker killed while writing leaves the previous state)."""
    target = state_path(settings, camera_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(progress.model_dump_json())
    os.replace(tmp, target)


def forget_finished(settings: Settings, camera_id: int) -> None:
    """Let a finished file play again from its start (the camera was started by hand)."""
    target = state_path(settings, camera_id)
    try:
        finished = FileProgress.model_validate_json(target.read_bytes()).finished
    except (OSError, ValidationError):
        return
    if finished:
        target.unlink(missing_ok=True)


def discard(settings: Settings, camera_id: int) -> None:
    """Forget the camera's state (the camera was deleted)."""
    state_path(settings, camera_id).unlink(missing_ok=True)


@dataclass
class CarriedAlarms:
    """Alarms raised before a restart on appearances the resumed worker may see again.

    ``entries``: (identity id, last frame at which a track of the resumed run still counts as the
    same appearance). :meth:`take` uses an entry up: each stored alarm stands for one track.
    """

    entries: list[tuple[int, int]] = field(default_factory=list)

    def take(self, identity_id: int, first_frame: int) -> bool:
        """Whether a track that began at ``first_frame`` and matched ``identity_id`` was alarmed before."""
        for i, (identity, until) in enumerate(self.entries):
            if identity == identity_id and first_frame <= until:
                del self.entries[i]
                return True
        return False


def carried_alarms(app: App, camera_id: int, progress: FileProgress, fps: float) -> CarriedAlarms:
    """What a worker resuming at ``progress.next_frame`` must not alarm again.

    The alarms on tracks open at the save, and the alarms stored after the save (the worker died
    between storing an alarm and saving its position): the resumed worker sees those frames again.
    A track of the resumed run is the same appearance if it begins within the time a track may go
    unseen (``video_max_lost_s``) plus two detection intervals of the resume point or of that alarm.
    """
    s = app.settings
    slack = math.ceil(s.video_max_lost_s * fps) + 2 * s.video_detect_every
    entries = [(a.identity_id, progress.next_frame + slack) for a in progress.open_alarms]
    since = progress.start + timedelta(seconds=progress.next_frame / fps) - timedelta(milliseconds=1)
    with app.db.session() as db:
        rows = db.execute(
            select(AlarmRecord.identity_id, AlarmRecord.frame_index, AlarmRecord.captured_at).where(
                AlarmRecord.camera_id == camera_id, AlarmRecord.frame_index >= progress.next_frame
            )
        ).all()
    for identity_id, frame, captured_at in rows:
        at = captured_at if captured_at.tzinfo is not None else captured_at.replace(tzinfo=UTC)
        if identity_id is not None and at >= since:
            entries.append((identity_id, frame + slack))
    return CarriedAlarms(entries)
