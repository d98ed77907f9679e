"""``POST /api/backup``: an admin downloads a backup of the whole server (docs/backup.md)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from vigil.governance import backup
from vigil.server.deps import Admin, State

router = APIRouter(prefix="/api", tags=["governance"])


STALE_S = 3600.0
"""A download folder older than this was left by a server stopped while sending: it is deleted."""


def _clear_stale(parent: Path) -> None:
    now = time.time()
    for old in parent.iterdir():
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > STALE_S:
                shutil.rmtree(old, ignore_errors=True)


@router.post(
    "/backup",
    summary="A backup of the catalog, photos and audit log, as a download (admins; encrypted when "
    "encryption at rest is on; audited as backup_create)",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def create_backup(st: State, me: Admin) -> FileResponse:
    """The file is made in a private folder of the data directory and deleted once sent: the server
    keeps no copy (a copy on the same disk is no backup), and the one sent goes to the admin who
    asked, with its sha256 in the audit log and the ``X-Backup-SHA256`` header."""
    parent = st.app.settings.data_dir / ".backup-downloads"
    parent.mkdir(mode=0o700, exist_ok=True)
    _clear_stale(parent)
    folder = Path(tempfile.mkdtemp(dir=parent))
    name = f"vigil-backup-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.vbk"
    try:
        info = backup.create_backup(st.app, folder / name, actor=me.actor)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        info.path,
        media_type="application/octet-stream",
        filename=name,
        headers={"X-Backup-SHA256": info.sha256, "Cache-Control": "no-store"},
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
