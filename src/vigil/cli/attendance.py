"""`vigil attendance ...`: reports of attendance galleries (marks come from entrance cameras)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vigil.attendance import report as svc
from vigil.cli.common import JsonOpt, app, emit, handle_errors, out
from vigil.core.errors import InputError
from vigil.storage.audit import cli_actor

attendance_cli = typer.Typer(
    help="Attendance reports (first in, last out, late, absent).", no_args_is_help=True
)


def parse_day(value: str, flag: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"{flag} {value!r} is not a date", hint="use YYYY-MM-DD") from exc


def _time(t: datetime | None) -> str:
    return t.strftime("%H:%M:%S") if t is not None else "-"


@attendance_cli.command("report")
@handle_errors
def report(
    day: Annotated[str, typer.Option("--date", help="the day, YYYY-MM-DD (local time)")],
    gallery: Annotated[str, typer.Option("--gallery", "-g", help="the attendance gallery")],
    until: Annotated[
        str | None, typer.Option("--until", help="last day of a range, YYYY-MM-DD (inclusive)")
    ] = None,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", help="write the rows as CSV to this file ('-': stdout)")
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Per person and day: first in, last out, late arrivals and absences (review before acting)."""
    date_from = parse_day(day, "--date")
    date_until = parse_day(until, "--until") if until else None
    fmt = "csv" if csv_out else "json" if as_json else "table"
    r = svc.attendance_report(app(), gallery, date_from, date_until, actor=cli_actor(), fmt=fmt)
    if csv_out is not None:
        text = svc.to_csv(r)
        if str(csv_out) == "-":
            typer.echo(text, nl=False)
        else:
            csv_out.write_text(text, encoding="utf-8")
            out.print(f"wrote {len(r.rows)} rows to {csv_out}")
        return

    def render() -> None:
        table = Table("date", "person", "status", "first in", "last out", "marks", "late by (min)")
        for row in r.rows:
            table.add_row(
                row.date.isoformat(),
                row.person,
                row.status + (" (left early)" if row.left_early else ""),
                _time(row.first_in),
                _time(row.last_out),
                str(row.marks),
                "-" if row.late_by_min is None else f"{row.late_by_min:g}",
            )
        out.print(table)
        sched = r.schedule
        out.print(
            f"{r.gallery}: {sched.start or '-'}-{sched.end or '-'} on {svc.day_names(sched.days)}, "
            f"grace {sched.grace_min or 0} min, time zone {r.timezone}; "
            f"{r.present} present ({r.late} late), {r.absent} absent"
        )
        for note in r.notes:
            out.print(f"note: {note}")

    emit(r, as_json, render)
