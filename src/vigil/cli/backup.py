"""`vigil backup create` and `vigil backup restore` (docs/backup.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vigil.cli.common import JsonOpt, app, emit, err, handle_errors, out, settings
from vigil.governance import backup
from vigil.storage import audit

backup_cli = typer.Typer(help="Back up the data directory, and restore a backup.", no_args_is_help=True)


@backup_cli.command("create")
@handle_errors
def create(
    output: Annotated[Path, typer.Option("--out", help="the backup file to write (must not exist)")],
    as_json: bool = JsonOpt,
) -> None:
    """Back up the catalog, the photos and crops, and the audit log into one file, while vigil runs
    (encrypted when encryption at rest is on). Audited as backup_create."""
    last: dict[str, str] = {}

    def progress(step: str, done: int, total: int) -> None:
        if not as_json and (last.get("step") != step or done == total):
            err.print(f"{step}: {done}/{total}")
            last["step"] = step

    r = backup.create_backup(app(), output, actor=audit.cli_actor(), on_progress=progress)
    sealed = "encrypted" if r.encrypted else "NOT encrypted"
    emit(
        r,
        as_json,
        lambda: out.print(
            f"backup written to {r.path} ({r.size_bytes} bytes, {sealed}, {r.counts.get('identities', 0)} "
            f"identities, {r.counts.get('blobs', 0)} files), sha256 {r.sha256}"
        ),
    )


@backup_cli.command("restore")
@handle_errors
def restore(
    file: Annotated[Path, typer.Argument(help="the backup file")],
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="an empty or new folder to restore into (default: the data directory)"
        ),
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Restore a backup into an empty data directory; checks every file, verifies the audit chain and
    records backup_restore. An encrypted backup needs VIGIL_ENCRYPTION_KEY."""
    s = settings()
    key = s.encryption_key.get_secret_value() if s.encryption_key is not None else None
    r = backup.restore_backup(file, data_dir or s.data_dir, actor=audit.cli_actor(), key=key)

    def render() -> None:
        out.print(
            f"restored into {r.data_dir}: {r.counts.get('identities', 0)} identities, "
            f"{r.counts.get('blobs', 0)} files, audit log verified ({r.audit_entries} entries)"
        )
        for pack in r.model_packs:
            out.print(f"reinstall the model pack: vigil --data-dir {r.data_dir} models install {pack}")

    emit(r, as_json, render)
