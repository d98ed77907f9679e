"""`vigil audit ...`, `vigil purge`, `vigil people erase`, `vigil report transparency`."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vigil.cli.common import JsonOpt, app, emit, err, handle_errors, out
from vigil.core.errors import InputError
from vigil.governance import erasure, report, retention
from vigil.storage import audit

audit_cli = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
report_cli = typer.Typer(help="Reports for oversight.", no_args_is_help=True)


def parse_time(value: str | None, flag: str) -> datetime | None:
    """An ISO date or date-time (UTC unless it says otherwise)."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"{flag} {value!r} is not a date", hint="use YYYY-MM-DD or YYYY-MM-DDTHH:MM"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@audit_cli.command("verify")
@handle_errors
def verify(as_json: bool = JsonOpt) -> None:
    """Check the hash chain of the whole log; names the first broken entry (exit code 1 if any)."""
    r = audit.verify(app())

    def render() -> None:
        if r.ok:
            out.print(f"audit log intact: {r.entries} entries, head {r.head_hash}")
        else:
            err.print(f"[red]audit log BROKEN at entry {r.first_broken_id}[/]: {r.problem}", markup=True)

    emit(r, as_json, render)
    if not r.ok:
        raise typer.Exit(1)


@audit_cli.command("export")
@handle_errors
def export(
    since: Annotated[str | None, typer.Option(help="from this date/time (UTC), YYYY-MM-DD[THH:MM]")] = None,
    until: Annotated[str | None, typer.Option(help="up to this date/time (UTC), exclusive")] = None,
    action: Annotated[
        str | None, typer.Option(help="only this action (search, enrol, alarm_review, ...)")
    ] = None,
    output: Annotated[Path | None, typer.Option("--out", help="write to this file (default: stdout)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
) -> None:
    """Export audit entries for auditors (JSON lines or CSV, with each entry's hashes). The export is
    itself audited."""
    if fmt not in ("jsonl", "csv"):
        raise InputError(f"--format {fmt!r}", hint="jsonl or csv")
    a = app()
    query = audit.Query(since=parse_time(since, "--since"), until=parse_time(until, "--until"), action=action)
    rows = audit.export(a, audit.cli_actor(), query, fmt=fmt)
    fh = output.open("w", newline="") if output else sys.stdout
    try:
        if fmt == "jsonl":
            for r in rows:
                fh.write(r.model_dump_json() + "\n")
        else:
            w = csv.writer(fh)
            w.writerow(
                [
                    "id",
                    "at",
                    "actor",
                    "action",
                    "target_type",
                    "target_id",
                    "target_name",
                    "detail",
                    "prev_hash",
                    "hash",
                ]
            )
            for r in rows:
                w.writerow(
                    [
                        r.id,
                        r.at.isoformat(),
                        r.actor,
                        r.action,
                        r.target_type,
                        r.target_id,
                        r.target_name,
                        json.dumps(r.detail, sort_keys=True),
                        r.prev_hash,
                        r.hash,
                    ]
                )
    finally:
        if output:
            fh.close()
    if output:
        err.print(f"{len(rows)} entries written to {output}")


@handle_errors
def purge(
    now: Annotated[str | None, typer.Option(help="purge as if it were this time (UTC); default: now")] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Delete everything past its retention (alarms, crops, snapshots, their files); for cron."""
    r = retention.purge(app(), now=parse_time(now, "--now"), actor=audit.cli_actor())
    emit(
        r,
        as_json,
        lambda: out.print(
            f"purged {r.alarms} alarms, {r.snapshots} snapshots, {r.sightings} sightings, {r.files} files, "
            f"{r.sessions} expired sessions"
        ),
    )


@handle_errors
def erase(
    who: Annotated[str, typer.Argument(help="identity id, or name (with --gallery if in several)")],
    gallery: Annotated[str | None, typer.Option("--gallery", "-g")] = None,
    reason: Annotated[str | None, typer.Option(help="why (e.g. the request's reference); audited")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    as_json: bool = JsonOpt,
) -> None:
    """Erase a person (GDPR Art. 17): templates, photos, alarms with their crops and snapshots and index
    entries, files deleted; the audit log keeps that it happened under a pseudonymous id."""
    a = app()
    identity_id = erasure.find_identity(a, who, gallery)
    if (
        not yes
        and not as_json
        and not typer.confirm(f"erase identity {identity_id} and everything about them?")
    ):
        raise typer.Exit(1)
    r = erasure.erase_identity(a, identity_id, audit.cli_actor(), reason=reason)
    emit(
        r,
        as_json,
        lambda: out.print(
            f"erased ({r.pseudonym}): {r.templates} templates, {r.photos} photos, {r.alarms} alarms, "
            f"{r.files_deleted} files deleted"
        ),
    )


@report_cli.command("transparency")
@handle_errors
def transparency(
    since: Annotated[str | None, typer.Option(help="from this date/time (UTC)")] = None,
    until: Annotated[str | None, typer.Option(help="up to this date/time (UTC), exclusive")] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="also write an HTML report with a chart")
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Searches, alarms, confirmations and dismissals per watchlist and camera, the share dismissed,
    thresholds and FPIR in force, and cameras' running periods."""
    a = app()
    r = report.build(a, parse_time(since, "--since"), parse_time(until, "--until"), actor=audit.cli_actor())
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(report.to_html(r), encoding="utf-8")

    def render() -> None:
        out.print(f"searches: {dict(r.searches) or 'none'}")
        out.print(
            f"alarms {r.alarms}, confirmed {r.confirmed}, dismissed {r.dismissed}, share dismissed "
            f"{r.dismissed_share if r.dismissed_share is not None else '-'}"
        )
        table = Table(
            "watchlist", "camera", "alarms", "confirmed", "dismissed", "share dismissed", "thresholds", "FPIR"
        )
        for row in r.per_watchlist_camera:
            table.add_row(
                row.watchlist,
                row.camera,
                str(row.alarms),
                str(row.confirmed),
                str(row.dismissed),
                str(row.dismissed_share if row.dismissed_share is not None else "-"),
                ", ".join(map(str, row.thresholds)),
                ", ".join(map(str, row.fpir)),
            )
        out.print(table)
        out.print(
            f"camera runs: {len(r.camera_runs)}; enrolments {r.enrolments}, erasures {r.erasures}, "
            f"purges {r.purges}; audit chain {'intact' if r.audit_chain_ok else 'BROKEN'}"
        )
        if html is not None:
            out.print(f"HTML report: {html}")

    emit(r, as_json, render)


encryption_cli = typer.Typer(help="Protection at rest (VIGIL_ENCRYPTION_KEY).", no_args_is_help=True)


@encryption_cli.command("new-key")
def new_key() -> None:
    """Print a new key for VIGIL_ENCRYPTION_KEY. Store it apart from the data: without it, encrypted
    photos and templates cannot be read."""
    from vigil.core.crypto import new_key as make

    out.print(make())
