"""`vigil alarm`: an alarm's evidence exported for hand-over, and an export checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vigil.cli.common import JsonOpt, app, emit, handle_errors, out
from vigil.storage.audit import cli_actor
from vigil.video import export as svc

alarm_cli = typer.Typer(help="Alarms: evidence export and its check.", no_args_is_help=True)


@alarm_cli.command("export")
@handle_errors
def export(
    alarm_id: Annotated[int, typer.Argument(help="the alarm's id")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="a new folder for the crop, the frame and the manifest")
    ],
    as_json: bool = JsonOpt,
) -> None:
    """Write the alarm's crop, its frame with every other face blurred and a manifest of hashes
    (recorded in the audit log)."""
    result = svc.export_alarm(app(), alarm_id, out_dir, actor=cli_actor())
    emit(
        result,
        as_json,
        lambda: out.print(
            f"alarm {result.alarm_id} exported to {escape(result.out_dir)} "
            f"({result.faces_blurred} other faces blurred)\nmanifest sha256 {result.manifest_sha256}"
        ),
    )


@alarm_cli.command("verify-export")
@handle_errors
def verify_export(
    folder: Annotated[Path, typer.Argument(help="a folder `vigil alarm export` wrote")],
    as_json: bool = JsonOpt,
) -> None:
    """Check an export's files against its manifest and find its entry in this data dir's audit log
    (exit code 1 if anything differs)."""
    result = svc.verify_export(folder, app())
    emit(result, as_json, lambda: _render(result))
    if not result.ok:
        raise typer.Exit(1)


def _render(result: svc.VerifyExportResult) -> None:
    if result.ok:
        out.print(f"export of alarm {result.alarm_id} intact; audit entry {result.audit_entry_id}")
    for p in result.problems:
        out.print(f"[red]{escape(p)}[/red]")
